"""The dead-letter envelope: whatever the bad input, one JSON message within a known size, saying what it held."""

from __future__ import annotations

import base64
import hashlib

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rec.wire.deadletter import KEY_KEEP, envelope

KEEP = 512


def kept_bytes(e: dict[str, object]) -> bytes:
    if e["value"] is not None:
        return str(e["value"]).encode()
    return base64.b64decode(str(e["value_b64"])) if e["value_b64"] is not None else b""


@settings(max_examples=300, deadline=None)
@given(
    key=st.one_of(st.none(), st.binary(max_size=3 * KEY_KEEP)),
    value=st.one_of(
        st.none(),
        st.binary(max_size=4 * KEEP),
        st.text(max_size=2 * KEEP).map(str.encode),
        st.integers(0, 3 * KEEP).map(lambda n: b"\x00" * n),
        st.integers(0, 3 * KEEP).map(lambda n: "é€😀".encode() * n),
    ),
)
def test_any_input_makes_a_bounded_envelope_that_says_what_it_held(key: bytes | None, value: bytes | None) -> None:
    raw = envelope("a reason", "events", 3, 17, key, value, keep=KEEP)
    e = orjson.loads(raw)
    assert (e["reason"], e["topic"], e["partition"], e["offset"]) == ("a reason", "events", 3, 17)
    assert len(raw) <= 6 * KEEP + 6 * KEY_KEEP + 400, "escaping cannot make it unbounded"
    if value is None:
        assert e["value"] is None and e["value_b64"] is None and "truncated" not in e
        return
    kept = kept_bytes(e)
    if len(value) <= KEEP:
        assert kept == value and "truncated" not in e, "small values are kept whole"
    else:
        assert e["truncated"] is True and e["length"] == len(value)
        assert e["sha256"] == hashlib.sha256(value).hexdigest()
        assert value.startswith(kept) and len(value[:KEEP]) - len(kept) < 4, "the start, cut at a character"
    if key is not None and len(key) > KEY_KEEP:
        assert e["key_length"] == len(key) and len(e["key"]) <= KEY_KEEP


def test_text_cut_inside_a_character_stays_text() -> None:
    value = "€".encode() * 1000  # three bytes each: a cut at 512 falls inside one
    e = orjson.loads(envelope("r", "t", 0, 0, None, value, keep=KEEP))
    assert e["value"] == "€" * (KEEP // 3) and e["value_b64"] is None


def test_binary_is_kept_as_base64() -> None:
    e = orjson.loads(envelope("r", "t", 0, 0, b"k", b"\xff\xfe\x00", keep=KEEP))
    assert e["value"] is None and base64.b64decode(e["value_b64"]) == b"\xff\xfe\x00" and e["key"] == "k"
