"""Pure: a user's rolling, truncated behaviour sequence, as kept in the worker's table.

The table value is a plain JSON object so that the changelog and RocksDB hold nothing but JSON::

    {"steps": [[item_id, event, ts, context, item], ...],   # oldest first, at most `max_len`; context and
                                                      # item side features only where present
     "ids": [event_id, ...],                           # recent event ids, for de-duplication
     "at": [tag, ...],                                 # where each of those events was read (see `tag`)
     "items": [item_id, ...],                          # with exclude_seen: the user's last SEEN_KEPT distinct items
     "served": [item_id, ...],                         # the top-k last published for this user
     "n": 17,                                          # events ever appended
     "seen": 1700000000}                               # wall-clock second of the last append (expiry)

An event whose id is there already is a duplicate, with one exception: read again from the very message it was
first read from (the same tag), it is a redelivery after a crash, and its answer may never have gone out, so
the caller answers it again without appending it twice (:func:`redelivered`).

>>> from stream_rec.wire.events import Event
>>> s = append(None, Event("u", "a", "view", 1e9, "e1"), max_len=2)
>>> s = append(s, Event("u", "b", "view", 2e9, "e2"), max_len=2)
>>> s = append(s, Event("u", "c", "click", 3e9, "e3"), max_len=2)
>>> [step.item for step in steps(s)], s["n"]
(['b', 'c'], 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from .wire.events import Event

__all__ = [
    "MAX_STATE_BYTES", "SEEN_KEPT", "Example", "Step", "append", "is_duplicate", "redelivered", "remember_seen",
    "step_of", "steps", "tag", "with_served",
]  # fmt: skip

State = dict[str, Any]

SEEN_KEPT = 1000  # distinct items remembered per user for exclude_seen (MovieLens 100K's busiest user has 737)

# A state is one changelog message, and Kafka refuses messages over a megabyte by default: large contexts
# (32 keys of 256 characters per event) could reach that in 50 steps, so the oldest steps give way first.
MAX_STATE_BYTES = 512 * 1024


def tag(offset: int, *, rerouted: bool = False) -> int:
    """Where an event was read, as one int: its offset in the events topic, or ``-1 - offset`` in the topic of
    rerouted events (a user's events are on the same partition number in both, so the partition is implied).

    >>> tag(17), tag(17, rerouted=True)
    (17, -18)
    """
    return -1 - offset if rerouted else offset


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


def steps(state: State | None) -> list[Step]:
    """The user's history, oldest first."""
    if not state:
        return []
    return [Step(s[0], s[1], s[2], s[3] if len(s) > 3 else None, s[4] if len(s) > 4 else None) for s in state["steps"]]


def is_duplicate(state: State | None, event_id: str) -> bool:
    return bool(state) and event_id in state["ids"]  # type: ignore[index]


def redelivered(state: State | None, event_id: str, at: int) -> bool:
    """Whether ``event_id`` is in the state as read from the same message (tag ``at``): a redelivery.

    >>> s = append(None, Event("u", "a", "view", 1e9, "e1"), max_len=5, at=40)
    >>> redelivered(s, "e1", 40), redelivered(s, "e1", 41), redelivered(s, "e2", 40)
    (True, False, False)
    """
    if not state or event_id not in state["ids"]:
        return False
    ids, tags = state["ids"], state.get("at", [])
    pad = len(ids) - len(tags)  # a state written before tags has none: its ids count as duplicates
    return any(x == event_id and i >= pad and tags[i - pad] == at for i, x in enumerate(ids))


def append(
    state: State | None,
    event: Event,
    *,
    max_len: int,
    dedup_window: int | None = None,
    at: int | None = None,
    now: float = 0.0,
    keep_seen: bool = False,
) -> State:
    """A new state with ``event`` appended and the sequence truncated to its last ``max_len`` steps (and to
    :data:`MAX_STATE_BYTES` where steps are large).

    The input is not changed: a Faust table only writes a value to its changelog when it is assigned, so callers
    assign the returned state back. Event ids are remembered for the last ``dedup_window`` events
    (default ``2 * max_len``, at least 100), with ``at``, where the event was read (:func:`tag`); ``now`` is
    the wall-clock time of the append, for expiry; with ``keep_seen`` the user's distinct items are kept too
    (:func:`remember_seen`).
    """
    window = dedup_window if dedup_window is not None else max(2 * max_len, 100)
    old = state or {"steps": [], "ids": [], "served": [], "n": 0}
    record: list[Any] = [event.item_id, event.event, event.ts]
    if event.context or event.item:
        record.append(event.context or None)
    if event.item:
        record.append(event.item)
    new_steps = [*old["steps"], record][-max_len:]
    if len(orjson.dumps(record)) * max_len > MAX_STATE_BYTES:  # only a large step can take the state over
        new_steps = _within_budget(new_steps)
    tags = old.get("at", [None] * len(old["ids"]))
    new = {
        "steps": new_steps,
        "ids": [*old["ids"], event.event_id][-window:],
        "at": [*tags, at][-window:],
        "served": old.get("served", []),
        "n": old.get("n", 0) + 1,
        "seen": int(now),
    }
    if keep_seen:
        new["items"] = remember_seen(old.get("items", []), event.item_id)
    return new


def remember_seen(items: list[str], item: str, keep: int = SEEN_KEPT) -> list[str]:
    """A new list of distinct items, oldest first, with ``item`` last and at most ``keep`` of them.

    >>> remember_seen(["a", "b", "c"], "a", keep=3), remember_seen(["a", "b", "c"], "d", keep=3)
    (['b', 'c', 'a'], ['b', 'c', 'd'])
    """
    return [*(x for x in items if x != item), item][-keep:]


def _within_budget(records: list[list[Any]]) -> list[list[Any]]:
    """The newest records whose JSON fits in :data:`MAX_STATE_BYTES` (always the newest one)."""
    total, keep = 0, 0
    for record in reversed(records):
        total += len(orjson.dumps(record)) + 1
        if keep and total > MAX_STATE_BYTES:
            break
        keep += 1
    return records[-keep:]


def with_served(state: State, items: list[str]) -> State:
    """A new state that remembers the list just published, for 'as served' live metrics."""
    return {**state, "served": items}
