"""Control commands: a forget command round-trips; anything else is a clear error for the dead-letter topic."""

from __future__ import annotations

import orjson
import pytest

from stream_rec.errors import InvalidEvent
from stream_rec.wire.control import Command, forget_command, parse_command


def test_a_forget_command_round_trips() -> None:
    assert parse_command(forget_command("42")) == Command("forget", "42")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (None, "JSON object"),
        (b"x" * 5000, "JSON object"),
        (b"{", "not JSON"),
        (orjson.dumps({"command": "purge", "user_id": "1"}), "unknown control command"),
        (orjson.dumps({"command": "forget"}), "user_id"),
        (orjson.dumps({"command": "forget", "user_id": ""}), "user_id"),
        (orjson.dumps({"command": "forget", "user_id": 7}), "user_id"),
    ],
)
def test_malformed_commands_are_clear_errors(raw: bytes | None, says: str) -> None:
    with pytest.raises(InvalidEvent, match=says):
        parse_command(raw)
