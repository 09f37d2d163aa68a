"""The worker's recommendation engine, free of Kafka: learn from a batch of events, then recommend.

The agent decodes events and keeps users' sequences in its table; for each batch it hands this engine the
accepted events with the histories before and after them. The engine runs in a worker thread so that a
gradient step never blocks the event loop. It also owns the model's checkpoints: it resumes from the newest
one that loads, and a user it is told to forget leaves its replay buffer and every checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checkpoint
from .admission import Accepted
from .events import Event
from .live import LiveMetrics
from .recommenders import Popularity, SequenceRecommender
from .sequences import Step, step_of
from .settings import ModelSettings, Settings

__all__ = ["Accepted", "Engine", "LiveMetrics", "Output"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Output:
    recommendation: dict[str, Any]
    embedding: dict[str, Any] | None


class Engine:
    """Online sequence model plus a popularity fallback for users the model knows nothing about yet."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        model_settings = settings.model.model_copy(update={"exclude_seen": settings.exclude_seen})
        # What the newest checkpoint (loaded or written) holds: steps, and "topic:partition" -> next offset.
        self.saved_steps = 0
        self.offsets: dict[str, int] = {}
        self.model = self._resume(model_settings) or SequenceRecommender(model_settings)
        self.popularity = Popularity()
        self.metrics = LiveMetrics()
        self.lock = threading.Lock()  # the web view reads the model while a batch may be running
        self._writing = threading.Lock()  # one checkpoint at a time

    def _resume(self, model_settings: ModelSettings) -> SequenceRecommender | None:
        """The model of the newest checkpoint in the worker's folder that loads, if any (its own settings are
        kept); damaged ones are skipped with a warning (:func:`checkpoint.load_newest`)."""
        found = checkpoint.load_newest(self.settings.checkpoint_dir)
        if found is None:
            if checkpoint.candidates(self.settings.checkpoint_dir) or self.settings.checkpoint_dir.is_dir():
                log.info("no checkpoint to resume from in %s: the model starts afresh", self.settings.checkpoint_dir)
            return None
        learner, self.offsets, path = found
        self.saved_steps = learner.steps
        if learner.settings.model_copy(update={"threads": model_settings.threads}) != model_settings:
            log.warning("resuming from %s with its own model settings, not the configured ones", path)
        log.info("resumed the model from %s: %d steps, %d examples learned", path, learner.steps, learner.examples)
        return SequenceRecommender.from_learner(learner)

    def checkpoint(self, offsets: dict[str, int], *, replace_all: bool = False) -> Path | None:
        """Write the model with the offsets it has learned up to; keep the newest ``checkpoint_keep``.

        Nothing is written while nothing changed: no new step and no new offset since the last checkpoint, unless
        ``replace_all``, which writes one whatever and deletes every other (after a user is forgotten).
        """
        folder = self.settings.checkpoint_dir
        with self._writing:
            with self.lock:  # only while the state is copied: batches go on while it is packed and written
                learner = self.model.learner
                unchanged = (learner.steps, offsets) == (self.saved_steps, self.offsets)
                if not replace_all and (learner.steps == 0 or unchanged):
                    return None
                steps, state = learner.steps, checkpoint.snapshot(learner, offsets=offsets)
            path = checkpoint.write(state, checkpoint.path_for(folder, steps))
            self.saved_steps, self.offsets = steps, dict(offsets)
            keep = 1 if replace_all else self.settings.checkpoint_keep
            for old in checkpoint.candidates(folder)[keep:]:
                old.unlink(missing_ok=True)
            if replace_all:
                for old in folder.glob(f"*{checkpoint.DAMAGED}"):
                    old.unlink(missing_ok=True)
        return path

    def forget(self, user_id: str) -> int:
        """Drop the user's examples from the replay buffer (the model's only record of who did what); return
        how many. The caller removes the user's sequence and writes a checkpoint with ``replace_all``."""
        with self.lock:
            learner = self.model.learner
            kept = [example for example in learner.replay if example[1].user != user_id]
            dropped = len(learner.replay) - len(kept)
            learner.replay = kept
        return dropped

    def process(self, batch: Sequence[Accepted]) -> list[Output]:
        """Learn from the batch (but its redeliveries), then publishable outputs for each event, in order."""
        examples = [(a.before, step_of(a.event)) for a in batch if a.learn]
        with self.lock:
            self.model.learn_many(examples)
            self.popularity.learn_many(examples)
            return self._recommend(batch)

    def recommend(self, history: list[Step]) -> dict[str, Any]:
        """A recommendation for a history outside the stream (the web view's /users/{id})."""
        with self.lock:
            return self._rank([history], [None])[0][0]

    def _recommend(self, batch: Sequence[Accepted]) -> list[Output]:
        outputs = []
        for a, (rec, embedding) in zip(
            batch, self._rank([a.after for a in batch], [a.event for a in batch]), strict=True
        ):
            if rec["strategy"] == "cold_start":
                self.metrics.cold_start += 1
            emb = None
            if embedding is not None:
                emb = {"user_id": a.event.user_id, "embedding": embedding,
                       "model_version": rec["model_version"], "ts": rec["published_ts"]}  # fmt: skip
            outputs.append(Output(rec, emb))
        return outputs

    def _rank(
        self, histories: list[list[Step]], events: Sequence[Event | None]
    ) -> list[tuple[dict[str, Any], list[float] | None]]:
        """Model rankings (one batched forward pass) where the model knows the user's items, else popularity."""
        k, exclude = self.settings.k, self.settings.exclude_seen
        vocab = self.model.learner.vocab
        trained = self.model.learner.steps > 0
        known = [i for i, h in enumerate(histories) if trained and any(vocab.index(s.item) for s in h)]
        recs = dict(zip(known, self.model.recommend([histories[i] for i in known], k, exclude), strict=True))
        version = self.model.version
        out = []
        for i, (history, event) in enumerate(zip(histories, events, strict=True)):
            rec = recs.get(i)
            if rec is not None and len(rec.ranking) == k:
                strategy, ranking, explain, embedding = "model", rec.ranking, rec.explain, rec.embedding
            else:
                strategy, explain, embedding = "cold_start", [], rec.embedding if rec else None
                ranking = self.popularity.rank(history, k, exclude)
            message = {
                "user_id": event.user_id if event else None,
                "items": [{"item_id": item, "score": round(score, 6)} for item, score in ranking],
                "event_id": event.event_id if event else None,
                "event_ts": event.ts if event else None,
                "published_ts": time.time(),
                "model_version": version if strategy == "model" else f"popularity@{self.model.learner.steps}",
                "strategy": strategy,
                "explain": [{"item_id": item, "weight": w} for item, w in explain],
            }
            out.append((message, embedding))
        return out
