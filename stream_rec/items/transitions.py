"""Counts of what followed what in the stream: the Markov memory of the baselines and the model's evidence
(evidence.py), one piece of code for both.

Keys are item ids, not vocabulary rows, so that a serving snapshot of the model (with a vocabulary of its own)
reads them alike. A key can also be a side-feature group (:func:`groups_of`: ``"\x1dcategory=shoes"``), whose
counts are the items seen with that value, or an item's key under another relation (:func:`together`: the items
seen near it in users' histories, either way round). They go wherever the counts go (snapshots, the learning
process's pipe, checkpoints). Counts are positive numbers: whole ones for the baselines, weights such as
``1/gap`` for the model's evidence.

:meth:`Transitions.snapshot` is a frozen view for serving, cheap to take: it shares the followers of every item
with the live counts, and the live side copies an item's followers before it next changes them (copy on write),
so a snapshot never sees a later count. With ``limit``, an item keeps at most ``4 * limit`` followers, then its
``limit`` heaviest: memory stays bounded per item. A group keeps ``group_limit`` likewise (``limit`` unless
given): its counts are a popularity ranking, read deep, and a category has many more items than an item has
followers; kept as few, its items would lose their counts each time they fell out of the kept ones, and come
back at one.

>>> t = Transitions()
>>> for prev, nxt in [("a", "b"), ("a", "b"), ("a", "c"), ("b", "c")]:
...     t.add(prev, nxt)
>>> frozen = t.snapshot()
>>> t.add("a", "c"); t.add("a", "c")
>>> t.merged(["a"], limit=5), frozen.merged(["a"], limit=5), frozen.merged(["b", "a"], limit=5)
({'c': 3.0, 'b': 2.0}, {'b': 2.0, 'c': 1.0}, {'c': 1.5, 'b': 1.0})
>>> frozen.top("a", 1)
(['b'], array([2.]))
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Container, Iterable, Iterator, Sequence

import numpy as np
import orjson

from ..sequences import Step

__all__ = ["GROUP", "TOGETHER", "Transitions", "groups_of", "newest_groups", "together"]

GROUP = "\x1d"  # how a group's key starts (ASCII's group separator): no item id an event carries starts so
TOGETHER = "\x1e"  # ... and an item's key for the items seen near it (ASCII's record separator)


def together(item: str) -> str:
    """The key of the items seen near ``item`` (either way round), beside its followers' key (the item id)."""
    return TOGETHER + item


def groups_of(step: Step) -> list[str]:
    """The keys of the groups a step's item belongs to: one per string-valued side feature (``item={"category":
    "shoes"}`` gives ``["\x1dcategory=shoes"]``); numbers (a price) make no groups."""
    if not step.features:
        return []
    return [f"{GROUP}{key}={value}" for key, value in step.features.items() if isinstance(value, str)]


def newest_groups(history: Sequence[Step]) -> list[str]:
    """The group keys of the newest step of ``history`` whose item has any (:func:`groups_of`)."""
    return next((keys for keys in map(groups_of, reversed(history)) if keys), [])


