"""Counts of what followed what in the stream: the first-order Markov memory of the baselines and of the model's
transition mode, one piece of code for both.

Keys are item ids, not vocabulary rows, so that a serving snapshot of the model (with a vocabulary of its own)
reads them alike. A key can also be a side-feature group (:func:`groups_of`: ``"\x1dcategory=shoes"``), whose
counts are the items seen with that value: the model's transition mode offers the popular items of the user's
last item's category from them, and they go wherever the counts go (snapshots, the learning process's pipe,
checkpoints). :meth:`Transitions.snapshot` is a frozen view for serving, cheap to take: it shares the
followers of every item with the live counts, and the live side copies an item's followers before it next
changes them (copy on write), so a snapshot never sees a later count. With ``limit``, an item keeps at most
``4 * limit`` followers, then its ``limit`` most frequent: memory stays bounded per item. A group keeps
``group_limit`` likewise (``limit`` unless given): its counts are a popularity ranking, read deep, and a
category has many more items than an item has followers; kept as few, its items would lose their counts each
time they fell out of the kept ones, and come back at one (BENCHMARKS.md).

>>> t = Transitions()
>>> for prev, nxt in [("a", "b"), ("a", "b"), ("a", "c"), ("b", "c")]:
...     t.add(prev, nxt)
>>> frozen = t.snapshot()
>>> t.add("a", "c"); t.add("a", "c")
>>> t.merged(["a"], limit=5), frozen.merged(["a"], limit=5), frozen.merged(["b", "a"], limit=5)
({'c': 3.0, 'b': 2.0}, {'b': 2.0, 'c': 1.0}, {'c': 1.5, 'b': 1.0})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Iterator, Sequence

import orjson

from .sequences import Step

__all__ = ["GROUP", "Transitions", "groups_of", "newest_groups"]

GROUP = "\x1d"  # how a group's key starts (ASCII's group separator): no item id an event carries starts so


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
    """item -> counts of the items that followed it."""

    def __init__(self, limit: int | None = None, group_limit: int | None = None) -> None:
        self.limit = limit
        self.group_limit = limit if group_limit is None else group_limit
        self._followers: dict[str, Counter[str]] = {}
        self._shared = False  # whether a snapshot shares some followers: then they are copied before a change
        self._owned: set[str] = set()  # items whose followers no snapshot shares
        self._frozen = False
        # Groups' items, most frequent first (:meth:`ranked`): a group is read for many users between two of its
        # changes, and sorting its hundreds of items for each cost as much as the rest of the transition mode.
        self._sorted: dict[str, list[tuple[str, int]]] = {}

    def __len__(self) -> int:
        return len(self._followers)

    def add(self, prev: str, nxt: str, n: int = 1) -> None:
        followers = self._writable(prev)
        followers[nxt] += n
        limit = self.group_limit if prev.startswith(GROUP) else self.limit
        if limit is not None and len(followers) > 4 * limit:
            self._followers[prev] = Counter(dict(followers.most_common(limit)))

    def get(self, prev: str) -> Counter[str] | None:
        """The followers of ``prev`` (do not change them)."""
        return self._followers.get(prev)

    def forget(self, items: Iterable[str]) -> None:
        """Drop ``items`` as keys and as followers: an item that takes an evicted one's row inherits nothing."""
        gone = set(items)
        if not gone:
            return
        for item in gone:
            self._followers.pop(item, None)
            self._owned.discard(item)
            self._sorted.pop(item, None)
        for prev in [prev for prev, followers in self._followers.items() if not gone.isdisjoint(followers)]:
            followers = self._writable(prev)
            for item in gone.intersection(followers):
                del followers[item]

    def snapshot(self) -> Transitions:
        """A frozen view of the counts now (copies one dict of references, not the counts)."""
        view = Transitions(self.limit, self.group_limit)
        view._followers, view._frozen = dict(self._followers), True
        self._shared = True
        self._owned.clear()
        return view

    def changes_since(self, older: Transitions | None) -> dict[str, dict[str, int] | None]:
        """What changed from ``older``, an earlier snapshot of the same counts, to this one: each changed item's
        followers, None for an item dropped; every item where ``older`` is None. Cheap: an item whose followers did
        not change between the two shares them (copy on write), so it is passed over without a look inside."""
        if older is None:
            return {prev: dict(followers) for prev, followers in self._followers.items()}
        before = older._followers
        out: dict[str, dict[str, int] | None] = {
            prev: dict(followers) for prev, followers in self._followers.items() if before.get(prev) is not followers
        }
        out.update(dict.fromkeys(before.keys() - self._followers.keys()))
        return out

    def apply(self, changes: dict[str, dict[str, int] | None]) -> None:
        """Take on ``changes`` (:meth:`changes_since` of another's snapshots): counts kept in step with counts kept
        elsewhere. Snapshots taken before keep what they saw: a changed item gets new followers."""
        if self._frozen:
            raise RuntimeError("a snapshot of the transition counts is read-only")
        for prev, followers in changes.items():
            if followers is None:
                self._followers.pop(prev, None)
            else:
                self._followers[prev] = Counter(followers)
            self._owned.discard(prev)
            self._sorted.pop(prev, None)

    def merged(
        self, sources: list[str], limit: int, left_out: str | None = None, left_out_sources: int = 1
    ) -> dict[str, float]:
        """The followers of ``sources`` (an item history's last few, newest first): the newest one's count fully,
        each older one's half as much as the one after it (as session-based kNN weighs a session's items); each
        source's ``limit`` most frequent, the ``limit`` best in all. One count of ``left_out`` after each of the
        ``left_out_sources`` newest sources is left out (what a replayed example taught when it was new)."""
        merged: dict[str, float] = {}
        for j, source in enumerate(sources):
            followers = self._followers.get(source)
            if not followers:
                continue
            weight = 0.5**j
            for follower, n in followers.most_common(limit):
                if j < left_out_sources and follower == left_out:
                    n -= 1
                if n > 0:
                    merged[follower] = merged.get(follower, 0.0) + weight * n
        if len(merged) > limit:
            merged = dict(sorted(merged.items(), key=lambda kv: -kv[1])[:limit])
        return merged

    def ranked(self, group: str) -> list[tuple[str, int]]:
        """A group's items with their counts, most frequent first (do not change them)."""
        ranked = self._sorted.get(group)
        if ranked is None:
            followers = self._followers.get(group)
            ranked = self._sorted[group] = followers.most_common() if followers else []
        return ranked

    def triples(self) -> Iterator[tuple[str, str, int]]:
        """Every (item, follower, count), for a checkpoint."""
        for prev, followers in self._followers.items():
            for nxt, n in followers.items():
                yield prev, nxt, n

    def to_json(self) -> bytes:
        """The counts as JSON, ``{item: {follower: count}}``, for a checkpoint: one call of orjson's, tens of
        milliseconds for 600,000 pairs, where a Python loop over the pairs would hold the interpreter's lock, and
        keep serving from it, for most of a second."""
        return orjson.dumps(self._followers)

    @classmethod
    def from_json(
        cls, data: bytes, known: Container[str], limit: int | None = None, group_limit: int | None = None
    ) -> Transitions:
        """The counts :meth:`to_json` wrote; ``ValueError`` unless every item (every key but groups', every
        counted item) is in ``known`` and every count a positive integer."""
        try:
            followers = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the transition counts cannot be read ({exc})") from None
        if not isinstance(followers, dict):
            raise ValueError("the transition counts are not an object")
        out = cls(limit, group_limit)
        for prev, after in followers.items():
            if not isinstance(after, dict) or (prev not in known and not prev.startswith(GROUP)):
                raise ValueError("a transition refers to an item the vocabulary does not hold")
            for nxt, n in after.items():
                if nxt not in known or type(n) is not int or n <= 0:
                    raise ValueError("a transition count is not a positive count of known items")
            out._followers[prev] = Counter(after)
        return out

    def _writable(self, prev: str) -> Counter[str]:
        if self._frozen:
            raise RuntimeError("a snapshot of the transition counts is read-only")
        if self._sorted:
            self._sorted.pop(prev, None)
        followers = self._followers.get(prev)
        if followers is None:
            followers = self._followers[prev] = Counter()
        elif self._shared and prev not in self._owned:
            followers = self._followers[prev] = Counter(followers)  # a snapshot reads the old one
        if self._shared:
            self._owned.add(prev)
        return followers
