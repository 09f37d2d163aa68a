"""Pure: the counters of a running worker, its hit rate scored on the lists it actually served, and
durations over the last minute."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .events import Event

__all__ = ["LiveMetrics", "Window"]


class Window:
    """Durations (seconds) recorded over the last ``span`` seconds, for percentiles; safe across threads.

    >>> w = Window()
    >>> w.extend([0.1, 0.2, 0.3, 0.4])
    >>> w.percentile(50), w.percentile(99), len(w)
    (0.25, 0.397, 4)
    """

    def __init__(self, span: float = 60.0, limit: int = 100_000) -> None:
        self.span = span
        self._values: deque[tuple[float, float]] = deque(maxlen=limit)  # (when recorded, duration)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._trim(time.monotonic())
            return len(self._values)

    def extend(self, durations: Iterable[float]) -> None:
        now = time.monotonic()
        with self._lock:
            self._values.extend((now, d) for d in durations)
            self._trim(now)

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


@dataclass
class LiveMetrics:
    """Counters of a running worker; hit rate is scored on the list actually served ('as served').

    >>> m = LiveMetrics()
    >>> m.score(Event("u", "a", "view", 1e9), ["a", "b"]); m.score(Event("u", "c", "view", 1e9), ["a"])
    >>> m.scored, m.hits, m.hit_rate
    (2, 1, 0.5)
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
    cold_start: int = 0
    by_event: dict[str, list[int]] = field(default_factory=dict)  # event -> [scored, hits]

    def score(self, event: Event, served: Sequence[str]) -> None:
        if not served:
            return
        hit = event.item_id in served
        self.scored += 1
        self.hits += hit
        counts = self.by_event.setdefault(event.event, [0, 0])
        counts[0] += 1
        counts[1] += hit

    @property
    def hit_rate(self) -> float:
        return self.hits / self.scored if self.scored else 0.0
