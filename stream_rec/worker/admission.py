"""Pure: what the worker does with each message of a batch, decided without Kafka, Faust or the model.

For each message, in order:

1. not a valid event: dead-lettered with the reason;
2. read from the events topic but not keyed by its user id, or not on the user's partition (a null key, another
   key, a producer with another partitioner): rerouted, i.e. sent on keyed by user id to the user's partition of
   the reroute topic, where it is read again and admitted; so a user's state lives on one partition only;
3. its event id already in the user's sequence: a duplicate, ignored; unless it was read from this very message
   before (a redelivery after a crash, whose answer may never have gone out): then it is answered again from the
   user's sequence as it is, and the sequence is written again (the changelog may have missed it);
4. otherwise accepted: appended, answered, learned from; it carries the list its user was last served before the
   batch, against which the engine scores it ("as served", engine.py).

A user's state, the table's value, is made here alone (:func:`append`, and :func:`answer` with the list just
served). It is a plain JSON object so that the changelog and RocksDB hold nothing but JSON::

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

>>> from stream_rec.serving.live import LiveMetrics
>>> value = b'{"user_id": "u1", "item_id": "i1", "event": "view", "ts": 1700000000}'
>>> p = home_partition("u1", 4)
>>> plan = plan_batch([Message("events", p, 0, b"u1", value), Message("events", p, 1, b"u1", b"{")],
...                   lambda user, msg: None, events_topic="events", partitions=4, seq_len=50, max_bytes=65536,
...                   metrics=LiveMetrics(), now=0.0)
>>> [a.event.item_id for a in plan.accepted], [reason[:8] for _, reason in plan.dead]
(['i1'], ['not JSON'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from kafka.partitioner.default import murmur2

from ..errors import InvalidEvent
from ..sequences import Step, remember_seen
from ..serving.accepted import Accepted, Output
from ..serving.live import LiveMetrics
from ..wire.events import Event, parse_event

__all__ = [
    "MAX_STATE_BYTES", "Answer", "Message", "Plan", "Reroute", "State", "answer", "append", "home_partition",
    "is_duplicate", "plan_batch", "redelivered", "steps", "tag", "with_served",
]  # fmt: skip

State = dict[str, Any]

# A state is one changelog message, and Kafka refuses messages over a megabyte by default: large contexts
# (32 keys of 256 characters per event) could reach that in 50 steps, so the oldest steps give way first.
MAX_STATE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka message as the worker read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Reroute:
    message: Message
    user_id: str
    partition: int  # the user's partition
    why: str


@dataclass
class Plan:
    """What to do with a batch: dead letters, reroutes, events to answer, and the users' new states."""

    dead: list[tuple[Message, str]] = field(default_factory=list)
    rerouted: list[Reroute] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)  # in order; redeliveries among them
    states: dict[str, State] = field(default_factory=dict)  # user -> new state, to write back
    homes: dict[str, Message] = field(default_factory=dict)  # user -> a message on the user's partition


def home_partition(user_id: str, partitions: int) -> int:
    """The partition of a user: Kafka's default partitioner on the user id (murmur2, as the Java client, kafka-python
    and aiokafka choose it for a keyed message), so that events keyed by user id are read where they land.

    >>> [home_partition(user, 4) for user in ("42", "43", "44")]
    [0, 2, 3]
    """
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def plan_batch(
    messages: Sequence[Message],
    lookup: Callable[[str, Message], State | None],
    *,
    events_topic: str,
    partitions: int,
    seq_len: int,
    max_bytes: int,
    metrics: LiveMetrics,
    now: float,
    keep_seen: bool = False,
) -> Plan:
    """Decide every message of a batch (see the module's docstring); ``lookup(user, message)`` reads the user's
    stored state from the message's partition (where the user's state is, once the message is not rerouted).
    With ``keep_seen`` (exclude_seen) the states remember the users' distinct items."""
    plan = Plan()
    for msg in messages:
        metrics.events += 1
        try:
            event = parse_event(msg.value, max_bytes)
        except InvalidEvent as exc:
            metrics.invalid += 1
            plan.dead.append((msg, exc.reason))
            continue
        user = event.user_id
        rerouted = msg.topic != events_topic
        if not rerouted:
            why = _misplaced(msg, user, partitions)
            if why:
                metrics.rerouted += 1
                plan.rerouted.append(Reroute(msg, user, home_partition(user, partitions), why))
                continue
        at = tag(msg.offset, rerouted=rerouted)
        state = plan.states[user] if user in plan.states else lookup(user, msg)
        if redelivered(state, event.event_id, at):
            assert state is not None
            metrics.redelivered += 1
            history = steps(state)
            plan.accepted.append(Accepted(event, history, history, False, *_where(msg), state.get("items", ())))
            plan.states[user], plan.homes[user] = state, msg
            continue
        if is_duplicate(state, event.event_id):
            metrics.duplicates += 1
            continue
        new = append(state, event, max_len=seq_len, at=at, now=now, keep_seen=keep_seen)
        served = state["served"] if state else []
        plan.accepted.append(
            Accepted(event, steps(state), steps(new), True, *_where(msg), new.get("items", ()), served)
        )
        plan.states[user], plan.homes[user] = new, msg
    return plan


def _where(msg: Message) -> tuple[str, int]:
    return f"{msg.topic}:{msg.partition}", msg.offset + 1


def _misplaced(msg: Message, user: str, partitions: int) -> str:
    """Why a message of the events topic is not where its user's state is ('' when it is)."""
    if msg.key is None:
        return "no key"
    if msg.key != user.encode():
        return "keyed otherwise than by user_id"
    if msg.partition != home_partition(user, partitions):
        return "on another partition than its user's (a producer with another partitioner)"
    return ""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a batch's accepted events come to: the users' states to write back and the messages to send, in order."""

    states: dict[str, State]
    messages: list[tuple[Literal["recommendation", "embedding"], bytes, bytes]]  # (kind, key, value), in order


def answer(plan: Plan, outputs: Sequence[Output]) -> Answer:
    """Each user's new state (the plan's, remembering the list just published for the user, against which the
    user's next event is scored "as served") and the messages to send, from the engine's outputs for the plan's
    accepted events. The one place, with :func:`plan_batch`, where a user's state is made."""
    states = dict(plan.states)
    messages: list[tuple[Literal["recommendation", "embedding"], bytes, bytes]] = []
    for accepted, out in zip(plan.accepted, outputs, strict=True):
        user = accepted.event.user_id
        states[user] = with_served(states[user], [item["item_id"] for item in out.recommendation["items"]])
        messages.append(("recommendation", user.encode(), orjson.dumps(out.recommendation)))
        if out.embedding is not None:
            messages.append(("embedding", user.encode(), orjson.dumps(out.embedding)))
    return Answer(states, messages)


# -- a user's state ---------------------------------------------------------------------------------------------


def tag(offset: int, *, rerouted: bool = False) -> int:
    """Where an event was read, as one int: its offset in the events topic, or ``-1 - offset`` in the topic of
    rerouted events (a user's events are on the same partition number in both, so the partition is implied).

    >>> tag(17), tag(17, rerouted=True)
    (17, -18)
    """
    return -1 - offset if rerouted else offset


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

    >>> from stream_rec.wire.events import Event
    >>> s = append(None, Event("u", "a", "view", 1e9, "e1"), max_len=2)
    >>> s = append(s, Event("u", "b", "view", 2e9, "e2"), max_len=2)
    >>> s = append(s, Event("u", "c", "click", 3e9, "e3"), max_len=2)
    >>> [step.item for step in steps(s)], s["n"]
    (['b', 'c'], 3)
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
