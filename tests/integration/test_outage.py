"""A broker that stops mid-stream and comes back: the worker rides it out and answers every event.

The broker here is one of the test's own (a second local broker on free ports, from the same jars), so that
stopping it disturbs nothing else."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stream_rec.ops import kafka_local
from stream_rec.ops.clients import produce
from stream_rec.ops.topics import create_topics, load_specs, specs_for
from stream_rec.settings import Settings
from tests.integration.conftest import WorkerProcess, final_states, read_topic, run_settings
from tests.integration.test_delivery import events

pytestmark = pytest.mark.kafka


def _free_pair() -> int:
    """A port p with p + 1 free too (the broker's controller listens on p + 1)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 65534:
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two free ports in a row")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Settings]:
    """A broker of this test's own in ``tmp_path``, sharing the installed jars; stopped afterwards."""
    shared = Settings()
    jars = shared.home / "kafka" / shared.kafka_version
    if not (jars / "libs").is_dir():
        pytest.fail(f"no Kafka jars in {jars}: run `stream-rec kafka install`")
    home = tmp_path / "home"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / shared.kafka_version).symlink_to(jars)
    settings = Settings(home=home, broker=f"127.0.0.1:{_free_pair()}")
    kafka_local.start(settings)
    try:
        yield settings
    finally:
        kafka_local.stop(settings)


def test_a_broker_stopped_and_started_mid_stream_loses_nothing(own_broker: Settings, tmp_path: Path) -> None:
    settings = run_settings(own_broker.bootstrap, tmp_path, partitions=2, seq_len=200)
    create_topics(settings, specs_for(settings, load_specs()))
    stream = events(seed=9)
    before, after = stream[:900], stream[900:1300]
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()

    def answered() -> set[str]:  # a client of its own each time: none is left open across the outage
        return {
            orjson.loads(r.value)["event_id"] for r in read_topic(settings.bootstrap, settings.topic_recommendations)
        }

    try:
        worker.wait_for(r"Ready|ready", timeout=90)
        produce(settings, before)  # a backlog the worker is still working through when the broker goes
        deadline = time.monotonic() + 60
        while len(got := answered()) < 100 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert 100 <= len(got) < len(before), "the outage comes while the worker is working through a backlog"
        kafka_local.stop(own_broker)
        time.sleep(8)
        assert worker.alive(), worker.text()[-3000:]
        kafka_local.start(own_broker)
        produce(settings, after)
        want = {e.event_id for e in stream[:1300]}
        deadline = time.monotonic() + 180
        while not want <= (got := answered()) and time.monotonic() < deadline:
            time.sleep(1)
        assert worker.alive(), worker.text()[-3000:]
    finally:
        worker.stop()
    print(f"\nbroker stopped for 8 s with {len(before) - 100}+ events waiting: {len(want)} events, "
          f"{len(want - got)} never answered")  # fmt: skip
    missing = want - got
    assert not missing, f"{len(missing)} events never answered, e.g. {sorted(missing)[:5]}"
    complaints = [line for line in worker.text().splitlines() if "[ERROR]" in line or "[WARNING]" in line]
    # Unthrottled, the Kafka clients wrote about 1,300 of these in 8 s (50,000 in a 43 s outage).
    assert len(complaints) < 60, "\n".join(complaints[:80])
    for user, (_, state) in final_states(settings).items():
        mine = [e.event_id for e in stream[:1300] if e.user_id == user]
        assert sorted(state["ids"]) == sorted(mine), f"{user}: each event once in its sequence"