class Transitions:
    """key -> the weights of the items that followed it (or went with it: see the module's docstring)."""

    def __init__(self, limit: int | None = None, group_limit: int | None = None) -> None:
        self.limit = limit
        self.group_limit = limit if group_limit is None else group_limit
        self._followers: dict[str, dict[str, float]] = {}
        self._shared = False  # whether a snapshot shares some followers: then they are copied before a change
        self._owned: set[str] = set()  # items whose followers no snapshot shares
        self._frozen = False
        # Keys' heaviest followers as of their last sort, and the changes to each since (:meth:`top`): a key is
        # read for many users between two sorts, and sorting its hundreds of items each time it changed cost more
        # than the rest of the evidence on dense data. Never changed once made, so a snapshot shares them.
        self._sorted: dict[str, tuple[list[str], np.ndarray]] = {}
        self._changes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._followers)

    def add(self, prev: str, nxt: str, n: float = 1) -> None:
        followers = self._writable(prev)
        followers[nxt] = followers.get(nxt, 0) + n
        limit = self.group_limit if prev.startswith(GROUP) else self.limit
        if limit is not None and len(followers) > 4 * limit:
            self._followers[prev] = dict(heapq.nlargest(limit, followers.items(), key=_weight))
            self._sorted.pop(prev, None)

    def get(self, prev: str) -> dict[str, float] | None:
        """The followers of ``prev`` (do not change them)."""
        return self._followers.get(prev)

    def forget(self, items: Iterable[str]) -> None:
        """Drop ``items`` as keys (under every relation) and as followers: an item that takes an evicted one's row
        inherits nothing."""
        gone = set(items)
        if not gone:
            return
        for item in gone:
            for key in (item, together(item)):
                self._followers.pop(key, None)
                self._owned.discard(key)
                self._sorted.pop(key, None)
        for prev in [prev for prev, followers in self._followers.items() if not gone.isdisjoint(followers)]:
            followers = self._writable(prev)
            for item in gone.intersection(followers):
                del followers[item]
            self._sorted.pop(prev, None)  # (its sort holds a gone item)

    def snapshot(self) -> Transitions:
        """A frozen view of the counts now (copies one dict of references, not the counts)."""
        view = Transitions(self.limit, self.group_limit)
        view._followers, view._frozen = dict(self._followers), True
        view._sorted, view._changes = dict(self._sorted), dict(self._changes)
        self._shared = True
        self._owned.clear()
        return view

    def changes_since(self, older: Transitions | None) -> dict[str, dict[str, float] | None]:
        """What changed from ``older``, an earlier snapshot of the same counts, to this one: each changed item's
        followers, None for an item dropped; every item where ``older`` is None. Cheap: an item whose followers did
        not change between the two shares them (copy on write), so it is passed over without a look inside."""
        if older is None:
            return {prev: dict(followers) for prev, followers in self._followers.items()}
        before = older._followers
        out: dict[str, dict[str, float] | None] = {
            prev: dict(followers) for prev, followers in self._followers.items() if before.get(prev) is not followers
        }
        out.update(dict.fromkeys(before.keys() - self._followers.keys()))
        return out

    def apply(self, changes: dict[str, dict[str, float] | None]) -> None:
        """Take on ``changes`` (:meth:`changes_since` of another's snapshots): counts kept in step with counts kept
        elsewhere. Snapshots taken before keep what they saw: a changed item gets new followers."""
        if self._frozen:
            raise RuntimeError("a snapshot of the transition counts is read-only")
        for prev, followers in changes.items():
            if followers is None:
                self._followers.pop(prev, None)
            else:
                self._followers[prev] = dict(followers)
            self._owned.discard(prev)
            self._sorted.pop(prev, None)

    def merged(self, sources: list[str], limit: int) -> dict[str, float]:
        """The followers of ``sources`` (newest first): the newest one's counts fully, each older one's half as
        much as the one after it (as session-based kNN weighs a session's items); each source's ``limit``
        heaviest, the ``limit`` best in all."""
        merged: dict[str, float] = {}
        for j, source in enumerate(sources):
            weight = 0.5**j
            names, weights = self.top(source, limit)
            for follower, n in zip(names, weights.tolist(), strict=True):
                merged[follower] = merged.get(follower, 0.0) + weight * n
        if len(merged) > limit:
            merged = dict(heapq.nlargest(limit, merged.items(), key=_weight))
        return merged

    def top(self, key: str, n: int) -> tuple[list[str], np.ndarray]:
        """The ``n`` heaviest followers of ``key`` (all, where there are no more), heaviest first, and their weights
        ``[n]``, as of the key's last sort: made again once a tenth of its followers (and two) have changed since.
        So a weight may lag a tenth behind, and a follower that has just risen among the heaviest may wait a few
        changes to be read."""
        followers = self._followers.get(key)
        if not followers:
            return [], _NO_WEIGHTS
        cached = self._sorted.get(key)
        if cached is None or self._changes.get(key, 0) > len(followers) // 10 + 2 or len(cached[0]) < n:
            cached = self._sort(key, followers, n)
        names, weights = cached
        return (names, weights) if len(names) <= n else (names[:n], weights[:n])

    def ranked(self, key: str) -> list[tuple[str, float]]:
        """A key's followers with their counts now, heaviest first."""
        followers = self._followers.get(key)
        return sorted(followers.items(), key=_weight, reverse=True) if followers else []

    def _sort(self, key: str, followers: dict[str, float], n: int) -> tuple[list[str], np.ndarray]:
        # Four times what was asked for, at least 50: a reader of fewer finds them in the same sort. In numpy: a
        # dense stream sorts a key again every few events, and heapq over (item, weight) pairs cost twice as much.
        wanted = max(4 * n, 50)
        weights = np.fromiter(followers.values(), np.float64, len(followers))
        order = np.argsort(-weights, kind="stable")
        if len(order) > wanted:
            order = order[:wanted]
        names = list(followers)
        cached = self._sorted[key] = [names[i] for i in order.tolist()], weights[order]
        self._changes[key] = 0
        return cached

    def triples(self) -> Iterator[tuple[str, str, float]]:
        """Every (key, follower, count), for a checkpoint."""
        for prev, followers in self._followers.items():
            for nxt, n in followers.items():
                yield prev, nxt, n

    def to_json(self) -> bytes:
        """The counts as JSON, ``{key: {follower: count}}``, for a checkpoint: one call of orjson's, tens of
        milliseconds for 600,000 pairs, where a Python loop over the pairs would hold the interpreter's lock, and
        keep serving from it, for most of a second."""
        return orjson.dumps(self._followers)

    @classmethod
    def from_json(
        cls, data: bytes, known: Container[str], limit: int | None = None, group_limit: int | None = None
    ) -> Transitions:
        """The counts :meth:`to_json` wrote; ``ValueError`` unless every item (every key but groups', every
        counted item) is in ``known`` and every count a positive finite number."""
        try:
            followers = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the transition counts cannot be read ({exc})") from None
        if not isinstance(followers, dict):
            raise ValueError("the transition counts are not an object")
        out = cls(limit, group_limit)
        for prev, after in followers.items():
            if not isinstance(after, dict) or (prev.removeprefix(TOGETHER) not in known and not prev.startswith(GROUP)):
                raise ValueError("a transition refers to an item the vocabulary does not hold")
            for nxt, n in after.items():
                if nxt not in known or type(n) not in (int, float) or not 0 < n < math.inf:
                    raise ValueError("a transition count is not a positive count of known items")
            out._followers[prev] = after
        return out

    def _writable(self, prev: str) -> dict[str, float]:
        if self._frozen:
            raise RuntimeError("a snapshot of the transition counts is read-only")
        if prev in self._sorted:
            self._changes[prev] = self._changes.get(prev, 0) + 1
        followers = self._followers.get(prev)
        if followers is None:
            followers = self._followers[prev] = {}
        elif self._shared and prev not in self._owned:
            followers = self._followers[prev] = dict(followers)  # a snapshot reads the old one
        if self._shared:
            self._owned.add(prev)
        return followers


def _weight(pair: tuple[str, float]) -> float:
    return pair[1]


_NO_WEIGHTS = np.zeros(0)
