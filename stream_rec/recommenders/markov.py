"""First-order item transitions (Markov), and the user's own recent items followed by transitions (own.py).

Both keep the items in popularity order with an O(1) update (:class:`~.popularity.CountOrder`), so a ranking costs in
proportion to ``k``, the history and the last item's successors, never to the catalogue (Taobao has millions).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from ..items.transitions import Transitions
from ..sequences import Step
from .base import Example, Ranking, Recommender
from .own import OwnFirst
from .popularity import CountOrder

__all__ = ["Markov", "RecentMarkov"]


class Markov(Recommender):
    """Items that followed the user's last item, by how often; ties and the rest of the list by popularity.

    Scores are transition counts for followers and the item's share of all events (below 1) for the fill.

    >>> from stream_rec.sequences import Step
    >>> m = Markov()
    >>> a, b, c = (Step(x, "view", 0.0) for x in "abc")
    >>> m.learn_many([([], a), ([a], b), ([], c), ([c], c), ([c], c)])
    >>> [item for item, _ in m.rank([a], k=3)]
    ['b', 'c', 'a']
    """

    name = "markov"

    def __init__(self) -> None:
        self.popularity = CountOrder()
        self.transitions = Transitions()  # previous item -> counts of the items that followed (unbounded)

    def learn_many(self, examples: Sequence[Example]) -> None:
        for history, event in examples:
            self.popularity.add(event.item)
            if history:
                self.transitions.add(history[-1].item, event.item)

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        return [self._rank_one(h, k, {s.item for s in h} if exclude_seen else set()) for h in histories]

    def _rank_one(self, history: Sequence[Step], k: int, skip: set[str]) -> Ranking:
        """Top ``k`` items not in ``skip``: the last item's followers, then the most popular items."""
        if k <= 0:
            return []
        counts = self.popularity.counts
        followers = self.transitions.get(history[-1].item) if history else None
        ranking: Ranking = []
        if followers:
            # Only k + |skip| followers can matter: at most |skip| of the best are dropped.
            best = heapq.nlargest(k + len(skip), followers.items(), key=lambda kv: (kv[1], counts[kv[0]]))
            ranking = [(item, float(n)) for item, n in best if item not in skip][:k]
        if len(ranking) < k:
            taken = skip | {item for item, _ in ranking}
            share = 1.0 / (self.popularity.total + 1)
            for item in self.popularity.items():
                if item not in taken:
                    ranking.append((item, counts[item] * share))
                    if len(ranking) == k:
                        break
        return ranking


class RecentMarkov(OwnFirst):
    """The user's own recent items (most recent first, distinct), then :class:`Markov`'s list.

    With ``exclude_seen`` the user's items are all excluded, so this ranks as :class:`Markov` does.

    >>> from stream_rec.sequences import Step
    >>> r = RecentMarkov()
    >>> a, b, c = (Step(x, "view", 0.0) for x in "abc")
    >>> r.learn_many([([], a), ([a], b), ([], c)])
    >>> [item for item, _ in r.rank([c, a, c], k=3)]
    ['c', 'a', 'b']
    """

    def __init__(self) -> None:
        super().__init__(Markov())
