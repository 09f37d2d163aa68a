"""What the integration tests share: the real broker, a stream of one's own that is deleted afterwards, worker
processes that can be killed, and reading topics back."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_rec.ops.processes import free_port, worker_env
from stream_rec.ops.topics import create_topics, delete_topics, load_specs, specs_for
from stream_rec.settings import Settings


def run_settings(broker: str, folder: Path, **overrides: Any) -> Settings:
    """Settings whose topics, consumer group and worker state are this run's own (``test-<8 hex>``)."""
    run = f"test-{uuid.uuid4().hex[:8]}"
    fields: dict[str, Any] = {
        "broker": broker,
        "app_id": run,
        "topic_events": f"{run}-events",
        "topic_recommendations": f"{run}-recommendations",
        "topic_embeddings": f"{run}-user-embeddings",
        "topic_dlq": f"{run}-events-dlq",
        "topic_control": f"{run}-control",
        "partitions": 2,
        "k": 5,
        "data_dir": folder / "worker",
        "home": folder,
        "web_port": free_port(),
    }
    return Settings(**(fields | overrides))


@pytest.fixture
def stream(broker: str, tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """A factory of run settings with their topics created; every topic of the runs is deleted afterwards."""
    made: list[Settings] = []

    def make(**overrides: Any) -> Settings:
        settings = run_settings(broker, tmp_path, **overrides)
        create_topics(settings, specs_for(settings, load_specs()))
        made.append(settings)
        return settings

    yield make
    for settings in made:
        delete_topics(settings, containing=settings.app_id)


class WorkerProcess:
    """``stream-rec worker`` in a child process with the run's settings and extra environment."""

    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        self.settings, self.log = settings, log
        self.env = worker_env(settings) | {"STREAM_REC_BATCH_WITHIN": "0.05"} | env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_rec", "worker"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.started = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int | None:
        """SIGTERM (Faust's graceful stop), SIGKILL after 60 s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} not in the worker's log {self.log}:\n{self.text()[-3000:]}")


def collect(consumer: Any, n: int, timeout: float, *, raw: bool = False) -> list[tuple[bytes | None, Any]]:
    """Up to ``n`` messages (key, decoded JSON value or None) within ``timeout`` seconds."""
    out: list[tuple[bytes | None, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                value = r.value if raw or r.value is None else orjson.loads(r.value)
                out.append((r.key, value))
    return out


def read_topic(broker: str, topic: str, *, timeout: float = 10.0) -> list[Any]:
    """Every message of ``topic`` from its beginning to its end now (kafka-python records)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def final_states(settings: Settings) -> dict[str, tuple[set[int], Any]]:
    """The users' sequences as a restore from the changelog would see them: user -> (partitions, last value)."""
    states: dict[str, tuple[set[int], Any]] = {}
    for r in read_topic(settings.bootstrap, f"{settings.app_id}-user_sequences-changelog"):
        user = orjson.loads(r.key)
        parts = states.get(user, (set(), None))[0] | {r.partition}
        states[user] = (parts, None if r.value is None else orjson.loads(r.value))
    return states
