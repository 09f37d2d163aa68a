"""Pure: turn users' histories into the tensors the sequence model reads.

Histories are right-padded to the batch's longest (at most ``max_len``) and carry their lengths, so that an
encoder can skip the padding (packed sequences) and a history's vector never depends on its batch. Context is
hashed into a fixed number of buckets (a stable hash, so every process agrees) and needs no vocabulary.
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..sequences import Step
from ..wire.events import EVENT_TYPES
from .vocab import Vocabulary

__all__ = [
    "CONTEXT_BUCKETS",
    "EVENT_INDEX",
    "NO_REPEATS",
    "Batch",
    "Repeats",
    "encode_histories",
    "encode_repeats",
    "repeats_of",
]

EVENT_INDEX = {name: i + 1 for i, name in enumerate(EVENT_TYPES)}  # 0 = padding
CONTEXT_BUCKETS = 4096
MAX_CONTEXT_TOKENS = 16
MAX_ITEM_TOKENS = 4
_GAP_SCALE = 1.0 / math.log1p(30 * 86_400.0)  # a 30-day gap maps to 1.0


@dataclass(frozen=True, slots=True)
class Batch:
    items: torch.Tensor  # [B, L] long, vocabulary rows, 0 = padding or unknown
    events: torch.Tensor  # [B, L] long, EVENT_INDEX, 0 = padding
    gaps: torch.Tensor  # [B, L] float, log-scaled time since the step before
    context: torch.Tensor  # [B, T] long, hashed tokens of the newest step's context, 0 = padding
    item_features: torch.Tensor  # [B, L, F] long, hashed tokens of each step's item side features, 0 = padding
    lengths: torch.Tensor  # [B] long, steps in each history (at least 1: an empty history is one padding step)

    def real_steps(self) -> np.ndarray:
        """``[B, L]`` bool: where the batch holds a history's step, not right padding."""
        return np.arange(self.items.shape[1]) < self.lengths.numpy()[:, None]


def _bucket(token: str) -> int:
    return 1 + zlib.crc32(token.encode()) % (CONTEXT_BUCKETS - 1)


def context_tokens(step: Step) -> list[int]:
    """Hashed tokens for the context in which the next item is asked for: the newest step's context and time.
    Cached by their contents and types (True, 1 and 1.0 are equal keys but different text): hashing them anew was
    about a tenth of encoding a batch of 256 histories (cProfile)."""
    t = time.gmtime(step.ts)
    context = tuple((key, type(value), value) for key, value in step.context.items()) if step.context else ()
    try:
        return list(_context_tokens(t.tm_hour, t.tm_wday, step.event, context))
    except TypeError:  # a value that cannot be hashed (a list): hashed as text all the same, uncached
        return list(_context_tokens.__wrapped__(t.tm_hour, t.tm_wday, step.event, context))


@functools.lru_cache(maxsize=1 << 16)
def _context_tokens(hour: int, wday: int, event: str, context: tuple[tuple[str, type, object], ...]) -> tuple[int, ...]:
    tokens = [_bucket(f"hour={hour}"), _bucket(f"dow={wday}"), _bucket(f"event={event}")]
    for key, _, value in context:
        if isinstance(value, float) and not value.is_integer():
            value = round(value, 1)  # numeric values become coarse buckets
        tokens.append(_bucket(f"{key}={value}"))
        if len(tokens) >= MAX_CONTEXT_TOKENS:
            break
    return tuple(tokens)


def item_tokens(step: Step) -> tuple[int, ...]:
    """Hashed tokens of a step's item side features (``category=shoes``), padded with 0 to
    :data:`MAX_ITEM_TOKENS`. Cached by the features' contents: a catalogue repeats them on every step."""
    if not step.features:
        return _NO_ITEM_TOKENS
    return _item_tokens(tuple(step.features.items())[:MAX_ITEM_TOKENS])


_NO_ITEM_TOKENS = (0,) * MAX_ITEM_TOKENS


@functools.lru_cache(maxsize=1 << 16)
def _item_tokens(features: tuple[tuple[str, str | float], ...]) -> tuple[int, ...]:
    tokens = [_bucket(f"item.{key}={value}") for key, value in features]
    return (*tokens, *_NO_ITEM_TOKENS[len(tokens) :])


