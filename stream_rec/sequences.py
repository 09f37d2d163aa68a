"""Pure: a user's rolling, truncated behaviour sequence, as kept in the worker's table.

The table value is a plain JSON object so that the changelog and RocksDB hold nothing but JSON::

    {"steps": [[item_id, event, ts, context, item], ...],   # oldest first, at most `max_len`; context and
                                                      # item side features only where present
     "ids": [event_id, ...],                           # recent event ids, for de-duplication
     "served": [item_id, ...],                         # the top-k last published for this user
     "n": 17}                                          # events ever appended

>>> from stream_rec.events import Event
>>> s = append(None, Event("u", "a", "view", 1e9, "e1"), max_len=2)
>>> s = append(s, Event("u", "b", "view", 2e9, "e2"), max_len=2)
>>> s = append(s, Event("u", "c", "click", 3e9, "e3"), max_len=2)
>>> [step.item for step in steps(s)], s["n"]
(['b', 'c'], 3)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .events import Event

__all__ = ["Step", "append", "is_duplicate", "step_of", "steps", "with_served"]

State = dict[str, Any]


class Step(NamedTuple):
    """One event of a user's history, as the recommenders see it."""

    item: str
    event: str
    ts: float
    context: dict[str, str | float] | None = None
    features: dict[str, str | float] | None = None
    user: str | None = None  # whose event it is: only user-factor models (matrix factorisation) look at it


def step_of(event: Event) -> Step:
    return Step(event.item_id, event.event, event.ts, event.context or None, event.item or None, event.user_id)


def steps(state: State | None) -> list[Step]:
    """The user's history, oldest first."""
    if not state:
        return []
    return [Step(s[0], s[1], s[2], s[3] if len(s) > 3 else None, s[4] if len(s) > 4 else None) for s in state["steps"]]


def is_duplicate(state: State | None, event_id: str) -> bool:
    return bool(state) and event_id in state["ids"]  # type: ignore[index]


def append(state: State | None, event: Event, *, max_len: int, dedup_window: int | None = None) -> State:
    """A new state with ``event`` appended and the sequence truncated to its last ``max_len`` steps.

    The input is not changed: a Faust table only writes a value to its changelog when it is assigned, so callers
    assign the returned state back. Event ids are remembered for the last ``dedup_window`` events
    (default ``2 * max_len``, at least 100).
    """
    window = dedup_window if dedup_window is not None else max(2 * max_len, 100)
    old = state or {"steps": [], "ids": [], "served": [], "n": 0}
    record: list[Any] = [event.item_id, event.event, event.ts]
    if event.context or event.item:
        record.append(event.context or None)
    if event.item:
        record.append(event.item)
    return {
        "steps": [*old["steps"], record][-max_len:],
        "ids": [*old["ids"], event.event_id][-window:],
        "served": old.get("served", []),
        "n": old.get("n", 0) + 1,
    }


def with_served(state: State, items: list[str]) -> State:
    """A new state that remembers the list just published, for 'as served' live metrics."""
    return {**state, "served": items}
