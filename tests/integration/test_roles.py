"""Serving and training as two roles joined by Kafka, on the real broker: `stream-rec worker` with
STREAM_REC_LEARN_IN=kafka serves and sends its examples on, `stream-rec trainer` learns and publishes the model,
the worker applies it; a trainer restarted resumes from its checkpoint and the versions go on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.ops.clients import open_consumer, produce
from stream_rec.settings import Settings
from stream_rec.wire.events import Event
from tests.integration.conftest import WorkerProcess, collect, read_topic

pytestmark = pytest.mark.kafka


class TrainerProcess(WorkerProcess):
    """``stream-rec trainer`` in a child process, with a data folder of its own."""

    def start(self) -> TrainerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_rec", "trainer"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self


def test_a_serving_worker_ranks_with_the_model_its_trainer_publishes(
    stream: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = stream(learn_in="kafka", checkpoint_every=2.0, refresh_every=0.5)
    trainer_settings = settings.model_copy(update={"data_dir": tmp_path / "trainer"})
    events = list(synthetic_events(600, users=30, items=40, seed=5))
    recs = open_consumer(settings, settings.topic_recommendations)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    trainer = TrainerProcess(trainer_settings, tmp_path / "trainer.log").start()
    try:
        worker.wait_for(r"Ready|ready", timeout=120)
        trainer.wait_for(r"trainer: learning from", timeout=60)
        produce(settings, events[:300])
        first = collect(recs, 300, timeout=120)
        assert len(first) == 300, "every event answered"
        trainer.wait_for(r"checkpoint: ", timeout=60)
        produce(settings, events[300:])
        later = collect(recs, 300, timeout=120)
        assert len(later) == 300
        versions = [value["model_version"] for _, value in later if value["strategy"] == "model"]
        assert versions, "the worker ranks with the trainer's model"

        # The trainer, SIGKILLed: serving goes on with the model it has; restarted, it resumes from its checkpoint.
        trainer.kill()
        produce(
            settings,
            [Event(e.user_id, e.item_id, e.event, e.ts + 1e5, f"again-{n}") for n, e in enumerate(events[:50])],
        )
        assert len(collect(recs, 50, timeout=60)) == 50
        restarted = TrainerProcess(trainer_settings, tmp_path / "trainer2.log").start()
        restarted.wait_for(r"resumed the model from .*checkpoint", timeout=60)
        updates = read_topic(settings.bootstrap, settings.topic_updates)
        assert updates, "the trainer published on the model-updates topic"
        restarted.stop()
    finally:
        trainer.stop()
        worker.stop()
    assert "Traceback" not in worker.text(), worker.text()[-3000:]
    assert "waiting for the next full snapshot" not in worker.text()
    examples = read_topic(settings.bootstrap, settings.topic_examples)
    assert len(examples) >= 600 and all("history" in orjson.loads(r.value) for r in examples)
