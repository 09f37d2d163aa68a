"""Pure: one step of a user's history (:class:`Step`) and what recommenders learn from (``Example``).

The worker keeps a user's steps in its table (worker/admission.py); evaluate keeps them in memory alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from .wire.events import Event

__all__ = [
    "SEEN_KEPT", "Example", "Step", "example_from_json", "example_json", "last_distinct", "remember_seen", "step_of",
]  # fmt: skip

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


def last_distinct(history: Sequence[Step], n: int) -> list[str]:
    """The history's last ``n`` distinct items, newest first.

    >>> last_distinct([Step("a", "view", 1.0), Step("b", "view", 2.0), Step("a", "view", 3.0)], 5)
    ['a', 'b']
    """
    out: dict[str, None] = {}
    for step in reversed(history):
        if len(out) == n:
            break
        out[step.item] = None
    return list(out)


def remember_seen(items: list[str], item: str, keep: int = SEEN_KEPT) -> list[str]:
    """A new list of distinct items, oldest first, with ``item`` last and at most ``keep`` of them.

    >>> remember_seen(["a", "b", "c"], "a", keep=3), remember_seen(["a", "b", "c"], "d", keep=3)
    (['b', 'c', 'a'], ['b', 'c', 'd'])
    """
    return [*(x for x in items if x != item), item][-keep:]


def example_json(example: Example, **extra: Any) -> bytes:
    """An example as JSON (``extra`` beside it), as serving workers send it to the trainer.

    >>> h, e = [Step("a", "view", 1.0)], Step("b", "click", 2.0, {"device": "ios"}, None, "u1")
    >>> example_from_json(example_json((h, e), arrived=3.0)) == ((h, e), {"arrived": 3.0})
    True
    """
    return orjson.dumps({"history": [list(s) for s in example[0]], "event": list(example[1]), **extra})


def example_from_json(raw: bytes) -> tuple[Example, dict[str, Any]]:
    """The example of :func:`example_json` and what was sent beside it; ``ValueError`` for anything else."""
    try:
        obj = orjson.loads(raw)
        history = [Step(*s) for s in obj.pop("history")]
        event = Step(*obj.pop("event"))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a training example ({exc})") from None
    return (history, event), obj
