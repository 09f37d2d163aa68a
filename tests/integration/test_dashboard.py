"""The dashboard in headless Chromium (Debian's ``chromium``, driven by playwright) against a running worker and
the real broker: its charts move as events arrive, the search opens a user's recommendations, and ids that look
like HTML are shown as the characters they are."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.ops.clients import produce
from stream_rec.settings import Settings
from stream_rec.wire.events import Event
from tests.integration.conftest import WorkerProcess
from tests.integration.test_web import get_json, wait_until

pytestmark = pytest.mark.kafka

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "the browser test needs Debian's chromium package (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs it: in CI this test never skips
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to run as root, as CI does.
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def test_the_dashboard_charts_the_stream_and_inspects_a_user(
    stream: Callable[..., Settings], tmp_path: Path, browser: Any
) -> None:
    settings = stream()
    events = list(synthetic_events(900, users=30, items=60, seed=6))
    t = events[0].ts
    hostile = [Event(XSS, XSS, "view", t + n, f"xss-{n}") for n in range(4)]  # the user id is hostile too
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    stop = threading.Event()
    try:
        wait_until(lambda: get_json(settings, "/health")[0] == 200, 90, "the worker serves")
        produce(settings, [*hostile, *events[:100]])
        wait_until(lambda: get_json(settings, "/stats")[1]["recommendations"] >= 104, 60, "the first events")

        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        blocked: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(f"http://127.0.0.1:{settings.web_port}/") else
                blocked.append(r.url))  # fmt: skip
        page.goto(f"http://127.0.0.1:{settings.web_port}/dashboard")
        wait_until(lambda: page.evaluate("window.streamRec && window.streamRec.samples >= 2"), 15, "two polls")
        events_tile = page.locator('.tile[data-name="events"] .value')
        before = int(events_tile.inner_text().replace(",", ""))

        feeder = threading.Thread(target=produce, args=(settings, events[100:]), kwargs={"rate": 150, "stop": stop})
        feeder.start()
        rising = (  # the events/s and latency p99 lines have points above zero
            "window.streamRec.charts.rate.data[1].some((v) => v > 0) && "
            "window.streamRec.charts.latency.data[2].some((v) => v > 0)"
        )
        # Polled with evaluate (run by the browser's debugger): the page's policy forbids the eval that
        # playwright's wait_for_function needs.
        wait_until(lambda: page.evaluate(rising), 30, "the charts rise")
        wait_until(lambda: int(events_tile.inner_text().replace(",", "")) > before + 100, 30, "the events tile moves")
        rates = page.evaluate("window.streamRec.charts.rate.data[1]")
        assert len(rates) >= 3 and max(r or 0 for r in rates) > 0
        feeder.join(timeout=60)
        # Every event answered, not only read (lag 0): a batch read but not yet served would change the user's
        # list between the page's query and the test's.
        answered = len(hostile) + len(events)
        wait_until(lambda: get_json(settings, "/stats")[1]["recommendations"] >= answered, 60, "every event answered")

        # The inspector: a user's recommendations, with the modes behind each item as bars.
        user = events[-1].user_id
        page.fill("#user", user)
        page.click("#search button")
        page.wait_for_selector("#user-view h4")
        assert page.locator("#user-view h3").inner_text() == f"User {user}"
        rows = page.locator("#user-view table").first.locator("tbody tr")
        assert rows.count() == settings.k
        _, served = get_json(settings, f"/users/{user}")
        shown = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
        assert shown == [i["item_id"] for i in served["recommendation"]["items"]]
        if served["recommendation"]["strategy"] == "model":
            assert page.locator("#user-view .bar").count() >= settings.k
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        # Ids that look like HTML are text: the search finds the user, the page shows the characters.
        page.fill("#user", XSS)
        page.click("#search button")
        page.wait_for_selector("#user-view h4")
        assert page.locator("#user-view h3").inner_text() == f"User {XSS}"
        sequence = page.locator("#user-view table").last.locator("tbody tr td:nth-child(3)")
        assert sequence.all_inner_texts() == [XSS] * len(hostile)
        assert page.locator("img").count() == 0, "no element was made from an id"
        page.fill("#user", "nobody-here")
        page.click("#search button")
        page.wait_for_selector("#user-view .error")
        assert "no user 'nobody-here'" in page.locator("#user-view .error").inner_text()
        time.sleep(1.5)  # one more poll: the top items (the hostile one among them, maybe) are drawn again
        assert page.locator("img").count() == 0 and not dialogs, "nothing an id says was run"
        assert not errors, errors
        assert not blocked, f"the page asked for something from elsewhere: {blocked}"
    finally:
        stop.set()
        worker.stop()
    assert (tmp_path / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
