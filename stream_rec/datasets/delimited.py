"""A user's own delimited file: a header naming the columns, then one event per row.

The delimiter is the one of ``, ; TAB |`` the header holds most of. The columns are found by their usual names
(``user_id``, ``visitorid``, ``item_id``, ``product_id``, ``timestamp``, ``event_type``, ``category_id`` ...,
case and ``-``/``_``/spaces aside) or named with ``--columns user=...,item=...,ts=...``; the user, the item and
the time are needed, the event type and the item's category are optional (without an event column every row
is a ``view``). Times are Unix seconds, milliseconds or microseconds (told apart by size) or ISO 8601 (UTC
where no zone is given). Each row is then checked as a wire event (:func:`~stream_rec.wire.events.event_from_dict`),
so event types take the wire's aliases (``pv``, ``addtocart``, ``transaction`` ...). Other columns are ignored.

>>> parse_columns("user=visitorid, item=itemid")
{'user': 'visitorid', 'item': 'itemid'}
>>> find_columns(["timestamp", "visitorid", "event", "itemid", "transactionid"], {})
{'user': 1, 'item': 3, 'ts': 0, 'event': 2}
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import DatasetError, InvalidEvent
from ..wire.events import MAX_TS, Event, event_from_dict

__all__ = ["DELIMITERS", "ROLES", "find_columns", "parse_columns", "read"]

ROLES = ("user", "item", "ts", "event", "category")
_REQUIRED = ("user", "item", "ts")
_USUAL = {
    "user": ("user_id", "userid", "user", "visitorid", "visitor_id", "customer_id", "customerid", "client_id",
             "session_id", "sessionid", "session"),
    "item": ("item_id", "itemid", "item", "product_id", "productid", "product", "sku", "article_id", "movie_id",
             "movieid", "track_id", "content_id"),
    "ts": ("timestamp", "ts", "time", "event_time", "eventtime", "datetime", "created_at", "date"),
    "event": ("event", "event_type", "eventtype", "behavior", "behaviour", "action", "interaction", "type"),
    "category": ("category", "category_id", "categoryid", "cat", "genre"),
}  # fmt: skip
DELIMITERS = (",", ";", "\t", "|")


def parse_columns(text: str) -> dict[str, str]:
    """``--columns``' value, ``role=column,...``, as a dict; a DatasetError that names the flag otherwise."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not column:
            raise DatasetError(f"--columns: expected role=column, got {part!r} (e.g. user=visitorid,item=itemid)")
        if role not in ROLES:
            raise DatasetError(f"--columns: unknown role {role!r}; the roles are {', '.join(ROLES)}")
        out[role] = column
    return out


def find_columns(header: list[str], named: Mapping[str, str]) -> dict[str, int]:
    """Each role's column index in ``header``: the column ``named`` gives, else the first of its usual names.
    A required role without a column is missing from the result (:func:`read` says which)."""
    canon = [_canon(h) for h in header]
    found: dict[str, int] = {}
    for role in ROLES:
        if role in named:
            if _canon(named[role]) not in canon:
                raise DatasetError(
                    f"--columns {role}={named[role]}: no such column; the header has {', '.join(header)}"
                )
            found[role] = canon.index(_canon(named[role]))
            continue
        index = next((canon.index(name) for name in _USUAL[role] if name in canon), None)
        if index is not None and index not in found.values():
            found[role] = index
    return found


def looks_like(line: str) -> bool:
    """Whether a first line is a header this reader understands (a user, an item and a time column)."""
    header = _split_header(line)
    return len(header) >= 3 and all(role in find_columns(header, {}) for role in _REQUIRED)


def read(path: Path, columns: Mapping[str, str] | None = None) -> list[Event]:
    named = dict(columns or {})
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            head = f.readline()
            header = _split_header(head)
            delimiter = _delimiter(head)
            found = find_columns(header, named)
            missing = [role for role in _REQUIRED if role not in found]
            if missing:
                raise DatasetError(
                    f"{path}: no {' or '.join(missing)} column among {', '.join(header) or 'no columns'}; name it "
                    f"with --columns, e.g. --columns {','.join(f'{role}=NAME' for role in missing)}"
                )
            rows = csv.reader(f, delimiter=delimiter)
            return [_event(path, rows.line_num + 1, row, header, found, delimiter) for row in rows if any(row)]
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not utf-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a delimited file: {exc}") from None


def _event(path: Path, lineno: int, row: list[str], header: list[str], found: dict[str, int], delimiter: str) -> Event:
    if len(row) != len(header):
        line = delimiter.join(row)
        raise DatasetError(
            f"{path}, line {lineno}: expected {len(header)} fields as the header has, got {len(row)}: {line[:80]!r}"
        )
    obj: dict[str, Any] = {"user_id": row[found["user"]].strip(), "item_id": row[found["item"]].strip(),
                           "event": row[found["event"]] if "event" in found else "view"}  # fmt: skip
    try:
        obj["ts"] = _time(row[found["ts"]].strip())
        category = row[found["category"]].strip() if "category" in found else ""
        if category:
            obj["item"] = {"category": category}
        return event_from_dict(obj)
    except InvalidEvent as exc:
        raise DatasetError(f"{path}, line {lineno}: {exc.reason}") from None


def _time(text: str) -> float | str:
    """Unix seconds from seconds, milliseconds, microseconds or ISO 8601 (naive means UTC); what cannot be
    read is passed on for the wire check to reject with its reason."""
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    for scale in (1.0, 1e3, 1e6):  # a time in 1990-2100 is 9-10 digits in seconds, 12-13 in ms, 15-16 in us
        if abs(value) / scale < MAX_TS:
            return value / scale
    return value


def _canon(name: str) -> str:
    return name.strip().strip('"').lower().replace(" ", "_").replace("-", "_")


def _delimiter(line: str) -> str:
    return max(DELIMITERS, key=line.count)


def _split_header(line: str) -> list[str]:
    line = line.lstrip("\ufeff").strip()
    if not line:
        return []
    return [h.strip() for h in next(csv.reader([line], delimiter=_delimiter(line)))]
