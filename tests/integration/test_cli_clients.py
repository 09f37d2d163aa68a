"""`stream-rec produce` and `stream-rec consume` against the real broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from stream_rec.cli import main
from stream_rec.ops.processes import worker_env
from stream_rec.settings import Settings

pytestmark = pytest.mark.kafka


def test_produce_then_consume_round_trip(
    stream: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stream()
    for name, value in worker_env(settings).items():  # the run's own topics, never the default ones
        if name.startswith("STREAM_REC_"):
            monkeypatch.setenv(name, value)
    broker, topic = settings.bootstrap, settings.topic_events
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
    assert len(lines) == 20
    keys = [line.split("\t")[0] for line in lines]
    values = [orjson.loads(line.split("\t", 1)[1]) for line in lines]
    assert all(key == value["user_id"] for key, value in zip(keys, values, strict=True)), "keyed by user id"
    assert {v["item_id"] for v in values} == {f"i{i}" for i in range(20)}
    assert all(v["event"] == "view" for v in values), "dataset aliases mapped"
