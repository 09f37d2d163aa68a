"""The local broker's life cycle on a throw-away home and port: it never touches a broker already running.

The jars are fetched once into the default home's cache (``Settings().home``) and the temporary home links to
them, so only the first run on a machine pays for Maven.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_rec.ops import kafka_local
from stream_rec.ops.probe import is_up
from stream_rec.settings import Settings

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        shutil.which("java") is None or shutil.which("mvn") is None, reason="needs java and mvn on PATH"
    ),
]


def _free_port_pair() -> int:
    """A port whose successor is free too (the controller listens on port+1); never 9092."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in (9091, 9092) or port >= 65534:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    pytest.fail("no two adjacent free ports on 127.0.0.1")


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    shared = Settings()
    libs = kafka_local.install(shared)  # fetched once per machine; a no-op afterwards
    home = tmp_path / "home"
    home.mkdir()
    (home / "kafka").symlink_to(libs.parent.parent, target_is_directory=True)
    monkeypatch.setenv("STREAM_REC_HOME", str(home))
    monkeypatch.setenv("STREAM_REC_BROKER", f"127.0.0.1:{_free_port_pair()}")
    settings = Settings()
    assert settings.home == home
    try:
        yield settings
    finally:
        kafka_local.stop(settings, timeout=10)  # never leave a broker behind, whatever failed


def test_install_start_status_stop(local: Settings) -> None:
    before = kafka_local.status(local)
    assert before.installed
    assert not before.running
    assert before.pid is None
    assert before.address == local.bootstrap

    t0 = time.monotonic()
    started = kafka_local.start(local, timeout=60)
    took = time.monotonic() - t0
    assert started.running and not started.already_running, started
    assert started.pid is not None
    assert (local.home / "broker" / "broker.pid").read_text().strip() == str(started.pid)
    assert (local.home / "broker" / "data" / "meta.properties").is_file()
    assert started.log.is_file()
    assert took < 60

    now = kafka_local.status(local)
    assert now.running and now.pid == started.pid
    assert is_up(local.bootstrap, timeout=2)

    again = kafka_local.start(local, timeout=10)
    assert again.running and again.already_running
    assert again.pid == started.pid

    assert kafka_local.stop(local, timeout=30)
    assert not (local.home / "broker" / "broker.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(started.pid, 0)
    after = kafka_local.status(local)
    assert not after.running and after.pid is None
    assert not is_up(local.bootstrap, timeout=1)
    assert not kafka_local.stop(local)  # nothing left to stop


def test_consumer_group_round_trip(local: Settings) -> None:
    """Internal topics need replication factor 1 on one node, or consumer groups never get a coordinator."""
    from kafka import KafkaConsumer, KafkaProducer

    kafka_local.start(local, timeout=60)
    producer = KafkaProducer(bootstrap_servers=local.bootstrap)
    try:
        producer.send("round-trip", b"hello").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        "round-trip",
        bootstrap_servers=local.bootstrap,
        group_id="round-trip-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    try:
        first = next(iter(consumer))  # StopIteration after consumer_timeout_ms of silence
        assert first.value == b"hello"
        consumer.commit()
    finally:
        consumer.close()
