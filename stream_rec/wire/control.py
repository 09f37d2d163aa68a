"""Pure: the commands of the control topic, which every worker reads beside its events.

A command is a JSON object keyed by the user id it concerns, so that it lands on the user's partition and is
carried out by the worker that owns the user. One command exists:

- ``{"command": "forget", "user_id": "42", "ts": 1700000000.0}``: remove the user's sequence and served lists,
  drop their examples from the replay buffer, write a tombstone for them on the embeddings topic, and write a
  checkpoint that replaces every older one, so that no file keeps their history.

>>> parse_command(forget_command("42")).user_id
'42'
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import orjson

from ..errors import InvalidEvent
from .events import MAX_ID_CHARS

__all__ = ["Command", "forget_command", "parse_command"]

_MAX_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Command:
    command: Literal["forget"]
    user_id: str


def forget_command(user_id: str) -> bytes:
    return orjson.dumps({"command": "forget", "user_id": user_id, "ts": time.time()})


def parse_command(raw: bytes | None) -> Command:
    """Decode a control message; raise :class:`InvalidEvent` (it is dead-lettered) saying what is wrong."""
    if raw is None or len(raw) > _MAX_BYTES:
        raise InvalidEvent(f"a control message is a JSON object of at most {_MAX_BYTES} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"control message is not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("command") != "forget":
        raise InvalidEvent('unknown control command; expected {"command": "forget", "user_id": ...}')
    user = obj.get("user_id")
    if not isinstance(user, str) or not 1 <= len(user) <= MAX_ID_CHARS:
        raise InvalidEvent(f"control message: 'user_id' must be a string of 1..{MAX_ID_CHARS} chars")
    return Command("forget", user)
