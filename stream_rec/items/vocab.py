"""Pure: the open-ended item vocabulary that maps item ids to embedding rows.

Items get a row the first time they have been seen ``min_count`` times. Rows are handed out in order and the
table grows by doubling up to ``capacity``; when it is full, the least recently seen items are evicted in one go
and their rows reused, so memory stays bounded however many ids the stream brings. Row 0 is padding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["Vocabulary"]


class Vocabulary:
    """Item id <-> row, with counts and recency.

    >>> v = Vocabulary(capacity=2)
    >>> v.observe(["a", "b", "a"])
    []
    >>> v.index("a"), v.index("b"), len(v)
    (1, 2, 2)
    >>> v.observe(["c"])  # b is the least recently seen: its row 2 goes to c
    [2]
    >>> v.index("b"), v.index("c"), v.evicted
    (0, 2, 1)
    """

    def __init__(self, capacity: int = 200_000, min_count: int = 1, evict_fraction: float = 0.1) -> None:
        self.capacity = capacity
        self.min_count = min_count
        self.evict_fraction = evict_fraction
        self._rows: dict[str, int] = {}
        self._ids: list[str | None] = [None]  # row -> id; row 0 is padding
        self._free: list[int] = []
        self._pending: dict[str, int] = {}  # counts of items not yet admitted (min_count > 1)
        self.counts = np.zeros(1, dtype=np.float64)  # row -> times seen
        self.last_seen = np.zeros(1, dtype=np.int64)  # row -> clock at last sight
        self.clock = 0
        self.evicted = 0
        self._gone: list[str] = []  # items evicted since take_gone()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item: object) -> bool:
        return item in self._rows

    @property
    def rows(self) -> int:
        """Rows in use or freed (the table size a model needs, padding included)."""
        return len(self._ids)

    def index(self, item: str) -> int:
        """The row of ``item``, 0 if it has none."""
        return self._rows.get(item, 0)

    def rows_of(self, items: Iterable[str]) -> list[int]:
        """The row of each item, 0 where it has none."""
        get = self._rows.get
        return [get(item, 0) for item in items]

    def item(self, row: int) -> str | None:
        return self._ids[row]

    def active_rows(self) -> np.ndarray:
        """Rows that hold an item now."""
        return np.fromiter(self._rows.values(), dtype=np.int64, count=len(self._rows))

    def inactive_rows(self) -> np.ndarray:
        """Rows that hold no item now: the padding row and the freed ones (few, so this is cheap)."""
        return np.array([0, *self._free], dtype=np.int64)

    def observe(self, items: Iterable[str]) -> list[int]:
        """Count a sight of each item, admitting or evicting as needed; return the rows evicted for room."""
        evicted: list[int] = []
        for item in items:
            self.clock += 1
            row = self._rows.get(item)
            if row is None:
                if self.min_count > 1:
                    seen = self._pending.get(item, 0) + 1
                    if seen < self.min_count:
                        self._pending[item] = seen
                        if len(self._pending) > 4 * self.capacity:
                            self._pending.clear()  # forget rare ids rather than grow without bound
                        continue
                    self._pending.pop(item, None)
                if not self._free and len(self._ids) > self.capacity:
                    evicted.extend(self._evict())
                row = self._admit(item)
            self.counts[row] += 1
            self.last_seen[row] = self.clock
        return evicted

    def reserve(self, items: Iterable[str]) -> list[int]:
        """Give a row now to each item that its next sighting would admit, without counting a sighting (they are
        counted when observed); return the rows evicted for room. A user's newest items get rows before the
        learner has observed them, so that they can be ranked.

        >>> v = Vocabulary(capacity=4, min_count=2)
        >>> v.observe(["a", "b", "b"]), v.reserve(["a", "c"])
        ([], [])
        >>> v.index("a"), v.index("b"), v.index("c"), float(v.counts[v.index("a")])
        (2, 1, 0, 0.0)
        """
        evicted: list[int] = []
        for item in items:
            if item in self._rows or self._pending.get(item, 0) + 1 < self.min_count:
                continue
            self._pending.pop(item, None)
            if not self._free and len(self._ids) > self.capacity:
                evicted.extend(self._evict())
            row = self._admit(item)  # (may grow the arrays)
            self.last_seen[row] = self.clock
        return evicted

    def _admit(self, item: str) -> int:
        if self._free:
            row = self._free.pop()
            self._ids[row] = item
        else:
            row = len(self._ids)
            self._ids.append(item)
            if row >= len(self.counts):
                size = min(max(2 * len(self.counts), 1024), self.capacity + 1)
                self.counts = np.resize(self.counts, size)
                self.last_seen = np.resize(self.last_seen, size)
        self.counts[row] = 0
        self.last_seen[row] = 0
        self._rows[item] = row
        return row

    def _evict(self) -> list[int]:
        n = max(1, int(self.capacity * self.evict_fraction))
        rows = self.active_rows()
        oldest = rows[np.argpartition(self.last_seen[rows], n - 1)[:n]]
        for row in oldest.tolist():
            item = self._ids[row]
            assert item is not None
            del self._rows[item]
            self._gone.append(item)
            self._ids[row] = None
            self.counts[row] = 0
        self._free.extend(sorted(oldest.tolist(), reverse=True))
        self.evicted += len(oldest)
        return oldest.tolist()

    def take_gone(self) -> list[str]:
        """The items evicted since the last call (whoever keeps something per item forgets them)."""
        gone, self._gone = self._gone, []
        return gone

    def copy(self) -> Vocabulary:
        """An independent copy (a serving snapshot's: it may admit items of its own)."""
        other = Vocabulary(self.capacity, self.min_count, self.evict_fraction)
        other._rows, other._ids, other._free = dict(self._rows), list(self._ids), list(self._free)
        other._pending = dict(self._pending)
        other.counts, other.last_seen = self.counts.copy(), self.last_seen.copy()
        other.clock, other.evicted = self.clock, self.evicted
        return other

    def changes_since(self, older: Vocabulary | None) -> dict[str, Any]:
        """What a copy of ``older`` (an earlier copy of this vocabulary) needs to become this one, for
        :meth:`apply`: the rows whose item changed and the small state; every row where ``older`` is None.
        ``counts`` and ``last_seen`` are not in it (arrays: the caller passes them on as they are)."""
        ids, before = self._ids, older._ids if older is not None else []
        changed = [(row, item) for row, item in enumerate(ids) if row >= len(before) or before[row] is not item]
        return {
            "capacity": self.capacity, "min_count": self.min_count, "evict_fraction": self.evict_fraction,
            "rows": len(ids), "changed": changed, "free": list(self._free), "pending": dict(self._pending),
            "clock": self.clock, "evicted": self.evicted,
        }  # fmt: skip

    def apply(self, changes: dict[str, Any], counts: np.ndarray, last_seen: np.ndarray) -> None:
        """Become the vocabulary that :meth:`changes_since` described (this one a copy of its ``older``)."""
        ids, rows = self._ids, self._rows
        for item in ids[changes["rows"] :]:
            if item is not None:
                rows.pop(item, None)
        del ids[changes["rows"] :]
        ids.extend([None] * (changes["rows"] - len(ids)))
        for row, item in changes["changed"]:
            old = ids[row]
            if old is not None and rows.get(old) == row:
                del rows[old]
            ids[row] = item
            if item is not None:
                rows[item] = row
        self.capacity, self.min_count = changes["capacity"], changes["min_count"]
        self.evict_fraction = changes["evict_fraction"]
        self._free, self._pending = list(changes["free"]), dict(changes["pending"])
        self.counts, self.last_seen = counts, last_seen
        self.clock, self.evicted = changes["clock"], changes["evicted"]

    def state_dict(self) -> dict[str, Any]:
        """JSON- and tensor-safe state (no pickling needed to restore it)."""
        return {
            "capacity": self.capacity, "min_count": self.min_count, "evict_fraction": self.evict_fraction,
            "ids": list(self._ids), "free": list(self._free), "counts": self.counts[: self.rows].tolist(),
            "last_seen": self.last_seen[: self.rows].tolist(), "clock": self.clock, "evicted": self.evicted,
        }  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Vocabulary:
        vocab = cls(state["capacity"], state["min_count"], state["evict_fraction"])
        vocab._ids = list(state["ids"])
        vocab._rows = {item: row for row, item in enumerate(vocab._ids) if item is not None}
        vocab._free = list(state["free"])
        vocab.counts = np.asarray(state["counts"], dtype=np.float64)
        vocab.last_seen = np.asarray(state["last_seen"], dtype=np.int64)
        vocab.clock = state["clock"]
        vocab.evicted = state["evicted"]
        return vocab
