"""End to end on the real broker: events in, a worker process, recommendations and dead letters out."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.ops.clients import open_consumer, produce
from stream_rec.ops.processes import worker_env
from stream_rec.ops.topics import create_topics, load_specs, specs_for
from stream_rec.settings import Settings
from stream_rec.wire.events import Event

pytestmark = pytest.mark.kafka

K = 5
BAD = [
    b"not json at all",
    b'["an", "array"]',
    b'{"user_id": "u1", "event": "view", "ts": 1700000000}',
    b'{"user_id": "u1", "item_id": "i1", "event": "teleport", "ts": 1700000000}',
    b'{"user_id": "u1", "item_id": "i1", "event": "view", "ts": 1700000000000}',
    b"\xff\xfe binary",
]


@pytest.fixture
def settings(stream: Callable[..., Settings]) -> Settings:
    return stream(partitions=2, k=K)


def _collect(consumer, n: int, timeout: float) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    out: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out.extend((r.key.decode(), orjson.loads(r.value)) for r in records)
    return out


def test_worker_turns_events_into_recommendations_and_dead_letters(settings: Settings, tmp_path: Path) -> None:
    create_topics(settings, specs_for(settings, load_specs()))
    events = list(synthetic_events(300, users=20, items=60, seed=3))
    duplicate = events[10]
    recs = open_consumer(settings, settings.topic_recommendations)
    embs = open_consumer(settings, settings.topic_embeddings)
    dlq = open_consumer(settings, settings.topic_dlq)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "stream_rec", "worker"], env=worker_env(settings),
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        produce(settings, events[:200])
        first = _collect(recs, 200, timeout=180)
        time.sleep(2.5)  # the trainer publishes a snapshot of what it learned (every STREAM_REC_REFRESH_EVERY s)
        produce(settings, [*events[200:], duplicate])
        from kafka import KafkaProducer

        raw = KafkaProducer(bootstrap_servers=settings.bootstrap)
        for value in BAD:
            raw.send(settings.topic_events, key=b"bad", value=value)
        raw.flush()
        raw.close()
        produce(settings, [Event("late", "i-late", "view", 1_800_000_000.0)])  # valid after the bad ones

        got = first + _collect(recs, len(events) + 1 - len(first), timeout=180)
        dead = _collect(dlq, len(BAD), timeout=30)
        emb = _collect(embs, 1, timeout=30)
        extra = _collect(recs, 1, timeout=3)  # the duplicate must not yield a second recommendation
        assert worker.poll() is None, "the worker died"
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()
        for c in (recs, embs, dlq):
            c.close()

    by_event = {rec["event_id"]: (key, rec) for key, rec in got}
    expected = {e.event_id: e for e in [*events, Event("late", "i-late", "view", 1_800_000_000.0)]}
    assert set(by_event) == set(expected), "one recommendation per valid event, no more, no less"
    assert not extra
    seen: set[str] = set()
    for event_id, (key, rec) in by_event.items():
        event = expected[event_id]
        assert key == event.user_id == rec["user_id"]
        items = [i["item_id"] for i in rec["items"]]
        assert len(items) == len(set(items)), "items are distinct"
        assert rec["strategy"] in ("model", "cold_start")
        assert set(rec) >= {"event_ts", "published_ts", "model_version", "explain"}
        seen.add(event.item_id)
        assert set(items) <= {e.item_id for e in expected.values()}, "only items seen in the stream"
    assert sum(len(rec["items"]) == K for _, rec in got) > len(got) // 2
    assert any(rec["strategy"] == "model" for _, rec in got[200:]), "the model took over from the fallback"

    assert len(dead) == len(BAD)
    for _, envelope in dead:
        assert envelope["reason"] and envelope["topic"] == settings.topic_events
        assert isinstance(envelope["offset"], int) and isinstance(envelope["partition"], int)
    reasons = " | ".join(e["reason"] for _, e in dead)
    assert "not JSON" in reasons and "unknown event type" in reasons and "item_id" in reasons
    assert any(e["value_b64"] for _, e in dead), "undecodable bytes kept whole, as base64"
    stores = list((tmp_path / "worker").rglob("rocksdict-config.json"))
    assert stores, "the sequence table lives in RocksDB (rocksdict) under the data directory"
    key, embedding = emb[0]
    assert embedding["user_id"] == key and len(embedding["embedding"]) == settings.model.dim
