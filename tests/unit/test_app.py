"""The worker's Faust app is wired to its settings (no broker needed to build it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from stream_rec.errors import SettingsMismatch
from stream_rec.learning import checkpoint
from stream_rec.learning.learner import OnlineLearner
from stream_rec.ops.ceiling import create_ceiling_app
from stream_rec.settings import ModelSettings, Settings
from stream_rec.worker.app import create_app
from tests.unit.streams import planted


def test_the_producer_lingers_as_configured(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"linger": 0.025})
    for app in (create_app(settings), create_ceiling_app(settings)):
        # What reaches the Kafka client (aiokafka's linger_ms), not only Faust's own setting.
        assert app.producer._settings_default()["linger_ms"] == 25
    default = create_app(Settings(home=tmp_path, data_dir=tmp_path / "default"))
    assert default.producer._settings_default()["linger_ms"] > 0, "by default the producer gathers messages"


@pytest.mark.parametrize("learn_in", ["thread", "process"])
def test_a_checkpoint_of_another_shape_is_refused_as_the_worker_starts(
    settings: Settings, learn_in: Literal["thread", "process"]
) -> None:
    learner = OnlineLearner(ModelSettings(dim=8))
    learner.learn(planted(users=3))
    settings.checkpoint_dir.mkdir(parents=True)
    checkpoint.save(learner, checkpoint.path_for(settings.checkpoint_dir, learner.steps))
    configured = settings.model_copy(update={"learn_in": learn_in, "model": ModelSettings(dim=16)})
    with pytest.raises(SettingsMismatch, match=r"made with STREAM_REC_MODEL__DIM=8, but dim 16 is configured"):
        create_app(configured)
    assert checkpoint.candidates(settings.checkpoint_dir), "a sound checkpoint is not moved aside"
