"""Readers that replay interaction datasets as streams of :class:`~stream_rec.wire.events.Event`, and a synthetic one.

DESIGN.md's prequential protocol replays events "in event-time order (stable sort by timestamp, ties in file
order)". Every reader returns exactly that order, so the evaluator, the producer and the tests share one
definition of a dataset's stream. The data itself is never shipped (see ``../shared/data/README.md``); a user
points :func:`load` at their own download or file.

Formats (:data:`FORMATS`), one module each: ``movielens`` (movielens.py), ``taobao`` (taobao.py), ``diginetica``
(diginetica.py), ``sequences`` (sequences.py: one user's items per line, as the S3-Rec authors prepared the
Amazon sets), ``events`` (jsonl.py: JSON lines in the wire format) and ``csv`` (delimited.py: any delimited file
whose header names a user, an item and a time column). synthetic.py makes a stream when no dataset is at hand.

Readers build :class:`Event` directly rather than through the wire validator where they can: ml-100k dates
from 1997, before the wire contract's earliest accepted time, and is still a valid dataset to replay.

>>> FORMATS
('movielens', 'taobao', 'diginetica', 'sequences', 'events', 'csv')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from itertools import islice
from pathlib import Path

from ..errors import DatasetError
from ..wire.events import Event
from . import delimited, diginetica, jsonl, movielens, sequences, taobao
from .text import first_line

__all__ = ["FORMATS", "default_dataset", "detect_format", "iter_events", "load", "without_item_features"]

FORMATS: tuple[str, ...] = ("movielens", "taobao", "diginetica", "sequences", "events", "csv")

_ALIASES = {
    "ml": "movielens", "ml-100k": "movielens", "ml100k": "movielens", "u.data": "movielens",
    "userbehavior": "taobao", "tianchi": "taobao", "cikm16": "diginetica", "s3rec": "sequences",
    "jsonl": "events", "ndjson": "events", "json": "events", "tsv": "csv", "delimited": "csv",
}  # fmt: skip

_READERS: dict[str, Callable[[Path], list[Event]]] = {
    "movielens": movielens.read,
    "taobao": taobao.read,
    "diginetica": diginetica.read,
    "sequences": sequences.read,
    "events": jsonl.read,
}


def load(
    path: str | Path, fmt: str = "auto", limit: int | None = None, columns: Mapping[str, str] | None = None
) -> list[Event]:
    """Read a dataset as a list of events in event-time order; ``limit`` keeps the first ``limit`` of them.

    ``path`` is a file, or a dataset's folder (``ml-100k/`` means its ``u.data``). ``fmt`` is one of
    :data:`FORMATS` or ``"auto"`` (decided by the file's name, then by its first line). ``columns`` names the
    columns of a ``csv`` file by role (``{"user": "visitorid", ...}``, the ``--columns`` flag). Raises
    :class:`DatasetError` for a missing file, an unknown format or a line that cannot be parsed.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    return list(islice(iter_events(path, fmt, columns), limit))


def without_item_features(events: Iterable[Event]) -> list[Event]:
    """The events with their item side features dropped: a dataset as one without categories or attributes.

    >>> without_item_features([Event("u", "i", "view", 1e9, "e1", item={"category": "c"})])[0].item
    {}
    """
    return [replace(event, item={}) if event.item else event for event in events]


def iter_events(path: str | Path, fmt: str = "auto", columns: Mapping[str, str] | None = None) -> Iterator[Event]:
    """A dataset's events in event-time order; the whole file is read (and checked) before this returns,
    because the order needs it, so a bad file fails here rather than half-way through a replay."""
    try:
        file, name = _resolve(Path(path), fmt)
    except DatasetError:
        if not (columns and fmt == "auto"):
            raise
        file, name = _resolve(Path(path), "csv")  # a header no reader knows, named by --columns
    if columns and name != "csv":
        raise DatasetError(f"--columns names the columns of a csv file; {file} is read as {name}")
    events = delimited.read(file, columns) if name == "csv" else _READERS[name](file)
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
            Path(__file__).resolve().parents[2] / ".." / "shared" / "data",
        ]
    )
    for root in roots:
        candidate = root / "ml-100k" / "u.data"
        if candidate.is_file():
            return candidate.resolve()
    return None


def _resolve(path: Path, fmt: str) -> tuple[Path, str]:
    """Map (path, fmt) to the data file to read and a canonical format name."""
    name = _ALIASES.get(fmt.strip().lower(), fmt.strip().lower())
    if name != "auto" and name not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; use --format with one of {', '.join(FORMATS)} or auto")
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
    candidates: list[tuple[str, Path]] = [("movielens", folder / f) for f in movielens.RATINGS]
    candidates += [("diginetica", folder / f) for f in diginetica.VIEWS]
    candidates += [("taobao", f) for f in sorted(folder.glob("UserBehavior*.csv"))]
    candidates += [("sequences", f) for f in sorted(folder.glob("*.txt")) if sequences.looks_like(f)]
    for fmt, file in candidates:
        if file.is_file() and name in ("auto", fmt):
            return file, fmt
    raise DatasetError(
        f"{folder} is a folder without a known dataset file ({', '.join(movielens.RATINGS)}, "
        f"{' or '.join(diginetica.VIEWS)}, UserBehavior*.csv, a sequences .txt); pass the data file itself, "
        "with --format if its name is unusual"
    )


def _sniff(path: Path) -> str:
    lower = path.name.lower()
    if lower in movielens.RATINGS:
        return "movielens"
    if lower.endswith((".jsonl", ".ndjson", ".json", ".jsonl.txt")):
        return "events"
    if lower.startswith("userbehavior"):
        return "taobao"
    if "item-views" in lower or "purchases" in lower:
        return "diginetica"
    first = first_line(path)
    if first.startswith("{"):
        return "events"
    if first.lower().replace("_", "").startswith("sessionid;"):
        return "diginetica"
    tab = first.split("\t")
    if len(tab) == 4 and all(f.strip().isdigit() for f in tab):
        return "movielens"
    if len(first.split("::")) == 4 or movielens.is_csv_header(first):
        return "movielens"
    comma = first.split(",")
    if len(comma) == 5 and comma[3].strip() in taobao.BEHAVIOURS:
        return "taobao"
    if sequences.looks_like(path):
        return "sequences"
    if delimited.looks_like(first):
        return "csv"
    raise DatasetError(
        f"cannot tell the format of {path} from its name or first line {first[:60]!r}; pass --format with one of "
        f"{', '.join(FORMATS)} (csv: a header naming the user, item and time columns, or --columns to name them)"
    )


def _ts(event: Event) -> float:
    return event.ts
