"""Pure: the counters of a running worker, its accuracy scored on the lists it actually served, and
durations, rates and the items recommended most over the last minute."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..metrics import rank_of
from ..wire.events import Event

__all__ = ["LiveMetrics", "Recent", "TopRecent", "Window"]


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class Window:
    """Durations (seconds) recorded over the last ``span`` seconds, for percentiles; safe across threads.

    >>> w = Window()
    >>> w.extend([0.1, 0.2, 0.3, 0.4])
    >>> w.percentile(50), w.percentile(99), len(w)
    (0.25, 0.397, 4)
    """

    def __init__(self, span: float = 60.0, limit: int = 100_000, also: Observer | None = None) -> None:
        self.span = span
        self.also = also  # told every duration too (a Prometheus histogram: the whole run, not one minute)
        self._values: deque[tuple[float, float]] = deque(maxlen=limit)  # (when recorded, duration)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._trim(time.monotonic())
            return len(self._values)

    def extend(self, durations: Iterable[float]) -> None:
        now = time.monotonic()
        durations = list(durations)
        with self._lock:
            self._values.extend((now, d) for d in durations)
            self._trim(now)
        if self.also is not None:
            for d in durations:
                self.also.observe(d)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (linear interpolation) of the last ``span`` seconds, None when empty."""
        with self._lock:
            self._trim(time.monotonic())
            values = sorted(d for _, d in self._values)
        if not values:
            return None
        at = (len(values) - 1) * q / 100
        low = int(at)
        high = min(low + 1, len(values) - 1)
        return round(values[low] + (values[high] - values[low]) * (at - low), 6)

    def _trim(self, now: float) -> None:
        while self._values and self._values[0][0] < now - self.span:
            self._values.popleft()


class Recent:
    """Sums of ``(count, total)`` pairs added over the last ``span`` seconds: a rate, or a ratio such as the hit
    rate of the last minute; safe across threads.

    >>> r = Recent(span=60)
    >>> r.add(1, 2); r.add(0, 2)
    >>> r.sums()
    (1.0, 4.0)
    """

    def __init__(self, span: float = 60.0, limit: int = 100_000) -> None:
        self.span = span
        self._values: deque[tuple[float, float, float]] = deque(maxlen=limit)  # (when, count, total)
        self._lock = threading.Lock()
        self._since = time.monotonic()

    def add(self, count: float, total: float = 1.0) -> None:
        now = time.monotonic()
        with self._lock:
            self._values.append((now, count, total))
            self._trim(now)

    def sums(self) -> tuple[float, float]:
        with self._lock:
            self._trim(time.monotonic())
            return float(sum(v[1] for v in self._values)), float(sum(v[2] for v in self._values))

    def per_second(self) -> float:
        """The counts' sum over the span, per second (over the time since the first add, while shorter)."""
        count, _ = self.sums()
        return count / max(min(self.span, time.monotonic() - self._since), 1e-9)

    def ratio(self) -> float | None:
        count, total = self.sums()
        return count / total if total else None

    def _trim(self, now: float) -> None:
        while self._values and self._values[0][0] < now - self.span:
            self._values.popleft()


class TopRecent:
    """How often each item was recommended over the last ``span`` seconds, kept per batch.

    >>> t = TopRecent()
    >>> t.add(["a", "b"]); t.add(["b"])
    >>> t.top(1)
    [('b', 2)]
    """

    def __init__(self, span: float = 60.0) -> None:
        self.span = span
        self._batches: deque[tuple[float, Counter[str]]] = deque()
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, items: Iterable[str]) -> None:
        now, batch = time.monotonic(), Counter(items)
        with self._lock:
            self._batches.append((now, batch))
            self._counts.update(batch)
            self._trim(now)

    def top(self, n: int) -> list[tuple[str, int]]:
        with self._lock:
            self._trim(time.monotonic())
            return self._counts.most_common(n)

    def _trim(self, now: float) -> None:
        while self._batches and self._batches[0][0] < now - self.span:
            gone = self._batches.popleft()[1]
            self._counts.subtract(gone)
            for item in gone:  # only these can have fallen to zero: no copy of the whole count
                if self._counts[item] <= 0:
                    del self._counts[item]


@dataclass
class LiveMetrics:
    """Counters of a running worker; accuracy is scored on the list actually served ('as served'): each event
    against the list its user was last sent before it (HR@k and NDCG@k, k the list's length).

    >>> m = LiveMetrics()
    >>> m.score(Event("u", "a", "view", 1e9), ["b", "a"]); m.score(Event("u", "c", "click", 1e9), ["a"])
    >>> m.scored, m.hits, m.hit_rate, round(m.ndcg, 4), [round(x, 4) for x in m.by_event["view"]]
    (2, 1, 0.5, 0.3155, [1, 1, 0.6309])
    """

    events: int = 0  # messages read from the events topics
    invalid: int = 0  # ... dead-lettered
    duplicates: int = 0  # ... whose event id the user's sequence held already (not answered again)
    redelivered: int = 0  # ... read again after a restart from the same message (answered again)
    rerouted: int = 0  # ... keyed or partitioned otherwise than by user id, sent on to the user's partition
    forgotten: int = 0  # users removed on request
    expired: int = 0  # users removed after inactivity
    scored: int = 0
    hits: int = 0
    ndcg_sum: float = 0.0
    cold_start: int = 0
    by_event: dict[str, list[float]] = field(default_factory=dict)  # event -> [scored, hits, NDCG sum]
    recent: Recent = field(default_factory=Recent)  # hits over the last minute: (hit, 1) per scored event

    def score(self, event: Event, served: Sequence[str]) -> None:
        if not served:
            return
        rank = rank_of(served, event.item_id, len(served))
        gain = 0.0 if rank is None else 1.0 / math.log2(rank + 2)
        self.scored += 1
        self.hits += rank is not None
        self.ndcg_sum += gain
        counts = self.by_event.setdefault(event.event, [0, 0, 0.0])
        counts[0] += 1
        counts[1] += rank is not None
        counts[2] += gain
        self.recent.add(rank is not None)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.scored if self.scored else 0.0

    @property
    def ndcg(self) -> float:
        return self.ndcg_sum / self.scored if self.scored else 0.0
