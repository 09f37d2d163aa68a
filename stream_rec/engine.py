"""The worker's recommendation engine, free of Kafka: learn from a batch of events, then recommend.

The agent decodes events and keeps users' sequences in its table; for each batch it hands this engine the
accepted events with the histories before and after them. The engine runs in a worker thread so that a
gradient step never blocks the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import Event
from .recommenders import Popularity, SequenceRecommender
from .sequences import Step, step_of
from .settings import Settings

__all__ = ["Accepted", "Engine", "LiveMetrics", "Output"]


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
        self.model = SequenceRecommender(settings.model)
        self.popularity = Popularity()
        self.metrics = LiveMetrics()
        self.lock = threading.Lock()  # the web view reads the model while a batch may be running

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
            event = Event("?", history[-1].item, history[-1].event, history[-1].ts) if history else None
            _, rec, _ = self._rank(history, event)
        return rec

    def _recommend(self, batch: Sequence[Accepted]) -> list[Output]:
        outputs = []
        for a in batch:
            strategy, rec, embedding = self._rank(a.after, a.event)
            if strategy == "cold_start":
                self.metrics.cold_start += 1
            emb = None
            if embedding is not None:
                emb = {"user_id": a.event.user_id, "embedding": embedding,
                       "model_version": rec["model_version"], "ts": rec["published_ts"]}  # fmt: skip
            outputs.append(Output(rec, emb))
        return outputs

    def _rank(self, history: list[Step], event: Event | None) -> tuple[str, dict[str, Any], list[float] | None]:
        k, exclude = self.settings.k, self.settings.exclude_seen
        vocab = self.model.learner.vocab
        known = self.model.learner.steps > 0 and any(vocab.index(s.item) for s in history)
        explain: list[tuple[str, float]] = []
        embedding = None
        if known:
            rec = self.model.recommend([history], k, exclude)[0]
            ranking, explain, embedding = rec.ranking, rec.explain, rec.embedding
            strategy, version = "model", self.model.version
        if not known or len(ranking) < k:
            strategy, version = "cold_start", f"popularity@{self.model.learner.steps}"
            ranking = self.popularity.rank(history, k, exclude)
        rec_msg = {
            "user_id": event.user_id if event else None,
            "items": [{"item_id": item, "score": round(score, 6)} for item, score in ranking],
            "event_id": event.event_id if event else None,
            "event_ts": event.ts if event else None,
            "published_ts": time.time(),
            "model_version": version,
            "strategy": strategy,
            "explain": [{"item_id": item, "weight": w} for item, w in explain] if strategy == "model" else [],
        }
        return strategy, rec_msg, embedding
