"""Pure: turn users' histories into the tensors the sequence model reads.

Histories are right-padded to the batch's longest (at most ``max_len``) and carry their lengths, so that an
encoder can skip the padding (packed sequences) and a history's vector never depends on its batch. Context is
hashed into a fixed number of buckets (a stable hash, so every process agrees) and needs no vocabulary.
"""

from __future__ import annotations

import itertools
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .events import EVENT_TYPES
from .sequences import Step
from .vocab import Vocabulary

__all__ = ["CONTEXT_BUCKETS", "EVENT_INDEX", "Batch", "Repeats", "encode_histories", "encode_repeats"]

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


def _bucket(token: str) -> int:
    return 1 + zlib.crc32(token.encode()) % (CONTEXT_BUCKETS - 1)


def context_tokens(step: Step) -> list[int]:
    """Hashed tokens for the context in which the next item is asked for: the newest step's context and time."""
    t = time.gmtime(step.ts)
    tokens = [_bucket(f"hour={t.tm_hour}"), _bucket(f"dow={t.tm_wday}"), _bucket(f"event={step.event}")]
    for key, value in (step.context or {}).items():
        if isinstance(value, float) and not value.is_integer():
            value = round(value, 1)  # numeric values become coarse buckets
        tokens.append(_bucket(f"{key}={value}"))
        if len(tokens) >= MAX_CONTEXT_TOKENS:
            break
    return tokens


def item_tokens(step: Step) -> list[int]:
    """Hashed tokens of a step's item side features (``category=shoes``), at most :data:`MAX_ITEM_TOKENS`."""
    if not step.features:
        return []
    return [_bucket(f"item.{key}={value}") for key, value in list(step.features.items())[:MAX_ITEM_TOKENS]]


def encode_histories(histories: Sequence[Sequence[Step]], vocab: Vocabulary, max_len: int) -> Batch:
    """Tensors for a batch of histories (oldest step first); built as lists, then one tensor each (fast).

    The length ``L`` is the longest history's, capped at ``max_len``: a batch of short histories costs less.
    """
    items: list[list[int]] = []
    events: list[list[int]] = []
    gaps: list[list[float]] = []
    context: list[list[int]] = []
    item_features: list[list[list[int]]] = []
    lengths: list[int] = []
    no_features = [0] * MAX_ITEM_TOKENS
    index = vocab.rows_of
    length = min(max_len, max((len(h) for h in histories), default=0)) or 1
    for history in histories:
        recent = history[-length:]
        pad = [0] * (length - len(recent))
        items.append(index([s.item for s in recent]) + pad)
        events.append([EVENT_INDEX[s.event] for s in recent] + pad)
        times = [s.ts for s in recent]
        gaps.append(
            [0.0] * min(1, len(recent))
            + [math.log1p(max(b - a, 0.0)) * _GAP_SCALE for a, b in itertools.pairwise(times)]
            + [0.0] * len(pad)
        )
        lengths.append(max(1, len(recent)))
        steps = [
            (t := item_tokens(s)) + [0] * (MAX_ITEM_TOKENS - len(t)) if s.features else no_features for s in recent
        ]
        item_features.append(steps + [no_features] * len(pad))
        tokens = context_tokens(recent[-1]) if recent else []
        context.append(tokens + [0] * (MAX_CONTEXT_TOKENS - len(tokens)))
    return Batch(
        torch.tensor(items, dtype=torch.long).view(len(histories), length),
        torch.tensor(events, dtype=torch.long).view(len(histories), length),
        torch.tensor(gaps, dtype=torch.float32).view(len(histories), length),
        torch.tensor(context, dtype=torch.long).view(len(histories), MAX_CONTEXT_TOKENS),
        torch.tensor(item_features, dtype=torch.long).view(len(histories), length, MAX_ITEM_TOKENS),
        torch.tensor(lengths, dtype=torch.long),
    )


@dataclass(frozen=True, slots=True)
class Repeats:
    """The distinct known items of each history, for the repeat-consumption score; one entry per (history, item)."""

    batch: torch.Tensor  # [N] long, which history
    rows: torch.Tensor  # [N] long, the item's vocabulary row
    positions: torch.Tensor  # [N] long, recency of its newest occurrence (0 = the last step)
    events: torch.Tensor  # [N] long, EVENT_INDEX at that occurrence
    counts: torch.Tensor  # [N] long, occurrences in the history read


def encode_repeats(histories: Sequence[Sequence[Step]], vocab: Vocabulary, max_len: int) -> Repeats:
    """The last ``max_len`` steps of each history as distinct items, newest occurrence first."""
    batch: list[int] = []
    rows: list[int] = []
    positions: list[int] = []
    events: list[int] = []
    counts: list[int] = []
    for b, history in enumerate(histories):
        recent = history[-max_len:]
        seen: dict[int, int] = {}  # row -> its entry's index
        rows_of = vocab.rows_of([s.item for s in recent])
        for pos, (step, row) in enumerate(zip(reversed(recent), reversed(rows_of), strict=True)):
            if not row:
                continue
            at = seen.get(row)
            if at is None:
                seen[row] = len(rows)
                batch.append(b)
                rows.append(row)
                positions.append(pos)
                events.append(EVENT_INDEX[step.event])
                counts.append(1)
            else:
                counts[at] += 1
    t = torch.tensor
    return Repeats(t(batch, dtype=torch.long), t(rows, dtype=torch.long), t(positions, dtype=torch.long),
                   t(events, dtype=torch.long), t(counts, dtype=torch.long))  # fmt: skip
