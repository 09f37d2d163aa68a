"""What the worker does with each message, decided without Kafka: dead letters, reroutes, duplicates, redeliveries."""

from __future__ import annotations

import copy

import orjson
import pytest

from stream_rec.serving.accepted import Output
from stream_rec.serving.live import LiveMetrics
from stream_rec.worker.admission import Message, Plan, State, answer, home_partition, plan_batch, tag

P = 4
EVENTS = "events"
REROUTED = "events-rerouted"


def event(user: str, item: str, n: int) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "user_id": user, "item_id": item, "event": "view", "ts": 1.7e9 + n})


def at_home(user: str, item: str, n: int, offset: int | None = None, topic: str = EVENTS) -> Message:
    offset = n if offset is None else offset
    return Message(topic, home_partition(user, P), offset, user.encode(), event(user, item, n))


def plan(messages: list[Message], table: dict[str, State] | None = None) -> tuple[Plan, LiveMetrics]:
    metrics = LiveMetrics()
    store = table or {}
    result = plan_batch(
        messages, lambda user, msg: store.get(user), events_topic=EVENTS, partitions=P, seq_len=50,
        max_bytes=65_536, metrics=metrics, now=1.7e9,
    )  # fmt: skip
    return result, metrics


def test_the_home_partition_is_kafkas_default_partitioner() -> None:
    from aiokafka.partitioner import DefaultPartitioner  # what the worker's own producer picks for a key

    for user in ["42", "u-7", "ü", "x" * 256]:
        assert home_partition(user, 12) == DefaultPartitioner()(user.encode(), list(range(12)), list(range(12)))


def test_new_events_are_accepted_in_order_with_their_histories() -> None:
    result, metrics = plan([at_home("a", "i1", 1), at_home("b", "i2", 2), at_home("a", "i3", 3)])
    assert [(x.event.user_id, x.event.item_id) for x in result.accepted] == [("a", "i1"), ("b", "i2"), ("a", "i3")]
    third = result.accepted[2]
    assert [s.item for s in third.before] == ["i1"] and [s.item for s in third.after] == ["i1", "i3"]
    assert all(x.learn for x in result.accepted)
    assert result.states["a"]["ids"] == ["e1", "e3"] and result.states["a"]["at"] == [1, 3]
    assert result.homes["a"].offset == 3, "the state is written from the user's last message"
    assert metrics.events == 3 and metrics.invalid == metrics.duplicates == metrics.rerouted == 0


def test_bad_messages_are_dead_lettered_with_the_reason() -> None:
    bad = Message(EVENTS, 0, 9, b"k", b"{not json")
    tombstone = Message(EVENTS, 1, 10, b"k", None)
    result, metrics = plan([bad, at_home("a", "i1", 1), tombstone])
    assert [(m.offset, reason.split(":")[0]) for m, reason in result.dead] == [(9, "not JSON"), (10, "empty message")]
    assert len(result.accepted) == 1 and metrics.invalid == 2


@pytest.mark.parametrize(
    ("key", "partition", "why"),
    [
        (None, None, "no key"),
        (b"someone-else", None, "keyed otherwise than by user_id"),
        (b"a", "other", "on another partition"),
    ],
)
def test_events_not_where_their_user_is_are_rerouted_home(key: bytes | None, partition: str | None, why: str) -> None:
    home = home_partition("a", P)
    where = (home + 1) % P if partition == "other" else home
    result, metrics = plan([Message(EVENTS, where, 5, key, event("a", "i1", 1))])
    assert not result.accepted and not result.states, "nothing is decided about the user away from their state"
    (reroute,) = result.rerouted
    assert (reroute.user_id, reroute.partition) == ("a", home) and reroute.why.startswith(why)
    assert metrics.rerouted == 1


def test_a_rerouted_event_is_admitted_where_it_arrives_and_tagged_as_rerouted() -> None:
    msg = at_home("a", "i1", 1, offset=7, topic=REROUTED)
    msg = Message(REROUTED, msg.partition, 7, None, msg.value)  # whatever its key: it was sent home already
    result, _ = plan([msg])
    assert len(result.accepted) == 1 and result.states["a"]["at"] == [tag(7, rerouted=True)]


def test_a_duplicate_is_ignored_but_a_redelivery_is_answered_again_without_a_second_append() -> None:
    first, _ = plan([at_home("a", "i1", 1, offset=40)])
    table = {"a": first.states["a"]}
    again, metrics = plan([at_home("a", "i1", 1, offset=40)], table)  # the same message, read again
    (answer,) = again.accepted
    assert not answer.learn and [s.item for s in answer.after] == ["i1"]
    assert again.states["a"] is table["a"], "the state is written back as it is (the changelog may lack it)"
    assert metrics.redelivered == 1 and metrics.duplicates == 0
    copy, metrics = plan([at_home("a", "i1", 1, offset=41)], table)  # the same event in another message
    assert not copy.accepted and not copy.states and metrics.duplicates == 1
    assert metrics.scored == 0


def test_an_accepted_event_carries_the_list_served_before_the_batch() -> None:
    first, _ = plan([at_home("a", "i1", 1)])
    table = {"a": {**first.states["a"], "served": ["i2", "i9"]}}
    second, _ = plan([at_home("a", "i2", 2), at_home("a", "i5", 3)], table)
    assert [list(a.served) for a in second.accepted] == [["i2", "i9"], ["i2", "i9"]]


def test_the_answer_remembers_each_users_list_and_sends_in_order() -> None:
    result, _ = plan([at_home("a", "x", 1), at_home("b", "y", 2), at_home("a", "z", 3)])
    outputs = [
        Output({"event_id": "e1", "items": [{"item_id": "p"}, {"item_id": "q"}]}, {"embedding": [0.5]}),
        Output({"event_id": "e2", "items": [{"item_id": "r"}]}, None),
        Output({"event_id": "e3", "items": [{"item_id": "s"}]}, {"embedding": [1.0]}),
    ]
    before = copy.deepcopy(result.states)
    answered = answer(result, outputs)
    assert answered.states["a"]["served"] == ["s"] and answered.states["b"]["served"] == ["r"], "the last list"
    assert [s["steps"] for s in answered.states.values()] == [s["steps"] for s in result.states.values()]
    assert result.states == before, "the plan is left as it was"
    assert [(kind, key, orjson.loads(value)["event_id"] if kind == "recommendation" else None)
            for kind, key, value in answered.messages] == [
        ("recommendation", b"a", "e1"), ("embedding", b"a", None), ("recommendation", b"b", "e2"),
        ("recommendation", b"a", "e3"), ("embedding", b"a", None),
    ]  # fmt: skip
