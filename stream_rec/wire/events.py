"""The behaviour event: its record, parsing and validation (the wire contract of DESIGN.md).

>>> e = parse_event(b'{"user_id": "u1", "item_id": "i9", "event": "pv", "ts": 1511658000}')
>>> e.event, e.ts, len(e.event_id)
('view', 1511658000.0, 24)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ..errors import InvalidEvent

__all__ = ["EVENT_TYPES", "Event", "encode_event", "event_from_dict", "parse_event"]

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "favorite")

_ALIASES = {
    "pv": "view", "view": "view", "views": "view", "rating": "view", "rate": "view",
    "click": "click", "clk": "click",
    "cart": "add_to_cart", "add_to_cart": "add_to_cart", "addtocart": "add_to_cart", "add-to-cart": "add_to_cart",
    "buy": "purchase", "purchase": "purchase", "order": "purchase", "transaction": "purchase",
    "fav": "favorite", "favorite": "favorite", "favourite": "favorite",
}  # fmt: skip

MAX_ID_CHARS = 256
MAX_CONTEXT_KEYS = 32
MAX_VALUE_CHARS = 256
# Event time must fall in [1990-01-01, 2100-01-01): outside it a timestamp is in ms, ns or garbage.
MIN_TS = 631_152_000.0
MAX_TS = 4_102_444_800.0


@dataclass(frozen=True, slots=True)
class Event:
    """One user behaviour event, validated and normalised."""

    user_id: str
    item_id: str
    event: str
    ts: float
    event_id: str = ""
    context: dict[str, str | float] = field(default_factory=dict)
    item: dict[str, str | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(self, "event_id", derive_event_id(self.user_id, self.item_id, self.event, self.ts))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id,
            "event": self.event, "ts": self.ts,
        }  # fmt: skip
        if self.context:
            out["context"] = self.context
        if self.item:
            out["item"] = self.item
        return out


def derive_event_id(user_id: str, item_id: str, event: str, ts: float) -> str:
    """A deterministic id for an event that came without one: the same fields give the same id."""
    raw = f"{user_id}\x1f{item_id}\x1f{event}\x1f{ts!r}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event.to_dict())


def parse_event(raw: bytes | str | None, max_bytes: int = 65_536) -> Event:
    """Decode and validate one event from its wire bytes; raise :class:`InvalidEvent` saying what is wrong."""
    if raw is None:
        raise InvalidEvent("empty message: the value is null (a tombstone), not an event")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"payload of {len(raw)} bytes is over the limit of {max_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(f"the value must be a JSON object, got {type(obj).__name__}")
    return event_from_dict(obj)


def event_from_dict(obj: dict[str, Any]) -> Event:
    """Validate a decoded event object (see DESIGN.md for the rules) and normalise it."""
    user_id = _id(obj, "user_id")
    item_id = _id(obj, "item_id")
    kind = obj.get("event")
    if not isinstance(kind, str):
        raise InvalidEvent("field 'event' is required and must be a string, e.g. \"view\"")
    event = _ALIASES.get(kind.strip().lower())
    if event is None:
        raise InvalidEvent(f"unknown event type {kind[:40]!r}; expected one of {', '.join(EVENT_TYPES)}")
    ts = _timestamp(obj.get("ts"))
    event_id = obj.get("event_id", "")
    if event_id is None:
        event_id = ""
    if not isinstance(event_id, str) or len(event_id) > MAX_ID_CHARS:
        raise InvalidEvent(f"field 'event_id' must be a string of at most {MAX_ID_CHARS} chars")
    return Event(
        user_id=user_id,
        item_id=item_id,
        event=event,
        ts=ts,
        event_id=event_id,
        context=_features(obj, "context"),
        item=_features(obj, "item"),
    )


def _id(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric ids are common in datasets; the contract is a string
    if not isinstance(value, str):
        raise InvalidEvent(f"field {name!r} is required and must be a string")
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise InvalidEvent(f"field {name!r} must have 1..{MAX_ID_CHARS} chars, got {len(value)}")
    if not _CONTROL.isdisjoint(value):
        # Ids join with control characters elsewhere: the derived event id, the model's group keys (transitions.py).
        raise InvalidEvent(f"field {name!r} must not hold control characters, got {value[:40]!r}")
    return value


_CONTROL = frozenset(map(chr, range(32)))


def _timestamp(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise InvalidEvent("field 'ts' is required: event time in Unix seconds or an ISO 8601 string")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"field 'ts' is not an ISO 8601 time: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            raise InvalidEvent(f"field 'ts' {value[:40]!r} has no time zone; add 'Z' or an offset")
        ts = parsed.timestamp()
    elif isinstance(value, int | float):
        try:
            ts = float(value)
        except OverflowError:
            raise InvalidEvent("field 'ts' is far out of range") from None
    else:
        raise InvalidEvent(f"field 'ts' must be a number or a string, got {type(value).__name__}")
    if not math.isfinite(ts):
        raise InvalidEvent("field 'ts' is not a finite number")
    if not MIN_TS <= ts < MAX_TS:
        raise InvalidEvent(f"field 'ts' = {ts:g} is not Unix seconds between 1990 and 2100 (milliseconds?)")
    return ts


def _features(obj: dict[str, Any], name: str) -> dict[str, str | float]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"field {name!r} must be an object of string or number values")
    if len(value) > MAX_CONTEXT_KEYS:
        raise InvalidEvent(f"field {name!r} has {len(value)} keys, at most {MAX_CONTEXT_KEYS} are allowed")
    out: dict[str, str | float] = {}
    for key, v in value.items():
        if len(key) > MAX_VALUE_CHARS:
            raise InvalidEvent(f"field {name!r} has a key of over {MAX_VALUE_CHARS} chars")
        if isinstance(v, str):
            if len(v) > MAX_VALUE_CHARS:
                raise InvalidEvent(f"{name}.{key} is over {MAX_VALUE_CHARS} chars")
            out[key] = v
        elif isinstance(v, int | float) and not isinstance(v, bool):
            if (isinstance(v, int) and abs(v) > 2**53) or not math.isfinite(v):
                raise InvalidEvent(f"{name}.{key} is not a finite number")
            out[key] = v
        else:
            raise InvalidEvent(f"{name}.{key} must be a string or a number, got {type(v).__name__}")
    return out
