"""Readers that replay public interaction datasets as streams of :class:`~stream_rec.events.Event`.

DESIGN.md's prequential protocol replays events "in event-time order (stable sort by timestamp, ties in file
order)". Every reader here returns exactly that order, so the evaluator, the producer and the tests share one
definition of a dataset's stream. The data itself is never shipped (see ``../shared/data/README.md``); a user
points :func:`load` at their own download.

Formats (:data:`FORMATS`):

``movielens``
    ml-100k ``u.data`` (TAB: user item rating ts, not time-sorted); ml-1m and ml-10m ``ratings.dat``
    (``user::item::rating::ts``); ml-20m, ml-25m, ml-32m and ml-latest(-small) ``ratings.csv`` (header
    ``userId,movieId,rating,timestamp``). Each rating is a ``view`` with ``context={"rating": r}``; with the
    release's movie list beside it (``u.item``, ``movies.dat`` or ``movies.csv``), ``item={"category": <first
    genre>}``.
``taobao``
    Tianchi ``UserBehavior.csv`` (user,item,category,behavior,ts); pv/cart/fav/buy become
    view/add_to_cart/favorite/purchase and ``item={"category": category}``.
``diginetica``
    CIKM Cup 2016 ``train-item-views.csv`` (or its sample) and ``train-purchases.csv``; ``user_id`` is the
    session (``"s<session>"``) and ``ts`` the event date at midnight UTC plus ``timeframe`` ms, since the
    data holds nothing finer. ``product-categories.csv`` beside it gives ``item={"category": ...}``.
``sequences``
    One user per line, ``user item_1 item_2 ... item_n`` separated by spaces, each user's items in order and no
    times (the Amazon sets as the S3-Rec authors prepared them, e.g. ``Toys_and_Games.txt``). Each item is a
    ``click``. Users are interleaved on one shared timeline: a user's n items sit at the fractions (2k+1)/(2n),
    k = 0..n-1, of it, ordered by (fraction, user, k), so every user is active from the start to the end and each
    user's last item comes near the end. The timeline is the year 2014 (``ts`` is synthetic: only the order means
    anything). ``<name>_item2attributes.json`` beside the file (item id -> list of attribute ids) gives each item
    ``item={"attr<id>": "1", ...}``, rarest attributes first, one side feature each.
``events``
    JSON lines in the wire format of DESIGN.md, validated by :func:`~stream_rec.events.event_from_dict`.

Readers build :class:`Event` directly rather than through the wire validator: ml-100k dates from 1997, before
the wire contract's earliest accepted time, and is still a valid dataset to replay.

>>> FORMATS
('movielens', 'taobao', 'diginetica', 'sequences', 'events')
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from itertools import islice
from pathlib import Path

import orjson

from .errors import DatasetError, InvalidEvent
from .events import MAX_ID_CHARS, Event, event_from_dict

__all__ = ["FORMATS", "default_dataset", "detect_format", "iter_events", "load", "without_item_features"]

FORMATS: tuple[str, ...] = ("movielens", "taobao", "diginetica", "sequences", "events")

_FORMAT_ALIASES = {
    "ml": "movielens", "ml-100k": "movielens", "ml100k": "movielens", "u.data": "movielens",
    "userbehavior": "taobao", "tianchi": "taobao",
    "cikm16": "diginetica", "s3rec": "sequences", "jsonl": "events", "ndjson": "events", "json": "events",
}  # fmt: skip

_TAOBAO_BEHAVIOURS = {"pv": "view", "cart": "add_to_cart", "fav": "favorite", "buy": "purchase"}

# u.genre's names, used when a u.item comes without its u.genre.
_ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_DIGINETICA_VIEWS = ("sample_train-item-views.csv", "train-item-views.csv")
_ML_RATINGS = ("u.data", "ratings.dat", "ratings.csv")  # ml-100k; ml-1m, ml-10m; ml-20m and later
_ML_CSV_HEADER = "userid,movieid,rating,timestamp"


def load(path: str | Path, fmt: str = "auto", limit: int | None = None) -> list[Event]:
    """Read a dataset as a list of events in event-time order; ``limit`` keeps the first ``limit`` of them.

    ``path`` is a file, or a dataset's folder (``ml-100k/`` means its ``u.data``). ``fmt`` is one of
    :data:`FORMATS` or ``"auto"`` (decided by the file's name, then by its first line). Raises
    :class:`DatasetError` for a missing file, an unknown format or a line that cannot be parsed.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    return list(islice(iter_events(path, fmt), limit))


def without_item_features(events: Iterable[Event]) -> list[Event]:
    """The events with their item side features dropped: a dataset as one without categories or attributes.

    >>> without_item_features([Event("u", "i", "view", 1e9, "e1", item={"category": "c"})])[0].item
    {}
    """
    return [replace(event, item={}) if event.item else event for event in events]


def iter_events(path: str | Path, fmt: str = "auto") -> Iterator[Event]:
    """A dataset's events in event-time order; the whole file is read (and checked) before this returns,
    because the order needs it, so a bad file fails here rather than half-way through a replay."""
    file, name = _resolve(Path(path), fmt)
    events = _READERS[name](file)
    events.sort(key=_ts)  # list.sort is stable: ties stay in file order
    return iter(events)


def detect_format(path: str | Path) -> str:
    """The format of a dataset file or folder, from its name and then its first line."""
    return _resolve(Path(path), "auto")[1]


def default_dataset(shared_root: Path | None = None) -> Path | None:
    """The ml-100k ``u.data`` of the shared data folder, or None where it is absent.

    Looks in ``shared_root`` if given, else in ``../shared/data`` from the current directory and from the
    repository root this package sits in (so it works from a checkout whatever the working directory).
    """
    roots = (
        [shared_root]
        if shared_root is not None
        else [
            Path.cwd() / ".." / "shared" / "data",
            Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
        ]
    )
    for root in roots:
        candidate = root / "ml-100k" / "u.data"
        if candidate.is_file():
            return candidate.resolve()
    return None


# --- format resolution -------------------------------------------------------------------------------------


def _resolve(path: Path, fmt: str) -> tuple[Path, str]:
    """Map (path, fmt) to the data file to read and a canonical format name."""
    name = _FORMAT_ALIASES.get(fmt.strip().lower(), fmt.strip().lower())
    if name != "auto" and name not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)} or 'auto'")
    if not path.exists():
        raise DatasetError(
            f"dataset not found: {path} does not exist; pass the path of a downloaded dataset file or folder"
        )
    if path.is_dir():
        return _resolve_dir(path, name)
    if name == "auto":
        name = _sniff(path)
    return path, name


