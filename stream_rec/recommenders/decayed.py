"""Recency-decayed popularity: each sighting of an item weighs half as much ``half_life_events`` events later.

Decaying every count at every event would cost the catalogue's size per event. Instead a sighting adds the
current value of a multiplier that grows by ``2 ** (1 / half_life_events)`` per event, and an item's decayed
count is its weight divided by the multiplier: the order is the same and an update is O(1). When the
multiplier grows large, all weights are divided by it once (rarely: every ~300 half-lives).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from ..sequences import Step
from .base import Example, Ranking, Recommender

__all__ = ["DecayedPopularity"]

_RESCALE_ABOVE = 1e100


class DecayedPopularity(Recommender):
    """Items ranked by recency-weighted counts.

    Rankings come from a cached list of the top items, recomputed (one pass over the items) when a ranking is
    asked for after ``refresh_every`` or more events were learned since the last pass, so a worker ranking one
    user per event does not pay for the catalogue each time. Scores are decayed counts at ranking time.

    >>> from stream_rec.sequences import Step
    >>> pop = DecayedPopularity(half_life_events=1)
    >>> pop.learn_many([([], Step(x, "view", 0.0)) for x in "aab"])
    >>> pop.rank([], k=2)
    [('b', 1.0), ('a', 0.75)]
    """

    name = "decayed-popularity"

    def __init__(self, half_life_events: float = 1000.0, refresh_every: int = 100, cache_size: int = 500) -> None:
        if half_life_events <= 0:
            raise ValueError(f"half_life_events must be > 0, got {half_life_events}")
        self.half_life_events = half_life_events
        self.refresh_every = refresh_every
        self.cache_size = cache_size
        self.weights: dict[str, float] = {}
        self._growth = 2.0 ** (1.0 / half_life_events)
        self._multiplier = 1.0
        self._top: list[str] = []
        self._stale = 0  # events learned since ``_top`` was computed

    def learn_many(self, examples: Sequence[Example]) -> None:
        weights = self.weights
        for _, event in examples:
            self._multiplier *= self._growth
            weights[event.item] = weights.get(event.item, 0.0) + self._multiplier
            if self._multiplier > _RESCALE_ABOVE:
                scale = self._multiplier
                self.weights = weights = {item: w / scale for item, w in weights.items()}
                self._multiplier = 1.0
        self._stale += len(examples)

    def score(self, item: str) -> float:
        """The item's decayed count: each sighting counts 1 when new, 1/2 one half-life later."""
        return self.weights.get(item, 0.0) / self._multiplier

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        skips = [{s.item for s in h} if exclude_seen else set() for h in histories]
        need = k + max((len(s) for s in skips), default=0)
        if self._stale >= self.refresh_every or len(self._top) < min(need, len(self.weights)):
            self._top = heapq.nlargest(max(need, self.cache_size), self.weights, key=self.weights.__getitem__)
            self._stale = 0
        out = []
        for skip in skips:
            # Between refreshes the cached order may lag the current one; the k returned are put in order.
            ranking = [(item, self.score(item)) for item in self._top if item not in skip][:k]
            out.append(sorted(ranking, key=lambda kv: -kv[1]))
        return out
