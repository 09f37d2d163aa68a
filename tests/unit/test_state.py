"""A user's rolling sequence: append, truncate, remember ids for dedup, count, and keep the served list."""

from __future__ import annotations

import copy

import orjson

from stream_rec.sequences import Step, step_of
from stream_rec.wire.events import Event
from stream_rec.worker.admission import (
    MAX_STATE_BYTES,
    State,
    append,
    is_duplicate,
    redelivered,
    steps,
    tag,
    with_served,
)

T0 = 1.6e9


def ev(i: int, context: dict[str, str | float] | None = None) -> Event:
    return Event("u", f"i{i}", "view", T0 + i, f"e{i}", context=context or {})


def run(n: int, max_len: int, dedup_window: int | None = None) -> State:
    state = None
    for i in range(n):
        state = append(state, ev(i), max_len=max_len, dedup_window=dedup_window)
    assert state is not None
    return state


def test_first_append_from_nothing() -> None:
    state = append(None, ev(0), max_len=5, at=3, now=T0 + 7.9)
    assert state == {
        "steps": [["i0", "view", T0]], "ids": ["e0"], "at": [3], "served": [], "n": 1, "seen": int(T0 + 7),
    }  # fmt: skip
    assert steps(state) == [Step("i0", "view", T0)]


def test_truncates_to_max_len_keeping_the_newest() -> None:
    state = run(12, max_len=5)
    assert [s.item for s in steps(state)] == ["i7", "i8", "i9", "i10", "i11"]
    assert [s.ts for s in steps(state)] == sorted(s.ts for s in steps(state))


def test_n_counts_every_event_ever_appended() -> None:
    state = run(12, max_len=5)
    assert state["n"] == 12
    assert len(state["steps"]) == 5


def test_input_is_not_mutated() -> None:
    state = run(5, max_len=5)
    state = with_served(state, ["a", "b"])
    before = copy.deepcopy(state)
    new = append(state, ev(5), max_len=5)
    assert state == before
    assert new is not state and new["steps"] is not state["steps"] and new["ids"] is not state["ids"]
    assert new["steps"][-1][0] == "i5"


def test_dedup_by_event_id() -> None:
    assert not is_duplicate(None, "e0")
    assert not is_duplicate({}, "e0")
    state = run(3, max_len=10)
    assert is_duplicate(state, "e2")
    assert not is_duplicate(state, "e3")


def test_dedup_window() -> None:
    state = run(10, max_len=2, dedup_window=4)
    assert state["ids"] == ["e6", "e7", "e8", "e9"]
    assert not is_duplicate(state, "e5")
    default = run(150, max_len=2)
    assert len(default["ids"]) == 100  # default: max(2 * max_len, 100)
    assert len(run(300, max_len=120)["ids"]) == 240


def test_served_survives_appends() -> None:
    state = with_served(run(2, max_len=5), ["x", "y"])
    assert state["served"] == ["x", "y"]
    state = append(state, ev(2), max_len=5)
    assert state["served"] == ["x", "y"]
    replaced = with_served(state, ["z"])
    assert replaced["served"] == ["z"] and state["served"] == ["x", "y"]


def test_context_is_kept_per_step() -> None:
    state = append(None, ev(0, context={"device": "ios"}), max_len=5)
    state = append(state, ev(1), max_len=5)
    assert steps(state) == [Step("i0", "view", T0, {"device": "ios"}), Step("i1", "view", T0 + 1, None)]


def test_state_is_plain_json() -> None:
    state = with_served(run(3, max_len=2), ["a"])
    state = append(state, ev(3, context={"hour": 3}), max_len=2)
    assert orjson.loads(orjson.dumps(state)) == state


def test_older_state_without_served_or_n() -> None:
    state = append({"steps": [], "ids": []}, ev(0), max_len=3)
    assert state["served"] == [] and state["n"] == 1


def test_empty_history() -> None:
    assert steps(None) == []
    assert steps({}) == []


def test_step_of() -> None:
    e = Event("u", "i", "click", T0, "e", context={"d": "m"}, item={"c": "x"})
    assert step_of(e) == Step("i", "click", T0, {"d": "m"}, {"c": "x"}, "u")
    assert step_of(ev(0)) == Step("i0", "view", T0, None, None, "u")


def test_item_side_features_are_kept() -> None:
    state = append(None, Event("u", "i0", "view", T0, "e0", item={"category": "shoes"}), max_len=5)
    state = append(
        state, Event("u", "i1", "view", T0 + 1, "e1", context={"d": "m"}, item={"category": "hats"}), max_len=5
    )
    assert steps(state) == [
        Step("i0", "view", T0, None, {"category": "shoes"}),
        Step("i1", "view", T0 + 1, {"d": "m"}, {"category": "hats"}),
    ]


def test_a_redelivery_is_told_from_a_duplicate_by_where_it_was_read() -> None:
    state = None
    for i in range(5):
        state = append(state, ev(i), max_len=3, at=tag(100 + i))
    assert redelivered(state, "e4", tag(104)), "the same message read again"
    assert not redelivered(state, "e4", tag(200)), "the same event id in another message: a duplicate"
    assert not redelivered(state, "e4", tag(104, rerouted=True)), "the same offset in the other topic"
    assert redelivered(state, "e0", tag(100)), "ids (and their tags) outlive the truncated steps"
    assert not redelivered(state, "e9", tag(100))
    assert not redelivered(None, "e0", 0)


def test_a_state_without_tags_counts_its_ids_as_duplicates_only() -> None:
    legacy = {"steps": [["i0", "view", T0]], "ids": ["e0"], "served": [], "n": 1}
    assert is_duplicate(legacy, "e0") and not redelivered(legacy, "e0", 0)
    new = append(legacy, ev(1), max_len=5, at=7)
    assert new["at"] == [None, 7] and redelivered(new, "e1", 7) and not redelivered(new, "e0", 0)


def test_large_steps_are_truncated_to_the_byte_budget_newest_first() -> None:
    big = {f"k{j:02d}": "x" * 250 for j in range(32)}  # about 8.5 KB of context per step
    state = None
    for i in range(80):
        state = append(state, ev(i, big), max_len=80)
    assert state is not None
    size = len(orjson.dumps(state))
    assert size <= MAX_STATE_BYTES + 16_384, size
    kept = [s.item for s in steps(state)]
    assert kept[-1] == "i79" and len(kept) < 80, "the newest steps are kept"
    assert kept == [f"i{i}" for i in range(80 - len(kept), 80)]
    small = run(80, max_len=80)
    assert len(small["steps"]) == 80, "small steps are never cut by the budget"
