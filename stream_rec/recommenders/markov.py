"""First-order item transitions (Markov), and the user's own recent items followed by transitions.

Both keep the items in popularity order with an O(1) update (:class:`CountOrder`), so a ranking costs in
proportion to ``k``, the history and the last item's successors, never to the catalogue (Taobao has millions).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator, Sequence

from ..sequences import Step
from .base import Example, Ranking, Recommender

__all__ = ["CountOrder", "Markov", "RecentMarkov"]


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
        self.transitions: dict[str, Counter[str]] = {}  # previous item -> counts of the items that followed

    def learn_many(self, examples: Sequence[Example]) -> None:
        for history, event in examples:
            self.popularity.add(event.item)
            if history:
                prev = history[-1].item
                followers = self.transitions.get(prev)
                if followers is None:
                    followers = self.transitions[prev] = Counter()
                followers[event.item] += 1

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


class RecentMarkov(Markov):
    """The user's own recent items (most recent first, distinct), then :class:`Markov`'s list.

    With ``exclude_seen`` the user's items are all excluded, so this ranks as :class:`Markov` does.

    >>> from stream_rec.sequences import Step
    >>> r = RecentMarkov()
    >>> a, b, c = (Step(x, "view", 0.0) for x in "abc")
    >>> r.learn_many([([], a), ([a], b), ([], c)])
    >>> [item for item, _ in r.rank([c, a, c], k=3)]
    ['c', 'a', 'b']
    """

    name = "recent-markov"

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        out = []
        for history in histories:
            skip = {s.item for s in history} if exclude_seen else set()
            recent: dict[str, None] = {}  # insertion-ordered set
            for step in reversed(history):
                if len(recent) == k:
                    break
                if step.item not in skip:
                    recent[step.item] = None
            rest = self._rank_one(history, k - len(recent), skip | recent.keys())
            top = rest[0][1] if rest else 0.0
            out.append([(item, top + len(recent) - i) for i, item in enumerate(recent)] + rest)
        return out
