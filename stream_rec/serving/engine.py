"""The worker's recommendation engine, free of Kafka: serve first, learn beside.

Serving (:meth:`Engine.serve`, in a worker thread of the agent's) ranks a batch's accepted events with the
newest published serving snapshot (scoring.py), taken once for the whole batch so that no ranking mixes two
versions, and never waits for a gradient step. Learning (:meth:`Engine.submit`) hands the batch's examples to the
learning side it was given (side.py says what it is asked; stream_rec/learning/ has one that learns in a thread of
its own, in the worker's process or, with ``learn_in``, in a process of its own), which publishes a new snapshot
every ``refresh_every`` seconds. A user the model knows nothing about yet gets global popularity.

The learning side owns the model's checkpoints: it resumes from the newest one that loads, writes them with the
offsets learned up to, and a user it is told to forget leaves its replay buffer, its queue and every checkpoint.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..recommenders import Popularity
from ..sequences import Step, step_of
from ..settings import Settings
from ..wire.messages import embedding_message, recommendation_message
from .accepted import Accepted, Output
from .live import LiveMetrics, Recent, TopRecent, Window
from .prometheus import Exposition
from .retrieval import Indexer
from .scoring import Recommendation, Scorer
from .side import LearningSide, OpenSide, Queued

__all__ = ["Accepted", "Engine", "LiveMetrics", "Output"]

log = logging.getLogger(__name__)

INSPECTED_USERS = 10_000  # users whose last outputs the web view can show (the most recently served)


class Engine:
    """Online sequence model, served from snapshots while a trainer learns; popularity for users it cannot serve."""

    def __init__(self, settings: Settings, open_side: OpenSide) -> None:
        self.settings = settings
        self.popularity = Popularity()
        self.metrics = LiveMetrics()
        self.exposition = Exposition()  # /metrics
        self.latency = Window(also=self.exposition.latency)  # seconds from an event's arrival to its ranking's end
        self.freshness = Window(also=self.exposition.freshness)  # from an event's arrival to a snapshot learned it
        self.served = 0  # recommendations made
        self.rate = Recent(span=10.0)  # events served, for events/s now
        self.recommended = TopRecent()  # the items recommended over the last minute
        self.last_outputs: OrderedDict[str, Output] = OrderedDict()  # user -> last output, most recent last
        self.item_seen: dict[str, float] = {}  # item -> its newest event's time (kept as popularity's counts are)
        self._serving_lock = threading.Lock()  # the popularity fallback and the serving snapshot's own rows
        self._serving: Scorer | None = None  # what rankings read: replaced whole, never changed
        self.indexer = Indexer(settings.retrieval)  # a large catalogue's index, built beside serving
        self.learning: LearningSide = open_side(settings, self._publish, self.freshness)

    def _publish(self, snapshot: Scorer) -> None:
        snapshot = self.indexer.attach(snapshot)  # with its index before any ranking reads it
        self._serving = snapshot  # one reference swap: a batch holds the old one or the new one, whole

    @property
    def serving(self) -> Scorer:
        """The newest published snapshot; the first time, once the learning side has published one (a process
        starts beside the worker's own start: it is waited for only where a snapshot is needed)."""
        if self._serving is None:
            self.learning.wait_ready()
        assert self._serving is not None
        return self._serving

    @property
    def ready(self) -> bool:
        """Whether a snapshot was published (serving then never waits)."""
        return self._serving is not None

    # -- serving -----------------------------------------------------------------------------------------------

    def serve(self, batch: Sequence[Accepted], arrived: float | None = None) -> list[Output]:
        """Publishable outputs for each event, in order, from one serving snapshot; new events count towards
        popularity first. ``arrived`` (time.monotonic()) is when the batch was read, for the latency window."""
        snapshot = self.serving
        with self._serving_lock:
            self.popularity.learn_many([(a.before, step_of(a.event)) for a in batch if a.learn])
            ranked = self._rank(snapshot, [a.after for a in batch], [a.event for a in batch], [a.seen for a in batch])
        outputs = []
        for (message, embedding), a in zip(ranked, batch, strict=True):
            if message["strategy"] == "cold_start":
                self.metrics.cold_start += 1
            emb = embedding_message(a.event.user_id, embedding, message) if embedding is not None else None
            outputs.append(Output(message, emb))
        if arrived is not None:
            self.latency.extend([time.monotonic() - arrived] * len(batch))
        self._remember(batch, outputs)
        return outputs

    def _remember(self, batch: Sequence[Accepted], outputs: Sequence[Output]) -> None:
        """Score each new event as served, against the list its user was published last before it (one of this
        batch where the user has an earlier event in it: ranked from the history up to that event, by a snapshot
        that learned nothing of this batch, so it knows nothing of the events after it); then what the web view
        shows: the rate, the items recommended, each user's last output, items' newest event."""
        before: dict[str, Sequence[str]] = {}  # this batch's lists so far, by user
        recommended: list[str] = []
        last = self.last_outputs
        for a, out in zip(batch, outputs, strict=True):
            user, event = a.event.user_id, a.event
            items = [i["item_id"] for i in out.recommendation["items"]]
            if a.learn:
                self.metrics.score(event, before.get(user, a.served))
                if event.ts > self.item_seen.get(event.item_id, -math.inf):
                    self.item_seen[event.item_id] = event.ts
            before[user] = items
            recommended += items
            last[user] = out
            last.move_to_end(user)
        self.served += len(outputs)
        self.rate.add(len(batch))
        self.recommended.add(recommended)
        while len(last) > INSPECTED_USERS:
            last.popitem(last=False)

    def submit(self, batch: Sequence[Accepted], arrived: float) -> None:
        """Hand the batch's new events to the trainer (never blocks; see trainer.py)."""
        self.learning.submit(
            [Queued((a.before, step_of(a.event)), arrived, a.source, a.next_offset) for a in batch if a.learn]
        )

    def recommend(self, history: list[Step], seen: Sequence[str] = ()) -> dict[str, Any]:
        """A recommendation for a history outside the stream (the web view's)."""
        with self._serving_lock:
            return self._rank(self.serving, [history], [None], [seen])[0][0]

    def _rank(
        self, snapshot: Scorer, histories: list[list[Step]], events: Sequence[Any], seen: Sequence[Sequence[str]]
    ) -> list[tuple[dict[str, Any], list[float] | None]]:
        """Model rankings (one batched pass) where the snapshot knows the user's items, else popularity; with
        exclude_seen, a user's seen items beyond the history are ranked past and left out, as evaluate does."""
        k, exclude = self.settings.k, self.settings.model.exclude_seen
        vocab = snapshot.vocab
        known = [i for i, h in enumerate(histories) if snapshot.steps > 0 and any(vocab.index(s.item) for s in h)]
        beyond = [set(seen[i]).difference(s.item for s in h) if exclude else set() for i, h in enumerate(histories)]
        extra = max((len(beyond[i]) for i in known), default=0)
        ranked = snapshot.recommend([histories[i] for i in known], k + extra, exclude)
        recs: dict[int, Recommendation] = {}
        for i, rec in zip(known, ranked, strict=True):
            recs[i] = rec._replace(ranking=[(item, v) for item, v in rec.ranking if item not in beyond[i]][:k])
        out = []
        for i, (history, event) in enumerate(zip(histories, events, strict=True)):
            found = recs.get(i)
            if found is not None and len(found.ranking) == k:
                message = recommendation_message(event, found.ranking, "model", snapshot, found.explain)
                out.append((message, found.embedding))
            else:
                ranking = self.popularity.rank(history, k + len(beyond[i]), exclude)
                ranking = [(item, v) for item, v in ranking if item not in beyond[i]][:k]
                message = recommendation_message(event, ranking, "cold_start", snapshot, [])
                out.append((message, found.embedding if found else None))
        return out

    def item_count(self, item_id: str) -> int:
        """How often the item was seen (popularity's count: the cold-start fallback's own)."""
        with self._serving_lock:
            return self.popularity.order.counts.get(item_id, 0)

    # -- learning and its state --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start learning beside serving (the worker does; tests may step a thread's trainer themselves)."""
        self.learning.start()

    def stop(self, drain: float = 5.0) -> None:
        """Stop learning after learning what waits, for at most ``drain`` seconds (checkpoints can still be made)."""
        self.learning.stop(drain)

    def close(self) -> None:
        """Let the learning side go (its process, where it has one)."""
        self.learning.close()

    def checkpoint(self, *, replace_all: bool = False) -> Path | None:
        """Write the model with the offsets it has learned up to (see :meth:`Learning.checkpoint`)."""
        return self.learning.checkpoint(replace_all=replace_all)

    def forget(self, user_id: str) -> int:
        """Drop the user's examples from the replay buffer and the trainer's queue (the model's only records of who
        did what); return how many. The caller removes the user's sequence and writes a checkpoint with
        ``replace_all``."""
        self.last_outputs.pop(user_id, None)
        return self.learning.forget(user_id)
