"""Pure: the ranking metrics of the prequential protocol (HR@k, NDCG@k, MRR@k) and their running sums.

A ranking is scored against the one item the user went on to see. Ranks are 0-based, so a target in first
place has NDCG 1/log2(2) = 1 and MRR 1/1 = 1; a target beyond the first ``k`` items, or absent, scores 0.

>>> hit(["a", "b", "c"], "b", 1), hit(["a", "b", "c"], "b", 2)
(0.0, 1.0)
>>> round(ndcg(["a", "b", "c"], "b", 10), 4), mrr(["a", "b", "c"], "b", 10)
(0.6309, 0.5)
>>> acc = MetricAccumulator(ks=(1, 10))
>>> acc.add(["a", "b"], "b", event="view", n_history=3)
>>> acc.add(["a", "b"], "a", event="purchase", n_history=30)
>>> s = acc.summary()
>>> s["HR@1"], s["HR@10"], s["MRR@10"], s["n"]
(0.5, 1.0, 0.75, 2)
>>> s["by_event"]["purchase"]["HR@1"], s["by_history"]["20+"]["n"]
(1.0, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "HISTORY_BUCKETS", "MetricAccumulator", "Sums", "history_bucket", "hit", "mrr", "ndcg", "rank_of", "rolling_mean",
]  # fmt: skip

# (name, fewest earlier events of the user): short, middling and long histories.
HISTORY_BUCKETS: tuple[tuple[str, int], ...] = (("1-4", 1), ("5-19", 5), ("20+", 20))
_NAMES = ("HR", "NDCG", "MRR")


def rank_of(ranking_items: Sequence[str], target: str, k: int) -> int | None:
    """The 0-based rank of ``target`` within the first ``k`` items, or None."""
    for rank, item in enumerate(ranking_items[:k]):
        if item == target:
            return rank
    return None


def hit(ranking_items: Sequence[str], target: str, k: int) -> float:
    """1.0 if ``target`` is among the first ``k`` items, else 0.0."""
    return 0.0 if rank_of(ranking_items, target, k) is None else 1.0


def ndcg(ranking_items: Sequence[str], target: str, k: int) -> float:
    """1/log2(rank + 2) for the target's 0-based rank within the first ``k`` items, else 0.0."""
    rank = rank_of(ranking_items, target, k)
    return 0.0 if rank is None else 1.0 / math.log2(rank + 2)


def mrr(ranking_items: Sequence[str], target: str, k: int) -> float:
    """1/(rank + 1) for the target's 0-based rank within the first ``k`` items, else 0.0."""
    rank = rank_of(ranking_items, target, k)
    return 0.0 if rank is None else 1.0 / (rank + 1)


def rolling_mean(values: Sequence[float], window: int, points: int = 200) -> tuple[list[int], list[float]]:
    """The mean of the last ``window`` values (fewer at the start), at about ``points`` evenly spaced positions.

    Returns ``(positions, means)``: positions are 1-based counts of values so far, the last one ``len(values)``.

    >>> rolling_mean([0, 1, 1, 1], window=2, points=4)
    ([1, 2, 3, 4], [0.0, 0.5, 1.0, 1.0])
    """
    if window < 1 or points < 1:
        raise ValueError(f"window and points must be >= 1, got {window} and {points}")
    n = len(values)
    if n == 0:
        return [], []
    sums = [0.0]
    for v in values:
        sums.append(sums[-1] + v)
    step = max(1, n // points)
    positions = list(range(n % step or step, n + 1, step))
    return positions, [(sums[i] - sums[max(0, i - window)]) / min(i, window) for i in positions]


def history_bucket(n_history: int) -> str:
    """The bucket name for a user with ``n_history`` earlier events (>= 1; 0 goes with the shortest)."""
    name = HISTORY_BUCKETS[0][0]
    for bucket, least in HISTORY_BUCKETS:
        if n_history >= least:
            name = bucket
    return name


class Sums:
    """Sums of each metric at each k, and the number of scored events."""

    def __init__(self, ks: Sequence[int]) -> None:
        self.n = 0
        self.sums = {f"{name}@{k}": 0.0 for k in ks for name in _NAMES}

    def add(self, rank: int | None, ks: Sequence[int]) -> None:
        self.n += 1
        if rank is None:
            return
        for k in ks:
            if rank < k:
                self.sums[f"HR@{k}"] += 1.0
                self.sums[f"NDCG@{k}"] += 1.0 / math.log2(rank + 2)
                self.sums[f"MRR@{k}"] += 1.0 / (rank + 1)

    def means(self) -> dict[str, float]:
        return {key: (total / self.n if self.n else 0.0) for key, total in self.sums.items()}


class MetricAccumulator:
    """Running sums of HR/NDCG/MRR at each k: overall, per event type and per history-length bucket."""

    def __init__(self, ks: Sequence[int] = (10,)) -> None:
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"ks must be a non-empty sequence of positive cut-offs, got {ks!r}")
        self.ks = tuple(sorted(set(ks)))
        self.overall = Sums(self.ks)
        self.by_event: dict[str, Sums] = {}
        self.by_history: dict[str, Sums] = {name: Sums(self.ks) for name, _ in HISTORY_BUCKETS}
        self.hits = bytearray()  # 1 per scored event that hit within the largest k, in stream order

    def add(self, ranking_items: Sequence[str], target: str | None, event: str, n_history: int) -> None:
        """Score one event; a ``target`` of None (e.g. an item never seen before) is a miss."""
        rank = None if target is None else rank_of(ranking_items, target, self.ks[-1])
        self.hits.append(rank is not None)
        self.overall.add(rank, self.ks)
        if event not in self.by_event:
            self.by_event[event] = Sums(self.ks)
        self.by_event[event].add(rank, self.ks)
        self.by_history[history_bucket(n_history)].add(rank, self.ks)

    @property
    def n(self) -> int:
        return self.overall.n

    def summary(self) -> dict[str, Any]:
        """``{"HR@10": .., "NDCG@10": .., "MRR@10": .., "n": .., "by_event": {event: {..., "n"}},
        "by_history": {bucket: {..., "n"}}}``; means are 0.0 where nothing was scored."""
        return {
            **self.overall.means(),
            "n": self.overall.n,
            "by_event": {event: {**s.means(), "n": s.n} for event, s in sorted(self.by_event.items())},
            "by_history": {name: {**s.means(), "n": s.n} for name, s in self.by_history.items()},
        }
