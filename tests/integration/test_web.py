"""The worker's web view against a running worker and the real broker while events flow: the JSON endpoints,
Prometheus metrics parsed with prometheus-client's own parser, ids validated, read-only."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.ops.clients import produce
from stream_rec.settings import Settings
from stream_rec.wire.events import EVENT_TYPES, MAX_ID_CHARS, Event, encode_event
from tests.integration.conftest import WorkerProcess

pytestmark = pytest.mark.kafka


def get(settings: Settings, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{settings.web_port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(settings: Settings, path: str) -> tuple[int, Any]:
    status, _, body = get(settings, path)
    return status, orjson.loads(body)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if found := check():
                return found
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_the_web_view_shows_what_the_worker_does(stream: Callable[..., Settings], tmp_path: Path) -> None:
    settings = stream()
    events = list(synthetic_events(600, users=30, items=60, seed=5))
    odd = [  # ids a URL must carry percent-encoded
        Event("a/b c?d", "i1", "view", events[-1].ts + 1, "odd-1"),
        Event("a/b c?d", "i2", "click", events[-1].ts + 2, "odd-2", context={"device": "mobile"}),
    ]
    worker = WorkerProcess(settings, tmp_path / "worker.log", STREAM_REC_CHECKPOINT_EVERY="2").start()
    try:
        codes: list[int] = []

        def healthy() -> tuple[int, Any] | None:
            answer = get_json(settings, "/health")
            codes.append(answer[0])
            return answer if answer[0] == 200 else None

        status, health = wait_until(healthy, 90, "healthy")
        assert health["broker_reachable"] and health["partitions"] == [0, 1] and health["learning"]
        assert set(codes) == {503, 200} and codes.index(200) == len(codes) - 1, "503 until it serves, then 200"
        produce(settings, [*events[:300]])
        # The rest once a snapshot that learned serves: before it, every user gets popularity and no embedding.
        first = wait_until(
            lambda: (s := get_json(settings, "/stats")[1])["events_per_s"] > 0 and not s["model_version"].endswith("@0")
            and s, 60, "a rate, and a snapshot that learned",
        )  # fmt: skip
        produce(settings, [*events[300:], *odd])
        with KafkaProducer(bootstrap_servers=settings.bootstrap) as bad:
            bad.send(settings.topic_events, key=b"x", value=b"{not json").get(timeout=10)
        n = len(events) + len(odd)
        # Every message handled, the bad one too: lag 0 says only that the worker has read them all.
        stats = wait_until(
            lambda: (s := get_json(settings, "/stats")[1])["recommendations"] >= n and s["events"] > n
            and s["lag_total"] == 0 and s,
            90, "every event answered",
        )  # fmt: skip
        assert first["recommendations"] < stats["recommendations"], "the figures move as events arrive"
        assert (stats["events"], stats["valid"], stats["invalid"], stats["recommendations"]) == (n + 1, n, 1, n)
        assert stats["partitions"] == [0, 1] and set(stats["lag"]) >= {f"{settings.topic_events}:{p}" for p in (0, 1)}
        assert stats["scored"] > 0 and 0 <= stats["hit_rate"] <= 1 and set(stats["by_event"]) <= set(EVENT_TYPES)
        assert sum(e["scored"] for e in stats["by_event"].values()) == stats["scored"]
        assert stats["latency_p99_s"] >= stats["latency_p50_s"] > 0
        assert stats["top_recommended"] and stats["top_recommended"][0]["count"] >= stats["top_recommended"][-1][
            "count"
        ]  # fmt: skip
        stats = wait_until(lambda: (s := get_json(settings, "/stats")[1])["checkpoint_age_s"] is not None and s, 30,
                           "a checkpoint")  # fmt: skip
        assert stats["steps"] > 0 and stats["loss"] is not None and isinstance(stats["drift_alarms"], int)

        # /metrics: the same figures, in Prometheus's format, parsed by prometheus-client's own parser.
        status, headers, body = get(settings, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        assert samples["stream_rec_events_total", ()] == n + 1
        assert samples["stream_rec_dead_lettered_total", ()] == 1
        assert samples["stream_rec_recommendations_total", ()] == n
        assert samples["stream_rec_latency_seconds_count", ()] == n, "one latency per recommendation"
        assert samples["stream_rec_latency_seconds_bucket", (("le", "+Inf"),)] == n
        assert samples["stream_rec_model_freshness_seconds_count", ()] > 0
        assert samples["stream_rec_partitions_assigned", ()] == 2
        # The learner's counters, read after /stats: as large at least (it may have learned on since).
        assert samples["stream_rec_steps_total", ()] >= stats["steps"] > 0
        assert samples["stream_rec_drift_alarms_total", ()] >= stats["drift_alarms"]
        assert samples["stream_rec_partition_lag", (("partition", "0"), ("topic", settings.topic_events))] == 0

        # /users: the sequence in order, the last recommendation with the modes behind each item, the embedding.
        user = events[0].user_id
        mine = [e for e in events if e.user_id == user][-settings.seq_len :]
        status, body = get_json(settings, f"/users/{user}")
        assert status == 200 and body["user_id"] == user
        assert [s["item_id"] for s in body["sequence"]] == [e.item_id for e in mine]
        rec = body["recommendation"]
        assert rec["event_id"] == mine[-1].event_id and len(rec["items"]) == settings.k
        if rec["strategy"] == "model":
            for item in rec["items"]:
                assert abs(sum(item["modes"].values()) - 1) < 1e-3
        assert len(body["embedding"]) == settings.model.dim
        status, body = get_json(settings, "/users/" + urllib.parse.quote("a/b c?d", safe=""))
        assert status == 200 and [s["item_id"] for s in body["sequence"]] == ["i1", "i2"]
        assert body["sequence"][1]["context"] == {"device": "mobile"}
        assert get_json(settings, "/users/nobody") == (404, {"error": "no user 'nobody' on this worker"})
        status, body = get_json(settings, "/users/" + "u" * (MAX_ID_CHARS + 1))
        assert status == 400 and "256" in body["error"]

        # /items: counts as the stream has them, the nearest items by the model's vectors.
        item = events[-1].item_id
        status, body = get_json(settings, f"/items/{item}")
        assert status == 200 and body["count"] == sum(e.item_id == item for e in events)
        assert body["in_vocabulary"] and body["last_seen_ts"] == max(e.ts for e in events if e.item_id == item)
        assert len(body["nearest"]) == 10 and item not in [n["item_id"] for n in body["nearest"]]
        assert get_json(settings, "/items/never")[0] == 404

        status, model = get_json(settings, "/model")
        assert status == 200 and model["settings"]["k"] == settings.k and model["vocabulary"] > 0
        assert model["replay"] > 0 and model["checkpoint"].startswith(str(settings.checkpoint_dir))

        # Read-only, and only the dashboard's own files.
        for method in ("POST", "PUT", "DELETE"):
            assert get(settings, "/stats", method)[0] == 405
        status, headers, page = get(settings, "/dashboard")
        assert status == 200 and b"dashboard.js" in page and "script-src 'self'" in headers["Content-Security-Policy"]
        assert get(settings, "/dashboard/uPlot.iife.min.js")[0] == 200
        assert get(settings, "/dashboard/..%2Fweb.py")[0] == 404
        assert get(settings, "/dashboard/index.html")[0] == 404, "only the listed assets"

        # An event keyed otherwise goes round by the reroute topic; after a restart, with nothing new to read, the
        # lag is 0 there too: the worker waits at the committed offset, not at the partition's start.
        late = Event(events[0].user_id, "i-late", "view", events[-1].ts + 10, "late-1")
        with KafkaProducer(bootstrap_servers=settings.bootstrap) as elsewhere:
            elsewhere.send(settings.topic_events, key=b"not-the-user", value=encode_event(late)).get(timeout=10)
        wait_until(lambda: get_json(settings, "/stats")[1]["rerouted"] == 1, 30, "the event sent on")
        wait_until(lambda: get_json(settings, "/users/" + late.user_id)[1]["recommendation"]["event_id"] == "late-1",
                   30, "the event answered")  # fmt: skip
        time.sleep(2.0)  # its offsets committed (every second)
        worker.stop()
        worker = WorkerProcess(settings, tmp_path / "worker-2.log").start()
        wait_until(healthy, 90, "healthy again")
        stats = wait_until(lambda: (s := get_json(settings, "/stats")[1])["lag"] and s, 30, "the lag known")
        assert any(key.startswith(settings.topic_rerouted) for key in stats["lag"]) and stats["lag_total"] == 0
    finally:
        worker.stop()
