"""One user per line, ``user item_1 item_2 ... item_n`` separated by spaces, each user's items in order and no
times (the Amazon sets as the S3-Rec authors prepared them, e.g. ``Toys_and_Games.txt``). Each item is a
``click``. Users are interleaved on one shared timeline: a user's n items sit at the fractions (2k+1)/(2n),
k = 0..n-1, of it, ordered by (fraction, user, k), so every user is active from the start to the end and each
user's last item comes near the end. The timeline is the year 2014 (``ts`` is synthetic: only the order means
anything). ``<name>_item2attributes.json`` beside the file (item id -> list of attribute ids) gives each item
``item={"attr<id>": "1", ...}``, rarest attributes first, one side feature each."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from pathlib import Path

import orjson

from ..errors import DatasetError
from ..wire.events import MAX_ID_CHARS, Event
from .text import bad_line, first_line, lines

__all__ = ["looks_like", "read"]

_START = 1_388_534_400.0  # 2014-01-01 UTC: the shared timeline of a sequences file ...
_SPAN = 365 * 86_400.0  # ... one year long


def looks_like(path: Path) -> bool:
    """Whether a ``.txt`` file's first line looks like ``user item item ...`` (ids between single spaces)."""
    if path.suffix.lower() != ".txt":
        return False
    try:
        fields = first_line(path).split(" ")
    except DatasetError:  # empty or unreadable: not this format (reading it says why)
        return False
    return len(fields) >= 2 and all(fields) and not any(c in f for f in fields for c in ",;\t:|")


def read(path: Path) -> list[Event]:
    features = _item_attributes(path)
    placed: list[tuple[Fraction, tuple[int, str], int, str, str]] = []
    users: set[str] = set()
    for lineno, line in lines(path):
        user, *items = line.split()
        if not items:
            raise bad_line(path, lineno, "expected 'user item_1 item_2 ...' with at least one item", line)
        if user in users:
            raise bad_line(path, lineno, f"user {user!r} has a line already; each user's items go on one line", line)
        if any(len(x) > MAX_ID_CHARS for x in (user, *items)):
            raise bad_line(path, lineno, f"ids are at most {MAX_ID_CHARS} characters", line)
        users.add(user)
        n = len(items)
        # Ordered by fraction, then user (numerically where the ids are numbers), then place in the user's list.
        order = (int(user), "") if user.isdigit() else (-1, user)
        placed += [(Fraction(2 * k + 1, 2 * n), order, k, user, item) for k, item in enumerate(items)]
    placed.sort(key=lambda p: p[:3])
    return [
        Event(user, item, "click", _START + float(f) * _SPAN, item=features.get(item, {}))
        for f, _, _, user, item in placed
    ]


def _item_attributes(path: Path) -> dict[str, dict[str, str | float]]:
    """item id -> side features from ``<stem>_item2attributes.json`` beside a sequences file (``{}`` where there
    is none): one feature ``attr<id>`` per attribute, the rarest attributes first (the model reads the first few)."""
    attributes = path.with_name(f"{path.stem}_item2attributes.json")
    if not attributes.is_file():
        return {}
    try:
        table = orjson.loads(attributes.read_bytes())
    except OSError as exc:
        raise DatasetError(f"cannot read {attributes}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{attributes}: not JSON: {exc}") from None
    if not isinstance(table, dict) or not all(
        isinstance(v, list) and all(isinstance(a, int | str) for a in v) for v in table.values()
    ):
        raise DatasetError(f"{attributes}: expected an object of item id -> list of attribute ids")
    frequency = Counter(str(a) for values in table.values() for a in set(map(str, values)))
    return {
        str(item): {f"attr{a}": "1" for a in sorted(set(map(str, values)), key=lambda a: (frequency[a], a))}
        for item, values in table.items()
    }
