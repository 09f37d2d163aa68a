"""A secured cluster: a broker of the test's own whose clients must use SASL (SCRAM-SHA-256 or PLAIN) over TLS with
a client certificate. A serving worker, a trainer, `stream-rec produce` and `stream-rec consume` reach it with the
settings' STREAM_REC_SECURITY__* alone; a wrong password or an unknown certificate authority is one line that
says so, at once, from every command."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.ops.processes import free_port, worker_env
from stream_rec.ops.topics import create_topics, load_specs, specs_for
from stream_rec.settings import Settings
from tests.integration import secured
from tests.integration.conftest import run_settings
from tests.integration.test_roles import ServingProcess, TrainerProcess, steps_served, until

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[secured.SecuredBroker]:
    started = secured.start(tmp_path_factory.mktemp("secured-broker"), Settings())
    yield started
    started.stop()  # its topics go with it


def cli(settings: Settings, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_rec", *args], env=worker_env(settings), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def test_a_worker_and_a_trainer_serve_through_sasl_over_tls(broker: secured.SecuredBroker, tmp_path: Path) -> None:
    settings = run_settings(
        broker.bootstrap, tmp_path, learn_in="kafka", security=broker.security(), publish_full_every=5.0
    )
    assert create_topics(settings, specs_for(settings, load_specs()))[settings.topic_events] == "created"
    beside = settings.model_copy(update={"data_dir": tmp_path / "trainer", "web_port": free_port()})
    trainer = TrainerProcess(beside, tmp_path / "trainer.log").start()
    worker = ServingProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_for(r"Ready|ready", timeout=120)
        trainer.wait_for(r"trainer: learning from", timeout=60)
        first = cli(settings, "produce", "--synthetic", "200", "--users", "20", "--items", "50", "--seed", "3")
        assert first.returncode == 0, first.stderr
        # the model the trainer learned from them reaches the worker through the secured model-updates topic
        until(lambda: steps_served(settings) > 0, 60, "the worker applies the trainer's model")
        second = cli(settings, "produce", "--synthetic", "100", "--users", "20", "--items", "50", "--seed", "4")
        assert second.returncode == 0, second.stderr
        read = cli(settings, "consume", "--from-beginning", "--limit", "300", "--timeout", "30")
        assert read.returncode == 0, read.stderr
        lists = {r["event_id"]: r for r in (orjson.loads(line.split("\t", 1)[1]) for line in read.stdout.splitlines())}
        assert len(lists) == 300, read.stdout[-2000:]
        later = [lists[e.event_id] for e in synthetic_events(100, users=20, items=50, seed=4)]  # (as the CLI made)
        assert all(len(r["items"]) == settings.k for r in later)
        assert any(r["strategy"] == "model" for r in later), "no list ranked with the trainer's model"
        assert worker.alive() and trainer.alive()
    finally:
        worker.stop()
        trainer.stop()


@pytest.mark.parametrize(
    ("command", "wrong", "said"),
    [
        (("consume", "--timeout", "1"), {"password": "not-it"}, "refused the credentials"),
        (("produce", "--synthetic", "5"), {"sasl_mechanism": "PLAIN"}, "refused the credentials"),
        (("worker", "--no-trainer"), {"password": "not-it"}, "refused the credentials"),
        (("trainer",), {"ca_file": None}, "refused the TLS handshake"),
    ],
)
def test_a_refused_client_says_so_in_one_line(
    broker: secured.SecuredBroker, tmp_path: Path, command: tuple[str, ...], wrong: dict[str, object], said: str
) -> None:
    security = broker.security().model_copy(update=wrong)
    settings = run_settings(broker.bootstrap, tmp_path, learn_in="kafka", security=security)
    started = time.monotonic()
    done = cli(settings, *command, timeout=60)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and said in lines[0] and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert time.monotonic() - started < 30  # at once, not after a client's retries
