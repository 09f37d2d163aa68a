"""Pure: one step of a user's history (:class:`Step`) and what recommenders learn from (``Example``).

The worker keeps a user's steps in its table (worker/admission.py); evaluate keeps them in memory alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .wire.events import Event

__all__ = ["SEEN_KEPT", "Example", "Step", "remember_seen", "step_of"]

SEEN_KEPT = 1000  # distinct items remembered per user for exclude_seen (MovieLens 100K's busiest user has 737)


class Step(NamedTuple):
    """One event of a user's history, as the recommenders see it."""

    item: str
    event: str
    ts: float
    context: dict[str, str | float] | None = None
    features: dict[str, str | float] | None = None
    user: str | None = None  # whose event it is: only user-factor models (matrix factorisation) look at it


Example = tuple[Sequence[Step], Step]  # (the user's history before an event, the event): what recommenders learn


def step_of(event: Event) -> Step:
    return Step(event.item_id, event.event, event.ts, event.context or None, event.item or None, event.user_id)


def remember_seen(items: list[str], item: str, keep: int = SEEN_KEPT) -> list[str]:
    """A new list of distinct items, oldest first, with ``item`` last and at most ``keep`` of them.

    >>> remember_seen(["a", "b", "c"], "a", keep=3), remember_seen(["a", "b", "c"], "d", keep=3)
    (['b', 'c', 'a'], ['b', 'c', 'd'])
    """
    return [*(x for x in items if x != item), item][-keep:]
