"""Global popularity: items ranked by how often they were seen so far. Also the cold-start fallback.

:class:`CountOrder` keeps items sorted by count under +1 updates in O(1), so a ranking costs in proportion to
``k`` (and the excluded items), never to the catalogue; the Markov baselines use it for their fill too.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

from ..sequences import Step
from .base import Example, Ranking, Recommender

__all__ = ["CountOrder", "Popularity", "PopularityFill"]


class CountOrder:
    """Counts of items, kept sorted by count (most first) under +1 updates in O(1).

    Items with equal counts form one contiguous block of ``order``; an increment swaps the item to the front of
    its block and shrinks the block by one, which leaves it as the last item of the block one count higher.

    >>> c = CountOrder()
    >>> for item in "abcbcc":
    ...     c.add(item)
    >>> list(c.items()), c.counts["b"], c.total
    (['c', 'b', 'a'], 2, 6)
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.order: list[str] = []  # most counted first
        self.total = 0
        self._pos: dict[str, int] = {}
        self._start: dict[int, int] = {}  # count -> index in ``order`` of the first item with that count

    def add(self, item: str) -> None:
        count = self.counts.get(item)
        if count is None:
            count = self.counts[item] = 0
            self._pos[item] = len(self.order)
            self.order.append(item)
            self._start.setdefault(0, len(self.order) - 1)
        i, j = self._pos[item], self._start[count]
        other = self.order[j]
        self.order[i], self.order[j] = other, item
        self._pos[other], self._pos[item] = i, j
        nxt = j + 1
        if nxt < len(self.order) and self.counts[self.order[nxt]] == count:
            self._start[count] = nxt
        else:
            del self._start[count]
        self.counts[item] = count + 1
        self._start.setdefault(count + 1, j)
        self.total += 1

    def items(self) -> Iterator[str]:
        """Items, most counted first."""
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class Popularity(Recommender):
    """Counts of items so far; of items with equal counts, the one that reached the count first ranks higher.

    >>> from stream_rec.sequences import Step
    >>> pop = Popularity()
    >>> pop.learn_many([([], Step("a", "view", 1.0)), ([], Step("b", "view", 2.0)), ([], Step("b", "view", 3.0))])
    >>> pop.rank([], k=5)
    [('b', 2.0), ('a', 1.0)]
    """

    name = "popularity"

    def __init__(self) -> None:
        self.order = CountOrder()

    def learn_many(self, examples: Sequence[Example]) -> None:
        for _, event in examples:
            self.order.add(event.item)

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        counts = self.order.counts
        out = []
        for history in histories:
            seen = {s.item for s in history} if exclude_seen else set()
            ranking: Ranking = []
            for item in self.order.items():
                if len(ranking) == k:
                    break
                if item not in seen:
                    ranking.append((item, float(counts[item])))
            out.append(ranking)
        return out


class PopularityFill(Recommender):
    """A recommender that scores the items its evidence has (:meth:`scores`) and fills the rest of the list by
    popularity: the session-kNN methods, sequential rules and category popularity."""

    def __init__(self) -> None:
        self.popularity = CountOrder()

    def _fill(self, scores: dict[str, float], k: int, skip: set[str]) -> Ranking:
        """The ``k`` best of ``scores`` not in ``skip``, then the most popular items, by score."""
        best = heapq.nlargest(k + len(skip), scores.items(), key=lambda kv: kv[1]) if scores else []
        ranking = [(item, s) for item, s in best if item not in skip][:k]
        if len(ranking) < k:
            taken = skip | {item for item, _ in ranking}
            counts, share = self.popularity.counts, 1.0 / (self.popularity.total + 1)
            low = min((s for _, s in ranking), default=1.0)
            for item in self.popularity.items():
                if item not in taken:
                    ranking.append((item, low * counts[item] * share))  # below every scored item
                    if len(ranking) == k:
                        break
        return ranking

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        return [self._fill(self.scores(h), k, {s.item for s in h} if exclude_seen else set()) for h in histories]

    def scores(self, history: Sequence[Step]) -> dict[str, float]:
        raise NotImplementedError
