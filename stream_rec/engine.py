"""The worker's recommendation engine, free of Kafka: learn from a batch of events, then recommend.

The agent decodes events and keeps users' sequences in its table; for each batch it hands this engine the
accepted events with the histories before and after them. The engine runs in a worker thread so that a
gradient step never blocks the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoint
from .events import Event
from .recommenders import Popularity, SequenceRecommender
from .sequences import Step, step_of
from .settings import ModelSettings, Settings

__all__ = ["Accepted", "Engine", "LiveMetrics", "Output"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event that passed validation and de-duplication, with the user's history around it."""

    event: Event
    before: list[Step]  # history before the event (what the model learns to predict it from)
    after: list[Step]  # history including the event (what the next recommendation is made from)


@dataclass(frozen=True, slots=True)
class Output:
    recommendation: dict[str, Any]
    embedding: dict[str, Any] | None


@dataclass
class LiveMetrics:
    """Counters of a running worker; hit rate is scored on the list actually served ('as served')."""

    events: int = 0
    invalid: int = 0
    duplicates: int = 0
    scored: int = 0
    hits: int = 0
    cold_start: int = 0
    by_event: dict[str, list[int]] = field(default_factory=dict)  # event -> [scored, hits]

    def score(self, event: Event, served: Sequence[str]) -> None:
        if not served:
            return
        hit = event.item_id in served
        self.scored += 1
        self.hits += hit
        counts = self.by_event.setdefault(event.event, [0, 0])
        counts[0] += 1
        counts[1] += hit

    @property
    def hit_rate(self) -> float:
        return self.hits / self.scored if self.scored else 0.0


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
        """The model of the newest checkpoint in the worker's folder, if any (its own settings are kept)."""
        path = checkpoint.latest(self.settings.checkpoint_dir)
        if path is None:
            return None
        learner, self.offsets = checkpoint.load(path)
        self.saved_steps = learner.steps
        if learner.settings.model_copy(update={"threads": model_settings.threads}) != model_settings:
            log.warning("resuming from %s with its own model settings, not the configured ones", path)
        log.info("resumed the model from %s (%d steps)", path, learner.steps)
        return SequenceRecommender.from_learner(learner)

    def checkpoint(self, offsets: dict[str, int]) -> Path | None:
        """Write the model with the offsets it has learned up to; keep the newest ``checkpoint_keep``.

        Nothing is written while nothing changed: no new step and no new offset since the last checkpoint.
        """
        with self._writing:
            with self.lock:  # only while the state is copied: batches go on while it is packed and written
                learner = self.model.learner
                if learner.steps == 0 or (learner.steps, offsets) == (self.saved_steps, self.offsets):
                    return None
                steps, state = learner.steps, checkpoint.snapshot(learner, offsets=offsets)
            folder = self.settings.checkpoint_dir
            path = checkpoint.write(state, checkpoint.path_for(folder, steps))
            self.saved_steps, self.offsets = steps, dict(offsets)
        for old in sorted(folder.glob("checkpoint-*.safetensors"))[: -self.settings.checkpoint_keep]:
            old.unlink(missing_ok=True)
        return path

    def process(self, batch: Sequence[Accepted]) -> list[Output]:
        """Learn from the batch, then publishable outputs for each event, in order."""
        examples = [(a.before, step_of(a.event)) for a in batch]
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
