"""The learning path: the online learner (learner.py, its optimizer, replay buffer and softmax candidates), its
trainer thread (trainer.py), checkpoints (checkpoint.py), and the learning side serving is handed, in the
worker's process (local.py) or in one of its own (process.py), or a trainer elsewhere joined by Kafka topics
(remote.py, and serving/remote.py on the worker's side); recommender.py is the model as a recommender."""

from __future__ import annotations

from collections.abc import Callable

from ..serving.remote import RemoteLearning
from ..serving.scoring import Scorer
from ..serving.side import Durations, LearningSide
from ..settings import Settings
from .local import Learning
from .process import LearningProcess

__all__ = ["open_side"]


def open_side(settings: Settings, publish: Callable[[Scorer], None], freshness: Durations) -> LearningSide:
    """The learning side ``settings.learn_in`` asks for (a :data:`~stream_rec.serving.side.OpenSide`)."""
    sides: dict[str, type[Learning | LearningProcess | RemoteLearning]] = {
        "thread": Learning, "process": LearningProcess, "kafka": RemoteLearning,
    }  # fmt: skip
    return sides[settings.learn_in](settings, publish, freshness)