def _resolve_dir(folder: Path, name: str) -> tuple[Path, str]:
    candidates: list[tuple[str, Path]] = [("movielens", folder / f) for f in _ML_RATINGS]
    candidates += [("diginetica", folder / f) for f in _DIGINETICA_VIEWS]
    candidates += [("taobao", f) for f in sorted(folder.glob("UserBehavior*.csv"))]
    candidates += [("sequences", f) for f in sorted(folder.glob("*.txt")) if _is_sequences(f)]
    for fmt, file in candidates:
        if file.is_file() and name in ("auto", fmt):
            return file, fmt
    raise DatasetError(
        f"{folder} is a folder without a known dataset file ({', '.join(_ML_RATINGS)}, "
        f"{' or '.join(_DIGINETICA_VIEWS)}, "
        "UserBehavior*.csv, a sequences .txt); pass the data file itself, with fmt= if its name is unusual"
    )


def _sniff(path: Path) -> str:
    lower = path.name.lower()
    if lower in _ML_RATINGS:
        return "movielens"
    if lower.endswith((".jsonl", ".ndjson", ".json", ".jsonl.txt")):
        return "events"
    if lower.startswith("userbehavior"):
        return "taobao"
    if "item-views" in lower or "purchases" in lower:
        return "diginetica"
    first = _first_line(path)
    if first.startswith("{"):
        return "events"
    if first.lower().replace("_", "").startswith("sessionid;"):
        return "diginetica"
    tab = first.split("\t")
    if len(tab) == 4 and all(f.strip().isdigit() for f in tab):
        return "movielens"
    if len(first.split("::")) == 4 or _is_ml_csv_header(first):
        return "movielens"
    comma = first.split(",")
    if len(comma) == 5 and comma[3].strip() in _TAOBAO_BEHAVIOURS:
        return "taobao"
    if _is_sequences(path):
        return "sequences"
    raise DatasetError(
        f"cannot tell the format of {path} from its name or first line {first[:60]!r}; "
        f"pass fmt= one of {', '.join(FORMATS)}"
    )


def _first_line(path: Path) -> str:
    try:
        with path.open("rb") as f:
            for raw in f:
                if raw.strip():
                    return raw.decode("utf-8", errors="replace").strip()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    raise DatasetError(f"{path} is empty: there are no events to read")


