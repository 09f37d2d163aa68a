"""MovieLens ratings: ml-100k ``u.data`` (TAB: user item rating ts, not time-sorted); ml-1m and ml-10m
``ratings.dat`` (``user::item::rating::ts``); ml-20m, ml-25m, ml-32m and ml-latest(-small) ``ratings.csv`` (header
``userId,movieId,rating,timestamp``). Each rating is a ``view`` with ``context={"rating": r}``; with the release's
movie list beside it (``u.item``, ``movies.dat`` or ``movies.csv``), ``item={"category": <first genre>}``."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DatasetError
from ..wire.events import Event
from .text import bad_line, first_line, lines, number

__all__ = ["RATINGS", "is_csv_header", "read"]

RATINGS = ("u.data", "ratings.dat", "ratings.csv")  # ml-100k; ml-1m, ml-10m; ml-20m and later
_CSV_HEADER = "userid,movieid,rating,timestamp"

# u.genre's names, used when a u.item comes without its u.genre.
_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def read(path: Path) -> list[Event]:
    if path.suffix.lower() == ".csv" or is_csv_header(first_line(path)):
        return _read_csv(path)
    separator, expected = ("::", "'user::item::rating::timestamp'") if path.suffix.lower() == ".dat" else (
        None, "4 TAB-separated fields 'user item rating timestamp'"
    )  # fmt: skip
    categories = _categories(path.parent)
    events = []
    for lineno, line in lines(path):
        fields = line.split(separator)
        if len(fields) != 4:
            raise bad_line(path, lineno, f"expected {expected}", line)
        events.append(_rating(path, lineno, line, fields, categories))
    return events


def _read_csv(path: Path) -> list[Event]:
    categories = _categories(path.parent)
    events = []
    rows = lines(path)
    header = next(rows, None)
    if header is None or not is_csv_header(header[1]):
        raise DatasetError(f"{path}: expected the header 'userId,movieId,rating,timestamp' on its first line")
    for lineno, line in rows:
        fields = line.split(",")
        if len(fields) != 4:
            raise bad_line(path, lineno, "expected 4 comma-separated fields 'userId,movieId,rating,timestamp'", line)
        events.append(_rating(path, lineno, line, fields, categories))
    return events


def is_csv_header(line: str) -> bool:
    return line.replace(" ", "").lower().startswith(_CSV_HEADER)


def _rating(path: Path, lineno: int, line: str, fields: list[str], categories: dict[str, str]) -> Event:
    """One MovieLens rating as a view; half-star ratings (ml-10m and later) stay floats, whole ones ints."""
    user, item, rating, ts = (f.strip() for f in fields)
    try:
        score = number(rating)
        when = number(ts)
    except ValueError:
        raise bad_line(path, lineno, "rating and timestamp must be numbers", line) from None
    context: dict[str, str | float] = {"rating": int(score) if score.is_integer() else score}
    category = categories.get(item)
    return Event(user, item, "view", when, context=context, item={"category": category} if category else {})


def _categories(folder: Path) -> dict[str, str]:
    """item id -> first genre name, from the movie list beside the ratings: ml-100k's ``u.item`` (with ``u.genre``),
    ml-1m/10m's ``movies.dat`` or the later releases' ``movies.csv``; empty where there is none."""
    if (folder / "u.item").is_file():
        return _ml100k_categories(folder)
    if (folder / "movies.csv").is_file():
        path = folder / "movies.csv"
        try:
            with path.open(encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read {path}: {exc}") from None
        if not rows or [c.strip().lower() for c in rows[0][:3]] != ["movieid", "title", "genres"]:
            raise DatasetError(f"{path}: expected the header 'movieId,title,genres'")
        pairs = [(row[0], row[2]) for row in rows[1:] if len(row) >= 3]
    elif (folder / "movies.dat").is_file():
        path = folder / "movies.dat"
        pairs = []
        for lineno, line in lines(path, "latin-1"):  # ml-1m is latin-1; ml-10m's utf-8 ids and genres are ASCII
            fields = line.split("::")
            if len(fields) != 3:
                raise bad_line(path, lineno, "expected 'id::title::genres'", line)
            pairs.append((fields[0], fields[2]))
    else:
        return {}
    out = {}
    for item, genres in pairs:
        first = genres.split("|")[0].strip()
        if first and first != "(no genres listed)":
            out[item.strip()] = first
    return out


def _ml100k_categories(folder: Path) -> dict[str, str]:
    """item id -> first genre name, from u.item (latin-1) and u.genre."""
    u_item = folder / "u.item"
    genres = list(_GENRES)
    if (folder / "u.genre").is_file():
        for lineno, line in lines(folder / "u.genre", "latin-1"):
            name, _, gid = line.rpartition("|")
            if not gid.isdigit():
                raise bad_line(folder / "u.genre", lineno, "expected 'name|id'", line)
            genres += [""] * (int(gid) + 1 - len(genres))
            genres[int(gid)] = name
    out = {}
    for lineno, line in lines(u_item, "latin-1"):
        fields = line.split("|")
        flags = fields[5:]
        if len(fields) < 6 or any(f not in ("0", "1") for f in flags):
            raise bad_line(u_item, lineno, "expected 'id|title|date|video date|url|' then 0/1 genre flags", line)
        first = next((i for i, f in enumerate(flags) if f == "1"), None)
        if first is not None and first < len(genres):
            out[fields[0]] = genres[first]
    return out
