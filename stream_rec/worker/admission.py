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
from typing import Literal

import orjson
from kafka.partitioner.default import murmur2

from ..errors import InvalidEvent
from ..sequences import State, append, is_duplicate, redelivered, steps, tag, with_served
from ..serving.accepted import Accepted, Output
from ..serving.live import LiveMetrics
from ..wire.events import parse_event

__all__ = ["Answer", "Message", "Plan", "Reroute", "answer", "home_partition", "plan_batch"]


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