# --- readers: each returns events in file order ------------------------------------------------------------


def _lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) for each non-blank line; read errors become DatasetError."""
    try:
        with path.open(encoding=encoding) as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if line:
                    yield lineno, line
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not {encoding} text ({exc.reason} at byte {exc.start})") from None


def _bad(path: Path, lineno: int, reason: str, line: str) -> DatasetError:
    return DatasetError(f"{path}, line {lineno}: {reason}: {line[:80]!r}")


def _number(text: str) -> float:
    """A finite float, or ValueError (float() alone accepts 'nan' and 'inf')."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _read_movielens(path: Path) -> list[Event]:
    if path.suffix.lower() == ".csv" or _is_ml_csv_header(_first_line(path)):
        return _read_movielens_csv(path)
    separator, expected = ("::", "'user::item::rating::timestamp'") if path.suffix.lower() == ".dat" else (
        None, "4 TAB-separated fields 'user item rating timestamp'"
    )  # fmt: skip
    categories = _movielens_categories(path.parent)
    events = []
    for lineno, line in _lines(path):
        fields = line.split(separator)
        if len(fields) != 4:
            raise _bad(path, lineno, f"expected {expected}", line)
        events.append(_rating(path, lineno, line, fields, categories))
    return events


def _read_movielens_csv(path: Path) -> list[Event]:
    categories = _movielens_categories(path.parent)
    events = []
    lines = _lines(path)
    header = next(lines, None)
    if header is None or not _is_ml_csv_header(header[1]):
        raise DatasetError(f"{path}: expected the header 'userId,movieId,rating,timestamp' on its first line")
    for lineno, line in lines:
        fields = line.split(",")
        if len(fields) != 4:
            raise _bad(path, lineno, "expected 4 comma-separated fields 'userId,movieId,rating,timestamp'", line)
        events.append(_rating(path, lineno, line, fields, categories))
    return events


def _is_ml_csv_header(line: str) -> bool:
    return line.replace(" ", "").lower().startswith(_ML_CSV_HEADER)


def _rating(path: Path, lineno: int, line: str, fields: list[str], categories: dict[str, str]) -> Event:
    """One MovieLens rating as a view; half-star ratings (ml-10m and later) stay floats, whole ones ints."""
    user, item, rating, ts = (f.strip() for f in fields)
    try:
        score = _number(rating)
        when = _number(ts)
    except ValueError:
        raise _bad(path, lineno, "rating and timestamp must be numbers", line) from None
    context: dict[str, str | float] = {"rating": int(score) if score.is_integer() else score}
    category = categories.get(item)
    return Event(user, item, "view", when, context=context, item={"category": category} if category else {})


def _movielens_categories(folder: Path) -> dict[str, str]:
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
        for lineno, line in _lines(path, "latin-1"):  # ml-1m is latin-1; ml-10m's utf-8 ids and genres are ASCII
            fields = line.split("::")
            if len(fields) != 3:
                raise _bad(path, lineno, "expected 'id::title::genres'", line)
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
    genres = list(_ML_GENRES)
    if (folder / "u.genre").is_file():
        for lineno, line in _lines(folder / "u.genre", "latin-1"):
            name, _, gid = line.rpartition("|")
            if not gid.isdigit():
                raise _bad(folder / "u.genre", lineno, "expected 'name|id'", line)
            genres += [""] * (int(gid) + 1 - len(genres))
            genres[int(gid)] = name
    out = {}
    for lineno, line in _lines(u_item, "latin-1"):
        fields = line.split("|")
        flags = fields[5:]
        if len(fields) < 6 or any(f not in ("0", "1") for f in flags):
            raise _bad(u_item, lineno, "expected 'id|title|date|video date|url|' then 0/1 genre flags", line)
        first = next((i for i, f in enumerate(flags) if f == "1"), None)
        if first is not None and first < len(genres):
            out[fields[0]] = genres[first]
    return out


def _read_taobao(path: Path) -> list[Event]:
    events = []
    for lineno, line in _lines(path):
        fields = line.split(",")
        if len(fields) != 5:
            raise _bad(path, lineno, "expected 5 comma-separated fields 'user,item,category,behavior,ts'", line)
        user, item, category, behaviour, ts = fields
        event = _TAOBAO_BEHAVIOURS.get(behaviour.strip())
        if event is None:
            raise _bad(path, lineno, f"behavior must be one of {', '.join(_TAOBAO_BEHAVIOURS)}", line)
        try:
            when = _number(ts)
        except ValueError:
            raise _bad(path, lineno, "timestamp must be a number of Unix seconds", line) from None
        if not (user and item):
            raise _bad(path, lineno, "user and item must not be empty", line)
        events.append(Event(user, item, event, when, item={"category": category} if category else {}))
    return events


