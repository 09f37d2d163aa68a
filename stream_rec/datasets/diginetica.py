"""CIKM Cup 2016 ``train-item-views.csv`` (or its sample) and ``train-purchases.csv``; ``user_id`` is the
session (``"s<session>"``) and ``ts`` the event date at midnight UTC plus ``timeframe`` ms, since the data holds
nothing finer. ``product-categories.csv`` beside it gives ``item={"category": ...}``."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from ..errors import DatasetError
from ..wire.events import Event
from .text import bad_line, lines

__all__ = ["VIEWS", "read"]

VIEWS = ("sample_train-item-views.csv", "train-item-views.csv")


def read(path: Path) -> list[Event]:
    text = lines(path)
    header = next(text, None)
    if header is None:
        raise DatasetError(f"{path} is empty: there are no events to read")
    columns = [c.strip().lower().replace("_", "") for c in header[1].split(";")]
    need = ("sessionid", "itemid", "timeframe", "eventdate")
    if any(c not in columns for c in need):
        raise bad_line(path, header[0], f"expected a ';'-separated header with {', '.join(need)}", header[1])
    at = {c: columns.index(c) for c in need}
    event = "purchase" if "ordernumber" in columns else "view"
    rows: list[tuple[str, str, float]] = []
    for lineno, line in text:
        fields = line.split(";")
        if len(fields) != len(columns):
            raise bad_line(path, lineno, f"expected {len(columns)} ';'-separated fields", line)
        session, item = fields[at["sessionid"]], fields[at["itemid"]]
        try:
            day = datetime.strptime(fields[at["eventdate"]], "%Y-%m-%d").replace(tzinfo=UTC)
            when = day.timestamp() + int(fields[at["timeframe"]]) / 1000.0
        except ValueError:
            raise bad_line(path, lineno, "eventdate must be YYYY-MM-DD and timeframe integer ms", line) from None
        if not (session and item):
            raise bad_line(path, lineno, "session and item must not be empty", line)
        rows.append((f"s{session}", item, when))
    categories = _categories(path.parent / "product-categories.csv", {item for _, item, _ in rows})
    return [
        Event(user, item, event, when, item={"category": categories[item]} if item in categories else {})
        for user, item, when in rows
    ]


def _categories(path: Path, wanted: set[str]) -> dict[str, str]:
    """item id -> category id for the wanted items (the full map has 184k items; keep only what is used)."""
    if not path.is_file():
        return {}
    out = {}
    for _, line in islice(lines(path), 1, None):
        item, _, category = line.partition(";")
        if item in wanted and category:
            out[item] = category
    return out
