"""Global popularity: items ranked by how often they were seen so far. Also the cold-start fallback."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence

from ..sequences import Step
from .base import Example, Ranking, Recommender

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Counts of items so far; ties go to the item seen first.

    >>> from stream_rec.sequences import Step
    >>> pop = Popularity()
    >>> pop.learn_many([([], Step("a", "view", 1.0)), ([], Step("b", "view", 2.0)), ([], Step("b", "view", 3.0))])
    >>> pop.rank([], k=5)
    [('b', 2.0), ('a', 1.0)]
    """

    name = "popularity"

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def learn_many(self, examples: Sequence[Example]) -> None:
        self.counts.update(event.item for _, event in examples)

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        out = []
        for history in histories:
            seen = {s.item for s in history} if exclude_seen else set()
            # Counter keeps insertion order, so nlargest's stable ties favour the item seen first.
            top = heapq.nlargest(k + len(seen), self.counts.items(), key=lambda kv: kv[1])
            out.append([(item, float(n)) for item, n in top if item not in seen][:k])
        return out
