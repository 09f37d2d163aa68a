"""Prequential (test-then-train) evaluation: replay a stream through recommenders, scoring before learning.

This is DESIGN.md's one accuracy protocol, run offline (``stream-rec evaluate``), with no Kafka:

1. Events come in event-time order (:func:`stream_rec.datasets.load` gives exactly that order).
2. They are taken ``evaluate_batch`` at a time (a setting, as the worker's ``batch_size``). Each event's history
   is its user's events before it (kept here, the last ``seq_len`` of them, as the worker's table keeps them).
   Every event of a user with at least one earlier event is scored against the top-k each recommender gives
   *from its state before the chunk*; an item never seen before in the stream is a miss whatever was ranked.
3. Only then does each recommender learn from the chunk's (history, event) examples.

Beside the figures over every scored event, the *last-event view* (``last_HR@k``, ``last_NDCG@k``): each user's
last event of the stream alone, ranked in the same pass with every earlier item of the user's left out, whatever
the ``exclude_seen`` setting says. That is the streaming counterpart of the leave-one-out, full-ranking protocol of
published tables (each user's last item held out, every item ranked, the user's earlier items masked), with two
differences: the model has learned everything before the event once, in stream order, instead of several epochs
over everything but the held-out items; and it has seen the other users' events up to then, their last ones included.

Chunking is what lets a sequence model rank and learn in batches, as the worker does; with ``evaluate_batch=1`` this
is the strict event-by-event protocol. The protocol's knobs are the settings the worker reads (``k``, ``seq_len``,
``model.exclude_seen``, ``evaluate_batch``), so that evaluate measures what the worker would serve. Every
recommender sees the same chunks, histories and targets, and each one's throughput counts only the time spent in
its own ``rank_many`` and ``learn_many``.

>>> from stream_rec.wire.events import Event
>>> events = [Event(u, item, "view", float(t)) for t, (u, item) in enumerate(
...     [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u3", "b")])]
>>> report = evaluate(events, {"markov": make_recommender("markov")}, Settings(evaluate_batch=1), ks=(1,))
>>> report["events"], report["scored"], report["models"]["markov"]["HR@1"]
(6, 3, 0.6666666666666666)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..learning.recommender import SequenceRecommender
from ..metrics import MetricAccumulator, rolling_mean
from ..recommenders.base import Recommender
from ..recommenders.category import CategoryPopularity
from ..recommenders.decayed import DecayedPopularity
from ..recommenders.knn import SKNN, VSKNN, SequentialRules
from ..recommenders.markov import Markov, RecentMarkov
from ..recommenders.own import OwnFirst
from ..recommenders.popularity import Popularity
from ..recommenders.river_mf import RiverMF
from ..recommenders.rule import EvidenceRule
from ..sequences import Example, Step, remember_seen, step_of
from ..settings import ModelSettings, Settings
from ..wire.events import Event

__all__ = ["RECOMMENDERS", "evaluate", "make_recommender"]

RECOMMENDERS: tuple[str, ...] = (
    "popularity", "decayed-popularity", "markov", "recent-markov", "sknn", "vsknn", "sr", "recent-sknn",
    "recent-vsknn", "recent-sr", "category", "recent-category", "rule", "river-biasedmf", "river-funkmf", "lstm",
    "gru", "transformer", "graph",
)  # fmt: skip

Progress = Callable[[int, int], None]  # (events done, events in all)


def make_recommender(name: str, model_settings: ModelSettings | None = None, *, refresh_events: int = 0) -> Recommender:
    """A fresh recommender by name (one of :data:`RECOMMENDERS`); ``lstm``, ``gru``, ``transformer`` and ``graph``
    are the sequence model with that encoder and ``model_settings`` otherwise, ranking with a snapshot taken again
    once ``refresh_events`` events were learned since the last (0: after every chunk)."""
    if name == "popularity":
        return Popularity()
    if name == "decayed-popularity":
        return DecayedPopularity()
    if name == "markov":
        return Markov()
    if name == "recent-markov":
        return RecentMarkov()
    filled: dict[str, Callable[[], Recommender]] = {  # the evidence-then-popularity methods (PopularityFill)
        "sknn": SKNN, "vsknn": VSKNN, "sr": SequentialRules, "category": CategoryPopularity,
    }  # fmt: skip
    if name in filled:
        return filled[name]()
    if name.startswith("recent-") and name.removeprefix("recent-") in filled:
        return OwnFirst(filled[name.removeprefix("recent-")]())
    if name == "rule":
        s = model_settings or ModelSettings()
        return EvidenceRule(s.evidence_window, s.groups)
    if name in ("river-biasedmf", "river-funkmf"):
        seed = (model_settings or ModelSettings()).seed
        # FunkMF has no biases to carry it early on: it needs a larger step (measured on MovieLens 100K).
        return RiverMF("biased", seed=seed) if name == "river-biasedmf" else RiverMF("funk", lr=0.05, seed=seed)
    if name in ("lstm", "gru", "transformer", "graph"):
        settings = (model_settings or ModelSettings()).replaced(encoder=name)
        return SequenceRecommender(settings, refresh_events=refresh_events)
    raise ValueError(f"unknown recommender {name!r}; use one of {', '.join(RECOMMENDERS)}")


def evaluate(
    events: Sequence[Event],
    recommenders: Mapping[str, Recommender],
    settings: Settings | None = None,
    *,
    ks: Sequence[int] | None = None,
    progress: Progress | None = None,
    dataset: str | None = None,
    window: int | None = None,
    score_from: int = 0,
) -> dict[str, Any]:
    """Replay ``events`` (in event-time order) through each recommender, test first, then train; score each user's
    last event apart as well (the last-event view, module docstring). ``settings`` (default: as configured) give
    the protocol, ``ks`` the list lengths (default ``settings.k``).

    Returns ``{"dataset", "events", "scored", "ks", "exclude_seen", "batch", "models": {name: {"HR@k", "NDCG@k",
    "MRR@k", "n", "last_HR@k", "last_NDCG@k", "last_n", "events_per_s", "seconds", "by_event": {...},
    "by_history": {...}}}, "rolling": {"k", "window",
    "at": [scored events so far], "models": {name: [HR@k over the last ``window`` scored events]}}}``, JSON-ready.
    ``window`` defaults to a twentieth of the scored events (at least 50). Events before index ``score_from`` are
    learned from but not scored (a warm-up: ``stream-rec tune`` scores settings on the part of a stream after the
    part they were searched on).
    """
    settings = settings if settings is not None else Settings()
    ks = ks or (settings.k,)
    batch, seq_len, exclude_seen = settings.evaluate_batch, settings.seq_len, settings.model.exclude_seen
    accumulators = {name: MetricAccumulator(ks) for name in recommenders}
    k = max(ks)
    seconds = dict.fromkeys(recommenders, 0.0)
    histories: dict[str, list[Step]] = {}  # user -> last seq_len steps, oldest first
    earlier: dict[str, int] = {}  # user -> events so far (not truncated), for the history-length buckets
    known: set[str] = set()  # items seen so far in the stream
    # With exclude_seen, every item the user saw is excluded (the last SEEN_KEPT distinct ones, as the worker keeps
    # them), not only those in the truncated history.
    seen: dict[str, list[str]] = {}
    last_of = {event.user_id: i for i, event in enumerate(events)}  # each user's last event
    owned: dict[str, set[str]] = {}  # user -> every item so far, for the last-event view's mask
    last = {name: MetricAccumulator(ks) for name in recommenders}
    scored = 0
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        examples: list[Example] = []
        # (index into examples, target or None for a first-seen item, event type, the user's earlier events)
        to_score: list[tuple[int, str | None, str, int]] = []
        excluded: list[set[str]] = []  # with exclude_seen: the user's items before each scored event
        extra = 0  # most of those that fell out of a truncated history: rank that many more, filter here
        # The last-event view: (index into to_score, the user's earlier items); ranked apart unless exclude_seen.
        to_score_last: list[tuple[int, set[str]]] = []
        extra_last = 0
        for i, event in enumerate(chunk, start):
            history = histories.get(event.user_id, [])
            n = earlier.get(event.user_id, 0)
            if n and i >= score_from:
                target = event.item_id if event.item_id in known else None
                if last_of[event.user_id] == i:
                    mine = owned[event.user_id]
                    to_score_last.append((len(to_score), mine))
                    extra_last = max(extra_last, len(mine - {s.item for s in history}))
                to_score.append((len(examples), target, event.event, n))
                if exclude_seen:
                    user_seen = set(seen[event.user_id])
                    excluded.append(user_seen)
                    extra = max(extra, len(user_seen - {s.item for s in history}))
            step = step_of(event)
            examples.append((history, step))
            # A new list each time: the example keeps the history as it was before this event.
            histories[event.user_id] = [*history[-(seq_len - 1) :], step] if seq_len > 1 else [step]
            earlier[event.user_id] = n + 1
            known.add(event.item_id)
            if last_of[event.user_id] != i:  # (no later event of the user's needs this one masked)
                owned.setdefault(event.user_id, set()).add(event.item_id)
            if exclude_seen:
                seen[event.user_id] = remember_seen(seen.get(event.user_id, []), event.item_id)
        to_rank = [examples[i][0] for i, *_ in to_score]
        for name, recommender in recommenders.items():
            began = time.perf_counter()
            rankings = recommender.rank_many(to_rank, k + extra, exclude_seen) if to_rank else []
            seconds[name] += time.perf_counter() - began
            if exclude_seen or not to_score_last:
                last_rankings = [rankings[j] for j, _ in to_score_last]
            else:  # ranked again, with the user's own items left out
                last_rankings = recommender.rank_many([to_rank[j] for j, _ in to_score_last], k + extra_last, True)
            began = time.perf_counter()
            recommender.learn_many(examples)
            seconds[name] += time.perf_counter() - began
            accumulator = accumulators[name]
            for j, (ranking, (_, target, kind, n)) in enumerate(zip(rankings, to_score, strict=True)):
                items = [item for item, _ in ranking]
                if exclude_seen:
                    items = [item for item in items if item not in excluded[j]][:k]
                accumulator.add(items, target, kind, n)
            for (j, mine), ranking in zip(to_score_last, last_rankings, strict=True):
                _, target, kind, n = to_score[j]
                last[name].add([item for item, _ in ranking if item not in mine][:k], target, kind, n)
        scored += len(to_score)
        if progress is not None:
            progress(start + len(chunk), len(events))
    window = window or max(50, scored // 20)
    at: list[int] = []
    curves = {}
    for name, accumulator in accumulators.items():
        at, curves[name] = rolling_mean(accumulator.hits, window)
    return {
        "dataset": dataset,
        "events": len(events),
        "scored": scored,
        "ks": sorted(set(ks)),
        "exclude_seen": exclude_seen,
        "batch": batch,
        "models": {
            name: {
                **accumulators[name].summary(),
                **_last_view(last[name]),
                "events_per_s": round(len(events) / seconds[name], 1) if seconds[name] > 0 else None,
                "seconds": round(seconds[name], 3),
            }
            for name in recommenders
        },
        "rolling": {
            "k": k,
            "window": window,
            "at": at,
            "models": {n: [round(v, 5) for v in c] for n, c in curves.items()},
        },
    }


def _last_view(accumulator: MetricAccumulator) -> dict[str, float | int]:
    """The last-event view's figures: ``last_HR@k`` and ``last_NDCG@k`` at each k, and ``last_n``."""
    means = accumulator.overall.means()
    out: dict[str, float | int] = {f"last_{key}": value for key, value in means.items() if not key.startswith("MRR")}
    out["last_n"] = accumulator.n
    return out