def encode_histories(histories: Sequence[Sequence[Step]], vocab: Vocabulary, max_len: int) -> Batch:
    """Tensors for a batch of histories (oldest step first): one flat pass over all steps, then numpy scatters
    them into right-padded ``[B, L]`` arrays (a Python loop per step and per history costs more than the model).

    The length ``L`` is the longest history's, capped at ``max_len``: a batch of short histories costs less.
    """
    b = len(histories)
    length = min(max_len, max((len(h) for h in histories), default=0)) or 1
    recents = [h[-length:] for h in histories]
    flat = [s for recent in recents for s in recent]
    lengths = np.fromiter((len(r) for r in recents), dtype=np.int64, count=b)
    row, col = _positions(lengths)
    items = np.zeros((b, length), dtype=np.int64)
    items[row, col] = vocab.rows_of([s.item for s in flat])
    events = np.zeros((b, length), dtype=np.int64)
    events[row, col] = [EVENT_INDEX[s.event] for s in flat]
    ts = np.fromiter((s.ts for s in flat), dtype=np.float64, count=len(flat))
    gap = np.zeros(len(flat))
    gap[1:] = np.log1p(np.maximum(np.diff(ts), 0.0)) * _GAP_SCALE
    gap[col == 0] = 0.0  # a history's first step has no step before it
    gaps = np.zeros((b, length), dtype=np.float32)
    gaps[row, col] = gap
    item_features = np.zeros((b, length, MAX_ITEM_TOKENS), dtype=np.int64)
    if any(s.features for s in flat):
        # (item_tokens inlined: a call per step costs as much as the lookup)
        item_features[row, col] = [
            _item_tokens(tuple(f.items())[:MAX_ITEM_TOKENS]) if (f := s.features) else _NO_ITEM_TOKENS for s in flat
        ]
    context = np.zeros((b, MAX_CONTEXT_TOKENS), dtype=np.int64)
    for i, recent in enumerate(recents):
        if recent:
            tokens = context_tokens(recent[-1])
            context[i, : len(tokens)] = tokens
    t = torch.from_numpy
    return Batch(t(items), t(events), t(gaps), t(context), t(item_features), t(np.maximum(lengths, 1)))


def _positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For steps laid out history after history, each step's history (row) and place in it (column)."""
    row = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    return row, np.arange(len(row)) - starts[row]


@dataclass(frozen=True, slots=True)
class Repeats:
    """The distinct known items of each history, for the repeat-consumption score; one entry per (history, item)."""

    batch: torch.Tensor  # [N] long, which history
    rows: torch.Tensor  # [N] long, the item's vocabulary row
    positions: torch.Tensor  # [N] long, recency of its newest occurrence (0 = the last step)
    events: torch.Tensor  # [N] long, EVENT_INDEX at that occurrence
    counts: torch.Tensor  # [N] long, occurrences in the history read


NO_REPEATS = Repeats(*(torch.zeros(0, dtype=torch.long) for _ in range(5)))  # where the repeat mode is off


def encode_repeats(histories: Sequence[Sequence[Step]], vocab: Vocabulary, max_len: int) -> Repeats:
    """The last ``max_len`` steps of each history as distinct items, each history's newest occurrence first."""
    recents = [h[-max_len:] for h in histories]
    flat = [s for recent in recents for s in recent]
    lengths = np.fromiter((len(r) for r in recents), dtype=np.int64, count=len(recents))
    batch, col = _positions(lengths)
    position = lengths[batch] - 1 - col  # recency: 0 = the last step
    rows = np.asarray(vocab.rows_of([s.item for s in flat]), dtype=np.int64)
    events = np.fromiter((EVENT_INDEX[s.event] for s in flat), dtype=np.int64, count=len(flat))
    return _distinct(batch, position, rows, events)


def repeats_of(batch: Batch) -> Repeats:
    """:func:`encode_repeats` of the histories ``batch`` encodes (its ``max_len`` alike), from its tensors: no
    step is looked up again."""
    items, events, lengths = batch.items.numpy(), batch.events.numpy(), batch.lengths.numpy()
    history, col = np.nonzero(batch.real_steps())  # history after history, oldest first
    return _distinct(history, lengths[history] - 1 - col, items[history, col], events[history, col])


def _distinct(batch: np.ndarray, position: np.ndarray, rows: np.ndarray, events: np.ndarray) -> Repeats:
    """One entry per (history, known item) of the steps given, at its newest occurrence, newest first."""
    known = rows != 0
    batch, position, rows, events = batch[known], position[known], rows[known], events[known]
    # Group the steps by (history, item), newest first within a group; each group becomes one entry.
    key = batch * (int(rows.max(initial=0)) + 1) + rows
    order = np.lexsort((position, key))
    _, first, counts = np.unique(key[order], return_index=True, return_counts=True)
    entry = order[first]
    newest_first = np.lexsort((position[entry], batch[entry]))  # per history, newest occurrence first
    entry, counts = entry[newest_first], counts[newest_first]
    t = torch.from_numpy
    return Repeats(t(batch[entry]), t(rows[entry]), t(position[entry]), t(events[entry]), t(counts.astype(np.int64)))
