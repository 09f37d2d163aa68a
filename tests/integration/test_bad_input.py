"""Ten thousand malformed messages mixed with valid events, through a worker and the real broker: every bad one in
the dead-letter topic once, with its reason, every valid one answered, and the worker still running."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from stream_rec.errors import InvalidEvent
from stream_rec.ops.clients import open_consumer
from stream_rec.settings import Settings
from stream_rec.wire.events import parse_event
from stream_rec.worker.admission import home_partition
from tests import fuzz
from tests.integration.conftest import WorkerProcess, collect, final_states

pytestmark = pytest.mark.kafka

BAD, VALID = 4_000, 1_500


def test_thousands_of_bad_messages_are_dead_lettered_and_every_valid_event_answered(
    stream: Callable[..., Settings], tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    settings = stream(partitions=2)
    rng = random.Random(11)
    outgoing: list[tuple[bytes | None, bytes | None, int | None]] = []  # key, value, partition (None: partitioner)
    valid = [fuzz.base(BAD + n) for n in range(VALID)]
    for key, value in fuzz.messages(BAD, seed=5):
        outgoing.append((key, value, None))
    outgoing.append((b"u1", b"\x00" * 1_000_000, None))  # 1 MB of NUL: valid UTF-8, six times longer escaped
    for n, event in enumerate(valid):  # keyed right, not at all, otherwise, or on another partition than the user's
        user, way = event["user_id"], n % 4
        home = home_partition(user, settings.partitions)
        key = [user.encode(), None, b"not-the-user", user.encode()][way]
        partition = (home + 1) % settings.partitions if way == 3 else None
        outgoing.append((key, orjson.dumps(event), partition))
    rng.shuffle(outgoing)

    dlq = open_consumer(settings, settings.topic_dlq)
    recs = open_consumer(settings, settings.topic_recommendations)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    kafka = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=20, max_request_size=2**21)
    try:
        worker.wait_for(r"Ready|ready", timeout=90)
        futures = [kafka.send(settings.topic_events, key=k, value=v, partition=p) for k, v, p in outgoing]
        kafka.flush()
        where = [f.get(timeout=30) for f in futures]
        bad: dict[tuple[int, int], bytes | None] = {}
        good: set[str] = set()
        for (_, value, _), meta in zip(outgoing, where, strict=True):
            try:
                good.add(parse_event(value, settings.max_event_bytes).event_id)
            except InvalidEvent:
                bad[meta.partition, meta.offset] = value
        assert len(bad) > 0.8 * BAD and len(good) > VALID, "the fuzzer makes mostly bad messages, some valid ones"
        letters = collect(dlq, len(bad), timeout=240)
        answered = {rec["event_id"] for _, rec in collect(recs, 10**9, timeout=5)}
        while not good <= answered and (more := collect(recs, 10**9, timeout=10)):
            answered |= {rec["event_id"] for _, rec in more}
        extra = collect(dlq, 1, timeout=2)
        assert worker.alive(), worker.text()[-3000:]
    finally:
        kafka.close()
        worker.stop()
        dlq.close()
        recs.close()

    assert not extra, "nothing dead-lettered twice, nothing valid dead-lettered"
    seen = [(e["partition"], e["offset"]) for _, e in letters]
    assert len(seen) == len(set(seen)) == len(bad) and set(seen) == set(bad), "every bad message, once"
    assert all(e["reason"] and e["topic"] == settings.topic_events for _, e in letters)
    missing = good - answered
    assert not missing, f"{len(missing)} valid events never answered, e.g. {sorted(missing)[:5]}"
    for _, e in letters:
        size = len(orjson.dumps(e))
        assert size < 700_000, f"an envelope of {size} bytes"
        original = bad[e["partition"], e["offset"]]
        if original is not None and len(original) > 65_536:
            assert e["truncated"] and e["length"] == len(original)
            assert e["sha256"] == hashlib.sha256(original).hexdigest()
    nul = next(e for _, e in letters if e.get("length") == 1_000_000)
    assert nul["value"] == "\x00" * 65_536 and "over the limit" in nul["reason"]
    print(f"\n{len(outgoing)} messages: {len(bad)} bad, all dead-lettered once; {len(good)} valid, all answered")
    states = final_states(settings)
    for event in valid:
        partitions, state = states[event["user_id"]]
        assert partitions == {home_partition(event["user_id"], settings.partitions)}, "state on the user's partition"
        assert state["ids"].count(event["event_id"]) == 1, "each valid event once in its user's sequence"
