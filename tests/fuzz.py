"""Malformed input for the tests: valid events broken one way at a time, and bytes that were never events.

Seeded and fast, so that ten thousand messages cost milliseconds; the unit tests explore the same ground with
hypothesis. Whether a message is valid is the parser's call (``parse_event``): the pipeline is tested on
routing every message the way the parser decides, the parser on its own rules (tests/unit/test_events.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import orjson

T0 = 1.7e9

_WRONG: list[Any] = [
    None, True, False, 0, -1, 1.5, 2**63, 1e300, -1e300, "", "x" * 257, "x" * 5000, [], [1, 2], {}, {"a": 1},
    {"nested": {"deeper": [1, {"x": None}]}}, "\x00", "\ud7ff", "é" * 300, "1.7e9", "2024-13-45T99:00:00Z",
    "2024-01-01T00:00:00", "NaN", "teleport", "VIEW ", " pv", 1.7e12, 1.7e18, 631151999.9, 4102444800.0,
]  # fmt: skip
_FIELDS = ["user_id", "item_id", "event", "ts", "event_id", "context", "item"]


def base(n: int) -> dict[str, Any]:
    """A valid event with a unique id and time."""
    return {
        "event_id": f"fz-{n}", "user_id": f"u{n % 97}", "item_id": f"i{n % 211}",
        "event": ("view", "click", "add_to_cart", "purchase", "pv", "buy")[n % 6], "ts": T0 + n,
        "context": {"device": ("ios", "web")[n % 2], "hour": n % 24}, "item": {"category": f"c{n % 7}"},
    }  # fmt: skip


def broken(rng: random.Random, n: int) -> bytes | None:
    """One message of many kinds: mostly broken events, some raw garbage, a few that are valid after all."""
    kind = rng.randrange(12)
    event = base(n)
    if kind == 0:  # a field gone
        del event[rng.choice(_FIELDS[:4])]
    elif kind in (1, 2, 3):  # a field of the wrong type or value
        event[rng.choice(_FIELDS)] = rng.choice(_WRONG)
    elif kind == 4:  # a context value or key out of bounds
        bad = rng.choice([{"k": rng.choice(_WRONG)}, {f"k{i}": i for i in range(33)}, {"k" * 300: 1}])
        event[rng.choice(["context", "item"])] = bad
    elif kind == 5:  # not an object
        return orjson.dumps(rng.choice([[event], "event", 42, None, True]))
    elif kind == 6:  # truncated JSON
        raw = orjson.dumps(event)
        return raw[: rng.randrange(1, len(raw))]
    elif kind == 7:  # random bytes (often not UTF-8)
        return rng.randbytes(rng.randrange(0, 200))
    elif kind == 8:  # deep nesting
        depth = rng.choice([100, 1100, 5000])  # orjson stops at 1024 levels
        return (
            b'{"user_id": "u", "item_id": "i", "event": "view", "ts": 1.7e9, "context": '
            + (b"[" * depth + b"]" * depth)
            + b"}"
        )
    elif kind == 9:  # empty, whitespace, a tombstone
        return rng.choice([b"", b"   ", b"\n", None])
    elif kind == 10:  # over the size limit
        event["context"] = {f"k{i}": "v" * 250 for i in range(32)}
        event["item"] = {"blob": "x" * 40_000}
    else:  # JSON with NaN, Infinity, comments, trailing commas
        raw = orjson.dumps(event).decode()
        return rng.choice([raw.replace(str(T0 + n), "NaN"), raw[:-1] + ",}", "// c\n" + raw, raw + "x"]).encode()
    return orjson.dumps(event)


def messages(count: int, seed: int = 0) -> Iterator[tuple[bytes | None, bytes | None]]:
    """``count`` (key, value) pairs: broken values, with keys right, wrong or missing."""
    rng = random.Random(seed)
    for n in range(count):
        value = broken(rng, n)
        key = rng.choice([f"u{n % 97}".encode(), None, b"someone-else", rng.randbytes(8)])
        yield (key or b"k") if value is None else key, value  # Kafka takes no message without key and value
