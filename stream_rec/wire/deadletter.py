"""Pure: the dead-letter envelope, which always fits in one Kafka message however the bad input looks.

A bad value is kept whole where it is small, as text (or base64 where it is not UTF-8). Over ``keep`` bytes only
its first ``keep`` are kept, and the envelope says so: ``truncated`` is true, ``length`` is the original size and
``sha256`` its digest, so the original can still be found and matched. JSON escaping can make text six times
longer (a NUL byte is ``\\u0000``), so an envelope is at most about ``6 * keep`` bytes plus the reason: far below
Kafka's default one-megabyte message limit with the default ``keep`` of 64 KiB.

>>> import orjson
>>> e = orjson.loads(envelope("not JSON", "events", 0, 7, b"u1", b"\\x00" * 1_000_000, keep=10))
>>> e["truncated"], e["length"], len(e["value"]), e["sha256"][:12]
(True, 1000000, 10, 'd29751f2649b')
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import orjson

__all__ = ["KEY_KEEP", "VALUE_KEEP", "envelope"]

VALUE_KEEP = 65_536  # bytes of a bad value kept in its envelope
KEY_KEEP = 1_024  # ... and of its key


def envelope(
    reason: str, topic: str, partition: int, offset: int, key: Any, value: Any, *, keep: int = VALUE_KEEP
) -> bytes:
    """The dead-letter message for a bad input at ``topic[partition] offset``: the reason, where it came from, and
    the original bytes (whole up to ``keep`` bytes, else their start, length and digest)."""
    raw = _as_bytes(value)
    out: dict[str, Any] = {"reason": reason, "topic": topic, "partition": partition, "offset": offset}
    key_raw = _as_bytes(key)
    out["key"] = None if key_raw is None else _text_or_none(key_raw[:KEY_KEEP], replace=True)
    if key_raw is not None and len(key_raw) > KEY_KEEP:
        out["key_length"] = len(key_raw)
    if raw is None:
        out |= {"value": None, "value_b64": None}
    else:
        kept = raw[:keep]  # sliced before anything is decoded or escaped
        text = _text_or_none(kept)
        # A cut can split a multi-byte character: drop the partial one rather than call the value binary.
        if text is None and len(raw) > keep:
            text = _text_or_none(kept[: _utf8_boundary(kept)])
        out["value"] = text
        out["value_b64"] = base64.b64encode(kept).decode() if text is None else None
        if len(raw) > keep:
            out |= {"truncated": True, "length": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    out["ts"] = time.time()
    return orjson.dumps(out)


def _as_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _text_or_none(raw: bytes, *, replace: bool = False) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode(errors="replace") if replace else None


def _utf8_boundary(raw: bytes) -> int:
    """The length of ``raw`` without a multi-byte character cut short at its end."""
    end = len(raw)
    for back in range(1, min(4, end) + 1):
        byte = raw[end - back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): the character starting here may be incomplete
            width = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return end - back if back < width else end
    return end