def _read_diginetica(path: Path) -> list[Event]:
    lines = _lines(path)
    header = next(lines, None)
    if header is None:
        raise DatasetError(f"{path} is empty: there are no events to read")
    columns = [c.strip().lower().replace("_", "") for c in header[1].split(";")]
    need = ("sessionid", "itemid", "timeframe", "eventdate")
    if any(c not in columns for c in need):
        raise _bad(path, header[0], f"expected a ';'-separated header with {', '.join(need)}", header[1])
    at = {c: columns.index(c) for c in need}
    event = "purchase" if "ordernumber" in columns else "view"
    rows: list[tuple[str, str, float]] = []
    for lineno, line in lines:
        fields = line.split(";")
        if len(fields) != len(columns):
            raise _bad(path, lineno, f"expected {len(columns)} ';'-separated fields", line)
        session, item = fields[at["sessionid"]], fields[at["itemid"]]
        try:
            day = datetime.strptime(fields[at["eventdate"]], "%Y-%m-%d").replace(tzinfo=UTC)
            when = day.timestamp() + int(fields[at["timeframe"]]) / 1000.0
        except ValueError:
            raise _bad(path, lineno, "eventdate must be YYYY-MM-DD and timeframe integer ms", line) from None
        if not (session and item):
            raise _bad(path, lineno, "session and item must not be empty", line)
        rows.append((f"s{session}", item, when))
    categories = _diginetica_categories(path.parent / "product-categories.csv", {item for _, item, _ in rows})
    return [
        Event(user, item, event, when, item={"category": categories[item]} if item in categories else {})
        for user, item, when in rows
    ]


def _diginetica_categories(path: Path, wanted: set[str]) -> dict[str, str]:
    """item id -> category id for the wanted items (the full map has 184k items; keep only what is used)."""
    if not path.is_file():
        return {}
    out = {}
    for _, line in islice(_lines(path), 1, None):
        item, _, category = line.partition(";")
        if item in wanted and category:
            out[item] = category
    return out


_SEQUENCES_START = 1_388_534_400.0  # 2014-01-01 UTC: the shared timeline of a sequences file ...
_SEQUENCES_SPAN = 365 * 86_400.0  # ... one year long


def _is_sequences(path: Path) -> bool:
    """Whether a ``.txt`` file's first line looks like ``user item item ...`` (ids between single spaces)."""
    if path.suffix.lower() != ".txt":
        return False
    try:
        fields = _first_line(path).split(" ")
    except DatasetError:  # empty or unreadable: not this format (reading it says why)
        return False
    return len(fields) >= 2 and all(fields) and not any(c in f for f in fields for c in ",;\t:|")


def _read_sequences(path: Path) -> list[Event]:
    features = _item_attributes(path)
    placed: list[tuple[Fraction, tuple[int, str], int, str, str]] = []
    users: set[str] = set()
    for lineno, line in _lines(path):
        user, *items = line.split()
        if not items:
            raise _bad(path, lineno, "expected 'user item_1 item_2 ...' with at least one item", line)
        if user in users:
            raise _bad(path, lineno, f"user {user!r} has a line already; each user's items go on one line", line)
        if any(len(x) > MAX_ID_CHARS for x in (user, *items)):
            raise _bad(path, lineno, f"ids are at most {MAX_ID_CHARS} characters", line)
        users.add(user)
        n = len(items)
        # Ordered by fraction, then user (numerically where the ids are numbers), then place in the user's list.
        order = (int(user), "") if user.isdigit() else (-1, user)
        placed += [(Fraction(2 * k + 1, 2 * n), order, k, user, item) for k, item in enumerate(items)]
    placed.sort(key=lambda p: p[:3])
    return [
        Event(user, item, "click", _SEQUENCES_START + float(f) * _SEQUENCES_SPAN, item=features.get(item, {}))
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


def _read_events(path: Path) -> list[Event]:
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


def _ts(event: Event) -> float:
    return event.ts


_READERS: dict[str, Callable[[Path], list[Event]]] = {
    "movielens": _read_movielens,
    "taobao": _read_taobao,
    "diginetica": _read_diginetica,
    "sequences": _read_sequences,
    "events": _read_events,
}
