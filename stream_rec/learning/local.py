"""The engine's learning side: the online learner, its trainer, its checkpoints and what it is told to forget.

:class:`Learning` keeps all of it in the worker's own process, the trainer in a thread; process.py runs
the same :class:`Learning` in a process of its own behind the same methods, so that learning never holds the
interpreter's lock that serving needs. Either way it resumes from the newest checkpoint in the worker's folder
that loads, hands every serving snapshot it publishes to ``publish``, and writes checkpoints with the offsets
learned up to.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import StreamRecError
from ..serving.scoring import Scorer
from ..serving.side import Durations, Queued, Status
from ..settings import ModelSettings, Settings
from . import checkpoint
from .learner import OnlineLearner
from .trainer import Trainer

__all__ = ["Learning", "Status"]

log = logging.getLogger(__name__)


class Learning:
    """The learner and its trainer thread, in this process; see the module's docstring."""

    def __init__(self, settings: Settings, publish: Callable[[Scorer], None], freshness: Durations) -> None:
        self.settings = settings
        # What the newest checkpoint (loaded or written) holds: steps, and "topic:partition" -> next offset.
        self.saved_steps = 0
        self.offsets: dict[str, int] = {}
        self.checkpoint_path: Path | None = None
        self.checkpoint_ts: float | None = None
        self.learner = self._resume(settings.model) or OnlineLearner(settings.model)
        if settings.catalogue is not None:
            self._admit_catalogue(settings.catalogue)
        self.lock = threading.Lock()  # the learner's: its steps, snapshots and checkpoints take turns
        self._writing = threading.Lock()  # one checkpoint at a time
        self.trainer = Trainer(
            self.learner, self.lock, publish, queue_size=settings.learn_queue, batch=settings.batch_size,
            gather=settings.model.batch, refresh_every=settings.refresh_every, offsets=self.offsets,
            freshness=freshness,
        )  # fmt: skip
        publish(self.learner.snapshot().prepare())  # the model as it starts, resumed or new

    def _resume(self, model_settings: ModelSettings) -> OnlineLearner | None:
        """The learner of the newest checkpoint in the worker's folder that loads, if any, with the configured model
        settings (one made with settings that shape the model otherwise is refused: :func:`checkpoint.load`);
        damaged ones are skipped with a warning (:func:`checkpoint.load_newest`)."""
        found = checkpoint.load_newest(self.settings.checkpoint_dir, model_settings)
        if found is None:
            if checkpoint.candidates(self.settings.checkpoint_dir) or self.settings.checkpoint_dir.is_dir():
                log.info("no checkpoint to resume from in %s: the model starts afresh", self.settings.checkpoint_dir)
            return None
        learner, self.offsets, path = found
        self.saved_steps = learner.steps
        self.checkpoint_path, self.checkpoint_ts = path, path.stat().st_mtime
        log.info("resumed the model from %s: %d steps, %d examples learned", path, learner.steps, learner.examples)
        return learner

    def _admit_catalogue(self, path: Path) -> None:
        """Rows for every item of the catalogue file (one id per line) the vocabulary lacks."""
        try:
            items = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise StreamRecError(f"cannot read the catalogue {path}: {exc}") from None
        items = [item for item in items if item]
        capacity = self.settings.model.capacity
        if len(set(items)) > capacity:
            raise StreamRecError(
                f"the catalogue {path} holds {len(set(items))} items, more than the model's capacity of {capacity};"
                " raise STREAM_REC_MODEL__CAPACITY"
            )
        started = time.perf_counter()
        added = self.learner.admit(items)
        log.info("catalogue %s: %d items, %d of them new to the model (%.1f s)", path, len(items), added,
                 time.perf_counter() - started)  # fmt: skip

    def wait_ready(self) -> None:
        """The first snapshot was published as this was made."""

    def start(self) -> None:
        """Start the trainer's thread (the worker does; tests may step it themselves)."""
        self.trainer.start()

    def stop(self, drain: float = 5.0) -> None:
        """Stop the trainer after learning what waits, for at most ``drain`` seconds."""
        self.trainer.stop(drain)

    def close(self) -> None:
        """Nothing to let go of in this process (the trainer's thread ends with :meth:`stop`)."""

    def submit(self, items: Sequence[Queued]) -> None:
        """Queue examples to learn (never blocks; see trainer.py)."""
        self.trainer.submit(items)

    def forget(self, user_id: str) -> int:
        """Drop the user's examples from the trainer's queue and the replay buffer; return how many."""
        dropped = self.trainer.forget(user_id)
        with self.lock:
            return dropped + self.learner.replay.forget(user_id)

    def checkpoint(self, *, replace_all: bool = False) -> Path | None:
        """Write the model with the offsets it has learned up to; keep the newest ``checkpoint_keep``.

        Nothing is written while nothing changed: no new step and no new offset since the last checkpoint, unless
        ``replace_all``, which writes one whatever and deletes every other (after a user is forgotten).
        """
        folder = self.settings.checkpoint_dir
        with self._writing:
            with self.lock:  # only while the state is copied: learning goes on while it is packed and written
                learner = self.learner
                offsets = self.trainer.learned_offsets()
                unchanged = (learner.steps, offsets) == (self.saved_steps, self.offsets)
                if not replace_all and (learner.steps == 0 or unchanged):
                    return None
                steps, state = learner.steps, checkpoint.snapshot(learner, offsets=offsets)
            path = checkpoint.write(state, checkpoint.path_for(folder, steps))
            self.saved_steps, self.offsets = steps, offsets
            self.checkpoint_path, self.checkpoint_ts = path, time.time()
            keep = 1 if replace_all else self.settings.checkpoint_keep
            for old in checkpoint.candidates(folder)[keep:]:
                old.unlink(missing_ok=True)
            if replace_all:
                for old in folder.glob(f"*{checkpoint.DAMAGED}"):
                    old.unlink(missing_ok=True)
        return path

    def status(self) -> Status:
        learner, trainer = self.learner, self.trainer
        return Status(
            steps=learner.steps, skipped_steps=learner.skipped_steps, examples=learner.examples,
            loss=None if math.isnan(learner.last_loss) else learner.last_loss, drifts=learner.updater.drifts,
            replay=len(learner.replay), replay_capacity=learner.settings.replay_size,
            waiting=trainer.waiting, dropped=trainer.dropped, running=trainer.running,
            checkpoint=str(self.checkpoint_path) if self.checkpoint_path else None, checkpoint_ts=self.checkpoint_ts,
        )  # fmt: skip
