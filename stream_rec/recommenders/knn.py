"""Session-based nearest neighbours and sequential rules: the simple methods the session-based literature found
hardest to beat (Ludewig and Jannach, "Evaluation of session-based recommendation algorithms", UMUAI 2018).

- :class:`SKNN`: the user's last few distinct items are the query; the candidate neighbours are the most recently
  active users that share an item with it (at most ``sample``); their similarity is the cosine of the two item
  sets; an item scores the summed similarity of the ``neighbours`` nearest that hold it.
- :class:`VSKNN`: the same with the query's items weighted by recency, linearly: the newest 1, the oldest ``1/q``.
- :class:`SequentialRules`: the items that followed each item within ``steps`` steps anywhere in the stream,
  weighted ``1/gap``; the user's last item's rules rank.
- each also with the user's own recent items first (:class:`~.own.OwnFirst`), as ``recent-markov`` is Markov.

Every one fills the rest of the list by popularity. A neighbour is what a user did recently (the last ``keep``
distinct items), kept per user as examples arrive; each item remembers its ``sample`` most recent users, so a
ranking costs about ``query x sample`` set lookups however long the stream has run.

>>> from stream_rec.sequences import Step
>>> knn = SKNN()
>>> steps = {u: [Step(x, "view", float(n), user=u) for n, x in enumerate(items)]
...          for u, items in {"u1": "ab", "u2": "abc", "u3": "xyz"}.items()}
>>> knn.learn_many([(s[:n], s[n]) for s in steps.values() for n in range(len(s))])
>>> [item for item, _ in knn.rank([Step("a", "view", 9.0, user="me")], k=3, exclude_seen=True)]
['b', 'c', 'x']
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Sequence

from ..sequences import Step, last_distinct
from .base import Example
from .popularity import PopularityFill

__all__ = ["SKNN", "VSKNN", "SequentialRules"]


class SKNN(PopularityFill):
    """Session-based kNN over users' recent item sets (module docstring)."""

    name = "sknn"

    def __init__(self, neighbours: int = 100, sample: int = 500, query: int = 10, keep: int = 50) -> None:
        super().__init__()
        self.neighbours, self.sample, self.query, self.keep = neighbours, sample, query, keep
        self.recent: dict[str, OrderedDict[str, None]] = {}  # user -> last `keep` distinct items, newest last
        self.users_of: dict[str, OrderedDict[str, None]] = {}  # item -> its last `sample` users, newest last
        self.last_seen: dict[str, int] = {}  # user -> the event count at their last event (recency)
        self.clock = 0

    def learn_many(self, examples: Sequence[Example]) -> None:
        for _, event in examples:
            self.popularity.add(event.item)
            self.clock += 1
            user = event.user
            if user is None:
                continue
            items = self.recent.setdefault(user, OrderedDict())
            items[event.item] = None
            items.move_to_end(event.item)
            if len(items) > self.keep:
                items.popitem(last=False)
            users = self.users_of.setdefault(event.item, OrderedDict())
            users[user] = None
            users.move_to_end(user)
            if len(users) > self.sample:
                users.popitem(last=False)
            self.last_seen[user] = self.clock

    def weights(self, history: Sequence[Step]) -> dict[str, float]:
        """The query: the history's last ``query`` distinct items, each weighing 1."""
        return dict.fromkeys(last_distinct(history, self.query), 1.0)

    def scores(self, history: Sequence[Step]) -> dict[str, float]:
        query = self.weights(history)
        if not query:
            return {}
        me = history[-1].user
        candidates: set[str] = set()
        for item in query:
            candidates.update(self.users_of.get(item, ()))
        candidates.discard(me or "")
        if len(candidates) > self.sample:
            candidates = set(heapq.nlargest(self.sample, candidates, key=self.last_seen.__getitem__))
        norm_q = math.sqrt(sum(w * w for w in query.values()))
        similar = []
        for user in candidates:
            theirs = self.recent[user]
            shared = sum(w for item, w in query.items() if item in theirs)
            similar.append((shared / (norm_q * math.sqrt(len(theirs))), user))
        scores: dict[str, float] = {}
        for sim, user in heapq.nlargest(self.neighbours, similar):
            for item in self.recent[user]:
                scores[item] = scores.get(item, 0.0) + sim
        return scores


class VSKNN(SKNN):
    """:class:`SKNN` with the query's items weighted by recency, linearly (module docstring)."""

    name = "vsknn"

    def weights(self, history: Sequence[Step]) -> dict[str, float]:
        items = last_distinct(history, self.query)  # newest first
        return {item: (len(items) - p) / len(items) for p, item in enumerate(items)}


class SequentialRules(PopularityFill):
    """Sequential rules: what followed each item within ``steps`` steps, weighted by ``1/gap`` (module docstring).

    An item keeps its ``limit`` strongest rules once it has ``4 * limit`` (memory bounded per item)."""

    name = "sr"

    def __init__(self, steps: int = 10, limit: int = 200) -> None:
        super().__init__()
        self.steps, self.limit = steps, limit
        self.rules: dict[str, dict[str, float]] = {}

    def learn_many(self, examples: Sequence[Example]) -> None:
        for history, event in examples:
            self.popularity.add(event.item)
            for gap, step in enumerate(reversed(history[-self.steps :]), start=1):
                if step.item == event.item:
                    continue
                rules = self.rules.setdefault(step.item, {})
                rules[event.item] = rules.get(event.item, 0.0) + 1.0 / gap
                if len(rules) > 4 * self.limit:
                    self.rules[step.item] = dict(heapq.nlargest(self.limit, rules.items(), key=lambda kv: kv[1]))

    def scores(self, history: Sequence[Step]) -> dict[str, float]:
        return dict(self.rules.get(history[-1].item, {})) if history else {}
