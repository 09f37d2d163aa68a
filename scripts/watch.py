"""Watch a running worker's web view: print its /stats figures every few seconds and save screenshots of its
dashboard in headless Chromium (Debian's ``chromium``, driven by playwright from the dev extra).

    bash scripts/demo --limit 100000 &                     # a worker to watch (the demo prints its dashboard URL)
    python scripts/watch.py --every 10 --shot-at 60 --user 13 --out docs/dashboard.png

It waits for the web view to answer, then prints one line per sample until the worker goes away or
``--seconds`` have passed; at ``--shot-at`` seconds it opens the dashboard (with the inspector on ``--user``,
if given) and saves a full-page screenshot to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

# (key in /stats, heading, width, decimals, scale)
COLUMNS = (
    ("events", "events", 7, 0, 1), ("events_per_s", "ev/s", 6, 0, 1), ("lag_total", "lag", 6, 0, 1),
    ("latency_p50_s", "p50 ms", 7, 0, 1000), ("latency_p99_s", "p99 ms", 7, 0, 1000),
    ("freshness_p50_s", "fresh50 s", 9, 2, 1), ("freshness_p99_s", "fresh99 s", 9, 2, 1),
    ("loss", "loss", 6, 3, 1), ("hit_rate_1m", "HR 1m", 6, 3, 1), ("hit_rate", "HR all", 6, 3, 1),
    ("model_version", "model", 22, 0, 1),
)  # fmt: skip


def stats(base: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{base}/stats", timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError):
        return None


def line(s: dict[str, Any]) -> str:
    cells = []
    for key, _, width, decimals, scale in COLUMNS:
        value = s.get(key)
        if isinstance(value, int | float):
            cells.append(f"{value * scale:>{width}.{decimals}f}")
        else:
            cells.append(f"{'-' if value is None else value:>{width}}")
    return "  ".join(cells)


def header() -> str:
    return "   t s  " + "  ".join(f"{name:>{width}}" for _, name, width, *_ in COLUMNS)


def screenshot(base: str, out: str, user: str | None) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("watch.py: error: no chromium on PATH (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{base}/dashboard" + (f"#user={urllib.parse.quote(user, safe='')}" if user else ""))
        time.sleep(12)  # a dozen polls: the charts have lines
        page.screenshot(path=out, full_page=True)
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:6066", help="the worker's web view")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--shot-at", type=float, help="seconds after the first answer to take the screenshot")
    parser.add_argument("--user", help="open this user's inspector in the screenshot")
    parser.add_argument("--out", default="dashboard.png", help="screenshot file")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    deadline = time.monotonic() + 120
    while stats(base) is None:
        if time.monotonic() > deadline:
            sys.exit(f"watch.py: error: no web view answers at {base} (is a worker running?)")
        time.sleep(1)
    start = time.monotonic()
    print(header())
    shot = args.shot_at is None
    while time.monotonic() - start < args.seconds:
        s = stats(base)
        if s is None:
            break
        print(f"{time.monotonic() - start:>6.0f}  {line(s)}", flush=True)
        if not shot and time.monotonic() - start >= args.shot_at:
            screenshot(base, args.out, args.user)
            print(f"saved {args.out}", flush=True)
            shot = True
        time.sleep(args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
