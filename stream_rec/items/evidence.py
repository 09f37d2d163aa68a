"""Pure: what counting says about the next item, as features the model's head weighs (model/head.py).

Simple counting is hard to beat on sparse interaction data: sequential rules (what followed an item within a few
steps, weighted by 1/gap) and session-kNN (what users who shared recent items went on to have) often beat neural
sequence models that read the same stream once (Ludewig and Jannach, UMUAI 2018). So the model does not compete
with them; it reads their evidence as features and learns how far to trust each, beside its own scores:

- ``next``: the weight with which each item followed the user's last item within ``window`` steps anywhere in
  the stream (1/gap each time: sequential rules);
- ``next2``: the same from the user's distinct item before that one;
- ``together``: the items seen within ``window`` distinct items of each of the user's last ``QUERY`` distinct
  items, either way round (1/distance each time), the newest query item weighing most: an item-to-item form of
  session-kNN's neighbourhood, counted as events arrive;
- ``group``: the counts of the items seen with the side features of the user's newest item that has any (its
  category's popular items), where items carry them; of its first ``GROUP_KEYS`` features (a dataset reader
  puts the most specific first), the newest weighing most.

Each source offers its ``FOLLOWERS`` heaviest items. An offered item gets, for each source, ``log1p`` of its
weight there and a 1 for being offered (:data:`FEATURES`); the head scores ``features @ weights`` and adds that
to the sequence model's logit of the item. The counts live in a :class:`~stream_rec.items.transitions.Transitions`
(item keys for ``next``, :func:`~stream_rec.items.transitions.together` keys, group keys), so that they go wherever it
goes: serving snapshots, the learning process's pipe, checkpoints.

>>> from stream_rec.sequences import Step
>>> memory, vocab = Transitions(LIMIT), Vocabulary()
>>> a, b, c = (Step(x, "view", 0.0) for x in "abc")
>>> _ = vocab.observe("abc")
>>> for history, event in [([a], b), ([a, b], c), ([a], c)]:
...     record(memory, [step.item for step in history], event.item, [], window=10)
>>> offers = gather([[a]], vocab, memory, groups=False)
>>> [vocab.item(row) for row in offers.rows], [round(v, 3) for v in offers.values[1].tolist()]
(['b', 'c'], [0.916, 1.0, 0.0, 0.0, 0.916, 1.0, 0.0, 0.0])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..sequences import Step, last_distinct
from .transitions import Transitions, groups_of, newest_groups, together
from .vocab import Vocabulary

__all__ = ["FEATURES", "FOLLOWERS", "GROUP_ITEMS", "LIMIT", "QUERY", "SOURCES", "Evidence", "count", "gather", "record"]

SOURCES = ("next", "next2", "together", "group")
FEATURES = tuple(name for source in SOURCES for name in (source, f"{source}_in"))
FOLLOWERS = 50  # each source offers its heaviest items, this many
LIMIT = 100  # an item keeps the weights of this many followers under each relation (and up to 4x between prunes)
GROUP_ITEMS = 200  # ... and a group this many items: its counts are a popularity ranking, read deep
QUERY = 5  # the user's last distinct items whose neighbours ``together`` reads
GROUP_KEYS = 3  # the side features of the user's newest item whose groups ``group`` reads (the first: rarest)


@dataclass(frozen=True, slots=True)
class Evidence:
    """The offered items of a batch of histories: one entry per (history, item)."""

    batch: np.ndarray  # [N] int64, which history
    rows: np.ndarray  # [N] int64, the item's vocabulary row
    values: np.ndarray  # [N, len(FEATURES)] float32


def record(memory: Transitions, before: Sequence[str | None], item: str, groups: list[str], window: int) -> None:
    """Count one event into ``memory``: ``item`` after the items ``before`` it (the history's, oldest first; None
    for an item not to count, which still takes its place), under its group keys ``groups``."""
    for gap, other in enumerate(reversed(before[-window:]), start=1):
        if other is not None and other != item:
            memory.add(other, item, 1.0 / gap)
    distinct: dict[str | None, None] = {}
    for other in reversed(before):
        if len(distinct) == window:
            break
        distinct[other] = None
    for distance, other in enumerate(distinct, start=1):
        if other is not None and other != item:
            memory.add(together(other), item, 1.0 / distance)
            memory.add(together(item), other, 1.0 / distance)
    for key in groups:
        memory.add(key, item)


def count(
    memory: Transitions, vocab: Vocabulary, examples: Sequence[tuple[Sequence[Step], Step]], window: int, groups: bool
) -> None:
    """Count what :func:`gather` reads: each event after the steps of its history, with the items near it, and
    under its side-feature groups (its category, where ``groups``). Only items with rows are counted (a key never
    outlives its row), as the vocabulary's own strings, which the counts then share."""
    for history, event in examples:
        row = vocab.index(event.item)
        if not row:
            continue
        item: str = vocab.item(row)  # type: ignore[assignment]
        before = [vocab.item(vocab.index(step.item)) for step in history[-window:]]
        record(memory, before, item, groups_of(event) if groups else [], window)


