"""Serving and training as two roles joined by Kafka, on the real broker: two `stream-rec worker` processes with
STREAM_REC_LEARN_IN=kafka share the partitions, serve and send their examples on; one `stream-rec trainer` learns
and publishes the model, which both workers apply; a serving worker killed outright and started again loses no
event; `forget` reaches the trainer; a trainer killed outright leaves serving with its model, and restarted it
resumes from its checkpoint with a full snapshot."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.ops.clients import forget, open_consumer, produce
from stream_rec.ops.processes import free_port
from stream_rec.settings import Settings
from stream_rec.wire.events import Event
from tests.integration.conftest import WorkerProcess, collect, final_states, read_topic

pytestmark = pytest.mark.kafka


class ServingProcess(WorkerProcess):
    """``stream-rec worker --no-trainer`` in a child process: it serves only."""

    def start(self) -> ServingProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_rec", "worker", "--no-trainer"], env=self.env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self


class TrainerProcess(WorkerProcess):
    """``stream-rec trainer`` in a child process."""

    def start(self) -> TrainerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_rec", "trainer"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self


def stats(settings: Settings) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/stats", timeout=10) as response:
        found: dict[str, Any] = orjson.loads(response.read())
    return found


def steps_served(settings: Settings) -> int:
    """The learner steps of the model a worker ranks with (its web view's ``model_version``, ``...@steps``)."""
    return int(stats(settings)["model_version"].rsplit("@", 1)[1])


def running(pid: int) -> bool:
    """Whether the process runs (a zombie, ended but not reaped by whoever adopted it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.5)


def test_serving_workers_rank_with_the_model_their_trainer_publishes(
    stream: Callable[..., Settings], tmp_path: Path
) -> None:
    one = stream(learn_in="kafka", partitions=4, checkpoint_every=2.0, refresh_every=0.5)
    two = one.model_copy(update={"data_dir": tmp_path / "worker-2", "web_port": free_port()})
    trainer_settings = one.model_copy(update={"data_dir": tmp_path / "trainer", "web_port": free_port()})
    events = list(synthetic_events(600, users=30, items=40, seed=5))
    again = [Event(e.user_id, e.item_id, e.event, e.ts + 1e5, f"again-{n}") for n, e in enumerate(events[:50])]
    recs = open_consumer(one, one.topic_recommendations)
    workers = [ServingProcess(s, tmp_path / f"worker-{n}.log").start() for n, s in enumerate((one, two))]
    trainer = TrainerProcess(trainer_settings, tmp_path / "trainer.log").start()
    restarted = None
    try:
        for worker in workers:
            worker.wait_for(r"Ready|ready", timeout=120)
        trainer.wait_for(r"trainer: learning from", timeout=60)
        produce(one, events[:300])
        first = collect(recs, 300, timeout=120)
        assert sorted(value["event_id"] for _, value in first) == sorted(e.event_id for e in events[:300])
        trainer.wait_for(r"checkpoint: ", timeout=60)
        # A serving worker SIGKILLed mid-stream and started again: every event answered, once in its user's state.
        produce(one, events[300:450])
        workers[1].kill()
        produce(one, events[450:])
        workers[1] = ServingProcess(two, tmp_path / "worker-1b.log").start()
        later, answered = [], set()
        deadline = time.monotonic() + 180
        while not {e.event_id for e in events[300:]} <= answered and time.monotonic() < deadline:
            got = collect(recs, 10**9, timeout=2.0)
            later += got
            answered |= {value["event_id"] for _, value in got}
        assert answered >= {e.event_id for e in events[300:]} and any(v["strategy"] == "model" for _, v in later)
        # Both workers rank with the one model the trainer learned from all the events, not each its own.
        until(lambda: min(steps_served(s) for s in (one, two)) > 0, 30, "both workers apply the trainer's model")
        newest = max(steps_served(s) for s in (one, two))
        until(lambda: min(steps_served(s) for s in (one, two)) >= newest, 30, "both reach the newest version")
        for s in (one, two):
            updates = stats(s)["model_updates"]
            assert updates["applied"] >= 2 and updates["skipped"] == 0 and updates["behind"] is not None

        # The trainer's own view: everything learned, nothing left to read, the versions it published.
        until(lambda: stats(trainer_settings)["lag"] == 0, 60, "the trainer read every example")
        until(lambda: stats(trainer_settings)["examples"] >= 600, 60, "the trainer learned every example")
        view = stats(trainer_settings)
        assert view["role"] == "trainer" and view["version_published"] >= 2 and view["bytes_published"] > 0

        forget(one, events[0].user_id, wait=30)
        trainer.wait_for(rf"forgot user '{events[0].user_id}'", timeout=30)

        # The trainer, SIGKILLed: serving goes on with the model it has; restarted, it resumes from its checkpoint.
        trainer.kill()
        produce(one, again)
        assert len(collect(recs, 50, timeout=60)) == 50
        restarted = TrainerProcess(trainer_settings, tmp_path / "trainer-2.log").start()
        resumed = int(restarted.wait_for(r"resumed the model from \S+: (\d+) steps", timeout=60).group(1))
        assert resumed > 0
        for worker in workers:
            found = worker.wait_for(rf"model version (\d+) applied \(a full snapshot, {resumed} steps learned\)", 60)
            assert int(found.group(1)) > view["version_published"], "the versions go on after the restart"
    finally:
        for process in (restarted, trainer, *workers):
            if process is not None:
                process.stop()
    for worker in workers:
        assert "Traceback" not in worker.text(), worker.text()[-3000:]
        assert "waiting for the next full snapshot" not in worker.text()
    forgotten = events[0].user_id  # (its state went with it; its events after that start a new one)
    for user, (partitions, state) in final_states(one).items():
        mine = [e.event_id for e in [*events, *again] if e.user_id == user]
        assert len(partitions) == 1, f"{user}'s state is on partitions {partitions}"
        assert user == forgotten or sorted(state["ids"]) == sorted(mine), f"{user}: each event once in its state"
    examples = read_topic(one.bootstrap, one.topic_examples)
    assert len(examples) >= 650 and sum(orjson.loads(r.value).get("forget", False) is True for r in examples) == 1


def test_one_worker_starts_its_trainer_beside_it_and_takes_it_along(
    stream: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = stream(learn_in="kafka", refresh_every=0.5)
    recs = open_consumer(settings, settings.topic_recommendations)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        trainer_pid = int(worker.wait_for(r"started the trainer beside \(pid (\d+)\)", timeout=60).group(1))
        worker.wait_for(r"Ready|ready", timeout=120)
        worker.wait_for(r"trainer: learning from", timeout=60)
        produce(settings, list(synthetic_events(200, users=20, items=30, seed=8)))
        assert len(collect(recs, 200, timeout=120)) == 200
        until(lambda: steps_served(settings) > 0, 60, "the worker applies its trainer's model")
    finally:
        worker.stop()
    until(lambda: not running(trainer_pid), 30, "the trainer stops with its worker")
    assert (settings.worker_dir / "trainer" / "checkpoints").is_dir(), "its state beside the worker's"
