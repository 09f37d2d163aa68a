"""`stream-rec produce` and `stream-rec consume` against the real broker."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import orjson
import pytest

from stream_rec.cli import main
from stream_rec.kafka_local import is_up

pytestmark = pytest.mark.kafka


def test_produce_then_consume_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broker = os.environ.get("STREAM_REC_BROKER", "127.0.0.1:9092")
    if not is_up(broker):
        pytest.fail(f"no Kafka broker on {broker}: start one with `stream-rec kafka start`")
    topic = f"cli-{uuid.uuid4().hex[:8]}-events"
    os.environ["STREAM_REC_TOPIC_EVENTS"] = topic
    try:
        data = tmp_path / "events.jsonl"
        data.write_bytes(
            b"\n".join(
                orjson.dumps({"user_id": f"u{i % 3}", "item_id": f"i{i}", "event": "pv", "ts": 1.7e9 + i})
                for i in range(25)
            )
        )
        assert main(["--broker", broker, "topics", "create"]) == 0
        assert main(["--broker", broker, "produce", str(data), "--limit", "20", "--rate", "200"]) == 0
        assert "20 events written" in capsys.readouterr().out
        assert main(["--broker", broker, "consume", "--topic", topic, "--from-beginning", "--timeout", "5"]) == 0
        lines = capsys.readouterr().out.splitlines()
    finally:
        del os.environ["STREAM_REC_TOPIC_EVENTS"]
    assert len(lines) == 20
    keys = [line.split("\t")[0] for line in lines]
    values = [orjson.loads(line.split("\t", 1)[1]) for line in lines]
    assert all(key == value["user_id"] for key, value in zip(keys, values, strict=True)), "keyed by user id"
    assert {v["item_id"] for v in values} == {f"i{i}" for i in range(20)}
    assert all(v["event"] == "view" for v in values), "dataset aliases mapped"
