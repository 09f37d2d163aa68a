"""A new user's likeliest first mistake, tried for real: a broker that was started and stopped again. Every
command that needs it says so in one line and exits 3 within seconds; the worker waits for it, saying so once,
and serves once it is back."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_rec.ops import kafka_local
from stream_rec.ops.processes import worker_env
from stream_rec.settings import Settings
from tests.integration.conftest import WorkerProcess, run_settings
from tests.integration.test_outage import own_broker  # noqa: F401  (a fixture: a broker of the test's own)

pytestmark = pytest.mark.kafka


@pytest.fixture
def stopped(own_broker: Settings) -> Iterator[Settings]:  # noqa: F811
    kafka_local.stop(own_broker)
    yield own_broker


def test_the_cli_against_a_stopped_broker_says_so_in_one_line(stopped: Settings, tmp_path: Path) -> None:
    env = worker_env(run_settings(stopped.bootstrap, tmp_path))
    for argv in (["topics", "create"], ["produce", "--synthetic", "5"], ["consume", "--timeout", "2"]):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "stream_rec", *argv], env=env, capture_output=True, text=True)
        took = time.monotonic() - started
        assert done.returncode == 3, (argv, done.stderr)
        assert done.stderr.splitlines() == [
            f"stream-rec: error: no Kafka broker answers at {stopped.bootstrap}: start the local one with "
            "`stream-rec kafka start`, or point STREAM_REC_BROKER (or --broker) at yours"
        ], argv
        assert done.stdout == "" and took < 20, (argv, took)


def test_a_worker_waits_for_the_broker_saying_so_once(stopped: Settings, tmp_path: Path) -> None:
    settings = run_settings(stopped.bootstrap, tmp_path)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_for("waiting for the Kafka broker", timeout=60)
        time.sleep(4)
        assert worker.alive() and worker.text().count("waiting for the Kafka broker") == 1
        kafka_local.start(stopped)
        worker.wait_for(r"the broker at .* answers", timeout=60)
        worker.wait_for(r"Ready|ready", timeout=90)
    finally:
        worker.stop()
    assert "Traceback" not in worker.text()
