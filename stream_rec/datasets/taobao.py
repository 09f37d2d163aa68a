"""Tianchi ``UserBehavior.csv`` (user,item,category,behavior,ts, no header); pv/cart/fav/buy become
view/add_to_cart/favorite/purchase and ``item={"category": category}``."""

from __future__ import annotations

from pathlib import Path

from ..wire.events import Event
from .text import bad_line, lines, number

__all__ = ["BEHAVIOURS", "read"]

BEHAVIOURS = {"pv": "view", "cart": "add_to_cart", "fav": "favorite", "buy": "purchase"}


def read(path: Path) -> list[Event]:
    events = []
    for lineno, line in lines(path):
        fields = line.split(",")
        if len(fields) != 5:
            raise bad_line(path, lineno, "expected 5 comma-separated fields 'user,item,category,behavior,ts'", line)
        user, item, category, behaviour, ts = fields
        event = BEHAVIOURS.get(behaviour.strip())
        if event is None:
            raise bad_line(path, lineno, f"behavior must be one of {', '.join(BEHAVIOURS)}", line)
        try:
            when = number(ts)
        except ValueError:
            raise bad_line(path, lineno, "timestamp must be a number of Unix seconds", line) from None
        if not (user and item):
            raise bad_line(path, lineno, "user and item must not be empty", line)
        events.append(Event(user, item, event, when, item={"category": category} if category else {}))
    return events
