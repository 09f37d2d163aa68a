"""What every reader of a text dataset shares: its lines, and errors that name the file and the line."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from ..errors import DatasetError

__all__ = ["bad_line", "first_line", "lines", "number"]


def lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
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


def first_line(path: Path) -> str:
    """The file's first non-blank line, stripped."""
    try:
        with path.open("rb") as f:
            for raw in f:
                if raw.strip():
                    return raw.decode("utf-8", errors="replace").strip()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    raise DatasetError(f"{path} is empty: there are no events to read")


def bad_line(path: Path, lineno: int, reason: str, line: str) -> DatasetError:
    return DatasetError(f"{path}, line {lineno}: {reason}: {line[:80]!r}")


def number(text: str) -> float:
    """A finite float, or ValueError (float() alone accepts 'nan' and 'inf')."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value
