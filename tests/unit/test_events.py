"""Event parsing and validation: what the contract accepts, normalises, and rejects with a usable reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rec.errors import InvalidEvent, StreamRecError
from stream_rec.wire.events import EVENT_TYPES, Event, encode_event, event_from_dict, parse_event

TS = 1_511_658_000.0  # 2017-11-26T01:00:00Z


def wire(**fields: Any) -> bytes:
    return orjson.dumps({"user_id": "u1", "item_id": "i9", "event": "view", "ts": TS, **fields})


def base(**fields: Any) -> dict[str, Any]:
    return {"user_id": "u1", "item_id": "i9", "event": "view", "ts": TS, **fields}


def invalid(obj: dict[str, Any]) -> str:
    with pytest.raises(InvalidEvent) as info:
        event_from_dict(obj)
    return info.value.reason


# --- valid events ------------------------------------------------------------------------------------------


def test_valid_event_with_everything() -> None:
    e = parse_event(
        wire(event_id="e-1", event="purchase", context={"device": "ios", "hour": 3}, item={"category": "c7"})
    )
    assert e == Event(
        user_id="u1",
        item_id="i9",
        event="purchase",
        ts=TS,
        event_id="e-1",
        context={"device": "ios", "hour": 3},
        item={"category": "c7"},
    )
    assert isinstance(e.ts, float)


def test_round_trip_through_the_wire() -> None:
    e = parse_event(wire(context={"city": "Paris"}))
    assert parse_event(encode_event(e)) == e


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_canonical_types(kind: str) -> None:
    assert parse_event(wire(event=kind)).event == kind


@pytest.mark.parametrize(
    ("alias", "kind"),
    [("pv", "view"), ("cart", "add_to_cart"), ("buy", "purchase"), ("fav", "favorite"), (" PV ", "view")],
)
def test_aliases(alias: str, kind: str) -> None:
    assert parse_event(wire(event=alias)).event == kind


def test_str_input_and_numeric_ids() -> None:
    e = parse_event(orjson.dumps(base(user_id=42, item_id=7)).decode())
    assert (e.user_id, e.item_id) == ("42", "7")


@pytest.mark.parametrize(
    "ts",
    [
        "2017-11-26T01:00:00Z",
        "2017-11-26T01:00:00+00:00",
        "2017-11-26T02:00:00+01:00",
        "2017-11-25T20:00:00-05:00",
    ],
)
def test_iso_timestamps_with_a_zone(ts: str) -> None:
    assert parse_event(wire(ts=ts)).ts == TS


def test_integer_seconds_become_float() -> None:
    e = parse_event(wire(ts=int(TS)))
    assert e.ts == TS and isinstance(e.ts, float)


def test_derived_event_id_is_deterministic() -> None:
    a = parse_event(wire())
    b = parse_event(wire(event="pv", ts="2017-11-26T01:00:00Z"))  # the same event, spelt differently
    assert a.event_id and a.event_id == b.event_id
    assert event_from_dict(base(event_id=None)).event_id == a.event_id
    assert event_from_dict(base(event_id="")).event_id == a.event_id
    others = [wire(ts=TS + 1), wire(item_id="i8"), wire(user_id="u2"), wire(event="click")]
    assert len({a.event_id, *(parse_event(raw).event_id for raw in others)}) == 5


def test_given_event_id_is_kept() -> None:
    assert parse_event(wire(event_id="abc")).event_id == "abc"


def test_limits_are_inclusive() -> None:
    e = event_from_dict(base(user_id="u" * 256, context={f"k{i}": i for i in range(32)}))
    assert len(e.user_id) == 256 and len(e.context) == 32


# --- invalid events ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b'{"user_id": "u", "ts": NaN}', "not JSON"),  # orjson rejects the NaN literal
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"view"', "must be a JSON object, got str"),
        (b"null", "must be a JSON object, got NoneType"),
    ],
)
def test_not_an_object(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(raw)


def test_tombstone() -> None:
    with pytest.raises(InvalidEvent, match="null"):
        parse_event(None)


def test_oversize_payload() -> None:
    raw = wire(context={"note": "x" * 200})
    with pytest.raises(InvalidEvent, match=rf"{len(raw)} bytes is over the limit of 100"):
        parse_event(raw, max_bytes=100)
    assert parse_event(raw, max_bytes=len(raw)).context["note"] == "x" * 200


@pytest.mark.parametrize("name", ["user_id", "item_id", "event", "ts"])
def test_missing_field(name: str) -> None:
    obj = base()
    del obj[name]
    assert name in invalid(obj)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"user_id": ""}, "'user_id' must have 1..256 chars, got 0"),
        ({"item_id": "x" * 257}, "'item_id' must have 1..256 chars, got 257"),
        ({"user_id": 1.5}, "'user_id' is required and must be a string"),
        ({"user_id": True}, "'user_id' is required and must be a string"),
        ({"item_id": ["a"]}, "'item_id' is required and must be a string"),
        ({"item_id": "\x1dcategory=shoes"}, "'item_id' must not hold control characters"),
        ({"user_id": "u\n1"}, "'user_id' must not hold control characters"),
        ({"event": 3}, "'event' is required and must be a string"),
        ({"event": "teleport"}, "unknown event type 'teleport'"),
        ({"ts": True}, "'ts' is required"),
        ({"ts": None}, "'ts' is required"),
        ({"ts": [TS]}, "'ts' must be a number or a string, got list"),
        ({"ts": "yesterday"}, "not an ISO 8601 time"),
        ({"ts": "2017-11-26T01:00:00"}, "has no time zone"),
        ({"event_id": 5}, "'event_id' must be a string"),
        ({"event_id": "e" * 257}, "'event_id' must be a string of at most 256"),
        ({"context": "mobile"}, "'context' must be an object"),
        ({"item": [1]}, "'item' must be an object"),
        ({"context": {"device": None}}, "context.device must be a string or a number, got NoneType"),
        ({"context": {"nested": {"a": 1}}}, "context.nested must be a string or a number, got dict"),
        ({"context": {"v": "x" * 257}}, "context.v is over 256 chars"),
        ({"context": {"k" * 257: 1}}, "a key of over 256 chars"),
        ({"item": {"on_sale": True}}, "item.on_sale must be a string or a number, got bool"),
    ],
)
def test_wrong_types_and_values(fields: dict[str, Any], words: str) -> None:
    assert words in invalid(base(**fields))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_timestamps(value: float) -> None:
    assert "not a finite number" in invalid(base(ts=value))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_context_values(value: float) -> None:
    assert "context.x is not a finite number" in invalid(base(context={"x": value}))


@pytest.mark.parametrize(
    "ts",
    [
        TS * 1000,  # milliseconds
        TS * 1e9,  # nanoseconds
        0,
        -1.0,
        631_151_999.0,  # a second before 1990
        4_102_444_800.0,  # 2100-01-01
        "1970-01-01T00:00:00Z",
    ],
)
def test_absurd_timestamps(ts: float | str) -> None:
    reason = invalid(base(ts=ts))
    assert "between 1990 and 2100" in reason


def test_milliseconds_hint() -> None:
    with pytest.raises(InvalidEvent, match=r"milliseconds\?"):
        parse_event(wire(ts=int(TS * 1000)))


def test_too_many_context_keys() -> None:
    reason = invalid(base(context={f"k{i}": i for i in range(33)}))
    assert reason == "field 'context' has 33 keys, at most 32 are allowed"
    assert "'item' has 40 keys" in invalid(base(item={f"k{i}": "v" for i in range(40)}))


def test_invalid_event_is_ours_and_carries_the_reason() -> None:
    with pytest.raises(StreamRecError) as info:
        parse_event(b"[]")
    assert isinstance(info.value, InvalidEvent)
    assert info.value.reason == str(info.value)


def test_long_bad_values_are_cut_in_the_reason() -> None:
    reason = invalid(base(event="x" * 10_000))
    assert len(reason) < 200


def test_huge_integer_timestamp_is_invalid() -> None:
    assert "ts" in invalid(base(ts=10**400))


def test_huge_integer_context_value_is_invalid() -> None:
    assert "context.x" in invalid(base(context={"x": 10**400}))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        name: _json | st.sampled_from(good)
        for name, good in [
            ("user_id", ["u1", 42]), ("item_id", ["i1"]), ("event", ["view", "pv", "buy"]),
            ("ts", [1.7e9, "2024-05-01T12:00:00Z"]), ("event_id", ["e1"]), ("context", [{"device": "ios"}]),
            ("item", [{"category": "c"}]),
        ]
    },
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=300) | _json.map(orjson.dumps) | _fields.map(orjson.dumps))
def test_any_input_is_an_event_or_an_invalid_event_with_a_reason(raw: bytes) -> None:
    try:
        event = parse_event(raw)
    except InvalidEvent as exc:
        assert exc.reason and len(exc.reason) < 400, "a reason a producer can act on, of bounded length"
        return
    assert event.event in EVENT_TYPES and 1 <= len(event.user_id) <= 256 and event.event_id
    assert parse_event(encode_event(event)) == event, "what the worker accepts, it can write back and read again"


@pytest.mark.parametrize("literal", [b"123456789012345678901234567890", b"1e400", b"-1e400", b"NaN", b"Infinity"])
def test_numbers_json_cannot_hold_are_invalid_events(literal: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(b'{"user_id": "u", "item_id": "i", "event": "view", "ts": ' + literal + b"}")


def test_an_unknown_event_type_is_told_every_type_there_is() -> None:
    with pytest.raises(InvalidEvent) as bad:
        parse_event(b'{"user_id": "u", "item_id": "i", "event": "like", "ts": 1700000000}')
    assert bad.value.reason.endswith("expected one of " + ", ".join(EVENT_TYPES)) and len(EVENT_TYPES) == 5
