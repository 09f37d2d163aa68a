"""End to end on the real broker: events in, a worker process, recommendations and dead letters out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream_rec.clients import open_consumer, produce
from stream_rec.events import Event
from stream_rec.kafka_local import is_up
from stream_rec.processes import free_port, worker_env
from stream_rec.settings import Settings
from stream_rec.synthetic import synthetic_events
from stream_rec.topics import create_topics, load_specs, specs_for

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
def settings(tmp_path: Path) -> Settings:
    broker = os.environ.get("STREAM_REC_BROKER", "127.0.0.1:9092")
    if not is_up(broker):
        pytest.fail(f"no Kafka broker on {broker}: start one with `stream-rec kafka start`")
    run = uuid.uuid4().hex[:8]
    return Settings(
        broker=broker,
        app_id=f"test-{run}",
        topic_events=f"{run}-events",
        topic_recommendations=f"{run}-recommendations",
        topic_embeddings=f"{run}-user-embeddings",
        topic_dlq=f"{run}-events-dlq",
        partitions=2,
        k=K,
        data_dir=tmp_path / "worker",
        home=tmp_path,
        web_port=free_port(),
    )


def _env(settings: Settings) -> dict[str, str]:
    env = worker_env(settings)
    env["STREAM_REC_BATCH_WITHIN"] = "0.05"
    return env


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
    worker = subprocess.Popen([sys.executable, "-m", "stream_rec", "worker"], env=_env(settings),
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        produce(settings, [*events, duplicate])
        from kafka import KafkaProducer

        raw = KafkaProducer(bootstrap_servers=settings.bootstrap)
        for value in BAD:
            raw.send(settings.topic_events, key=b"bad", value=value)
        raw.flush()
        raw.close()
        produce(settings, [Event("late", "i-late", "view", 1_800_000_000.0)])  # valid after the bad ones

        got = _collect(recs, len(events) + 1, timeout=180)
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
    assert any(rec["strategy"] == "model" for _, rec in got), "the model took over from the fallback"

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


def test_a_restarted_worker_resumes_from_its_checkpoint(settings: Settings, tmp_path: Path) -> None:
    from stream_rec import checkpoint

    create_topics(settings, specs_for(settings, load_specs()))
    env = _env(settings) | {"STREAM_REC_CHECKPOINT_EVERY": "1"}
    recs = open_consumer(settings, settings.topic_recommendations)
    events = list(synthetic_events(400, users=20, items=60, seed=5))

    def learned_up_to() -> int:
        saved = checkpoint.latest(settings.checkpoint_dir)
        return sum(checkpoint.load(saved)[1].values()) if saved else 0

    def run(batch: list[Event], log_name: str, total: int) -> list[tuple[str, dict]]:
        with (tmp_path / log_name).open("wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "stream_rec", "worker"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            try:
                produce(settings, batch)
                got = _collect(recs, len(batch), timeout=180)
                deadline = time.monotonic() + 60
                while learned_up_to() < total and time.monotonic() < deadline:  # a timer tick every second
                    time.sleep(0.5)
                assert worker.poll() is None, "the worker died"
            finally:
                worker.terminate()
                worker.wait(60)
        return got

    try:
        first = run(events[:300], "worker-1.log", 300)
        saved = checkpoint.latest(settings.checkpoint_dir)
        assert saved is not None, "the worker wrote a checkpoint"
        learner, offsets = checkpoint.load(saved)
        assert learner.steps > 0 and len(learner.vocab) > 0
        assert learner.replay, "the replay buffer is in the checkpoint"
        assert sum(offsets.values()) == 300, "the offsets learned up to: every event of the first run"
        second = run(events[300:], "worker-2.log", 400)
    finally:
        recs.close()
    assert len(first) == 300 and len(second) == 100
    steps = [int(rec["model_version"].rsplit("@", 1)[1]) for _, rec in second if rec["strategy"] == "model"]
    assert steps and min(steps) >= learner.steps, "the restarted worker went on from the checkpoint's model"
