"""Pure: the counters of a running worker, and its hit rate scored on the lists it actually served."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .events import Event

__all__ = ["LiveMetrics"]


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