def gather(
    histories: Sequence[Sequence[Step]],
    vocab: Vocabulary,
    memory: Transitions,
    *,
    groups: bool,
    left_out: Sequence[Step | None] | None = None,
    window: int = 10,
) -> Evidence:
    """The items the evidence offers each history (empty histories: none), those the vocabulary knows, with their
    features (:data:`FEATURES`). ``left_out`` holds, per history, the event of a replayed example (or None): what
    it added to the counts when it was learned is taken out of its item's features, as they were when it was new;
    ``window`` is the one the counts were recorded with.

    Each source's items are laid out flat (history, source, item, weight), then summed per (history, item) in
    numpy: a dict per history and item cost several times as much."""
    # Each source's items laid out flat: per history and source, a list of names and an array of weights.
    names: list[list[str]] = []
    parts: list[np.ndarray] = []
    owners: list[int] = []
    sources: list[int] = []

    def take(b: int, source: int, found: tuple[list[str], np.ndarray], scale: float = 1.0) -> None:
        if found[0]:
            names.append(found[0])
            parts.append(found[1] * scale if scale != 1.0 else found[1])
            owners.append(b)
            sources.append(source)

    taken_out: list[tuple[int, str, list[float]]] = []  # (history, item, what to take out of each source)
    for b, history in enumerate(histories):
        if not history:
            continue
        recent = last_distinct(history, max(QUERY, 2))
        take(b, 0, memory.top(history[-1].item, FOLLOWERS))
        if len(recent) > 1:
            take(b, 1, memory.top(recent[1], FOLLOWERS))
        for p, item in enumerate(recent[:QUERY]):
            take(b, 2, memory.top(together(item), FOLLOWERS), (QUERY - p) / QUERY)
        keys = newest_groups(history)[:GROUP_KEYS] if groups else []
        each = max(1, FOLLOWERS // max(len(keys), 1))  # several features (a brand, a colour) share the items
        for j, key in enumerate(keys):  # newest first, each half as much as the one before
            take(b, 3, memory.top(key, each), 0.5**j)
        event = left_out[b] if left_out is not None else None
        if event is not None:
            taken_out.append((b, event.item, _own_share(history, event, recent, window)))
    sizes = [len(found) for found in names]
    rows = np.asarray(vocab.rows_of(itertools.chain.from_iterable(names)), dtype=np.int64)
    weights = np.concatenate(parts) if parts else np.zeros(0)
    pairs = np.repeat(np.asarray(owners, dtype=np.int64), sizes) * vocab.rows + rows
    unique, inverse = np.unique(pairs, return_inverse=True)
    raw = np.zeros((len(unique), len(SOURCES)), dtype=np.float64)
    np.add.at(raw, (inverse, np.repeat(np.asarray(sources, dtype=np.int64), sizes)), weights)
    if taken_out:
        wanted = np.asarray([b * vocab.rows + vocab.index(item) for b, item, _ in taken_out], dtype=np.int64)
        at = np.searchsorted(unique, wanted).clip(max=max(len(unique) - 1, 0))
        found = (unique[at] == wanted) if len(unique) else np.zeros(len(wanted), dtype=bool)
        shares = np.asarray([share for *_, share in taken_out], dtype=np.float64)
        raw[at[found]] -= shares[found]
        raw[raw < 1e-6] = 0.0  # (what is left of a weight taken out whole is rounding)
    keep = (unique % vocab.rows != 0) & (raw > 0).any(axis=1)
    raw, unique = raw[keep], unique[keep]
    values = np.empty((len(raw), len(FEATURES)), dtype=np.float32)
    values[:, 0::2] = np.log1p(raw)
    values[:, 1::2] = raw > 0
    return Evidence(unique // vocab.rows, unique % vocab.rows, values)


def _own_share(history: Sequence[Step], event: Step, recent: list[str], window: int) -> list[float]:
    """What this example's own event added to the weights of its item in each source (:func:`record`) as the
    history reads them: to be taken out for a replayed example."""
    item = event.item
    after: dict[str, float] = {}
    for gap, step in enumerate(reversed(history[-window:]), start=1):
        if step.item != item:
            after[step.item] = after.get(step.item, 0.0) + 1.0 / gap
    distance = {other: d for d, other in enumerate(last_distinct(history, window), start=1)}
    mine = set(groups_of(event))
    return [
        after.get(history[-1].item, 0.0),
        after.get(recent[1], 0.0) if len(recent) > 1 else 0.0,
        # (an item further back than the window's distinct items was never counted with it)
        sum((QUERY - p) / QUERY / distance[q] for p, q in enumerate(recent[:QUERY]) if q != item and q in distance),
        sum(0.5**j for j, key in enumerate(newest_groups(history)[:GROUP_KEYS]) if key in mine),
    ]
