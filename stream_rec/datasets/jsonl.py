"""JSON lines in the wire format of DESIGN.md, each validated by :func:`~stream_rec.wire.events.event_from_dict`."""

from __future__ import annotations

from pathlib import Path

import orjson

from ..errors import DatasetError, InvalidEvent
from ..wire.events import Event, event_from_dict

__all__ = ["read"]


def read(path: Path) -> list[Event]:
    events = []
    try:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise DatasetError(f"{path}, line {lineno}: not JSON: {exc}") from None
                if not isinstance(obj, dict):
                    raise DatasetError(f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
                try:
                    events.append(event_from_dict(obj))
                except InvalidEvent as exc:
                    raise DatasetError(f"{path}, line {lineno}: {exc.reason}") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    return events
