"""The learning path: a thread that learns from a bounded queue of examples and publishes serving snapshots.

The serving path never waits for it: it hands the examples of each batch over (:meth:`Trainer.submit`, which
never blocks) and ranks with the newest published snapshot. Once ``gather`` examples wait (the learner's batch),
or the oldest has waited half a refresh, the trainer takes up to ``batch`` of them from the queue and learns from
them (under the learner's lock, which checkpoints take too). Every ``refresh_every`` seconds (after something was
learned) it publishes a new snapshot by handing it to ``publish``, which swaps it in whole: the serving path reads
either the old one or the new one, never half of one.

When the queue is full, the oldest examples waiting give way to new ones; every dropped example is counted
(``dropped``) and logged once per ``LOG_EVERY`` seconds, never silently. Model freshness is measured per example:
from its arrival until a published snapshot has learned from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..serving.live import Window
from ..serving.scoring import Scorer
from ..serving.side import Durations, Queued
from .learner import OnlineLearner

__all__ = ["Trainer"]

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between two reports of dropped examples


class Trainer:
    """Learns ``learner`` from submitted examples in a thread of its own; see the module's docstring."""

    def __init__(
        self,
        learner: OnlineLearner,
        lock: threading.Lock,
        publish: Callable[[Scorer], None],
        *,
        queue_size: int = 10_000,
        batch: int = 256,
        gather: int = 1,
        refresh_every: float = 1.0,
        offsets: dict[str, int] | None = None,
        freshness: Durations | None = None,
    ) -> None:
        self.learner, self.lock, self.publish = learner, lock, publish
        self.queue_size, self.batch, self.refresh_every = queue_size, batch, refresh_every
        # The thread learns once ``gather`` examples wait, or the oldest has waited half a refresh: a step costs
        # much the same for a few examples as for the learner's batch, so stepping on every few arrivals spent
        # several times the CPU per example (and took it from serving) for no fresher snapshot.
        self.gather = gather
        self._draining = False
        self.dropped = 0  # examples that gave way to newer ones, ever
        # Seconds from an example's arrival until a published snapshot learned it.
        self.freshness = freshness if freshness is not None else Window()
        self._queue: deque[Queued] = deque()
        self._learned_offsets: dict[str, int] = dict(offsets or {})
        self._unpublished: list[float] = []  # arrival times of examples learned since the last publication
        self._last_publish = time.monotonic()
        self._dropped_unlogged = 0
        self._last_log = time.monotonic()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False

    # -- the serving side --------------------------------------------------------------------------------------

    def submit(self, items: Sequence[Queued]) -> None:
        """Queue examples to learn; the oldest waiting give way when the queue is full (counted)."""
        with self._cond:
            self._queue.extend(items)
            over = len(self._queue) - self.queue_size
            for _ in range(max(0, over)):
                gone = self._queue.popleft()
                self._note_offset(gone)
            if over > 0:
                self.dropped += over
                self._dropped_unlogged += over
            self._cond.notify()
        self._maybe_log()

    def forget(self, user: str) -> int:
        """Drop the waiting examples of ``user``; return how many."""
        with self._cond:
            kept = deque(q for q in self._queue if q.example[1].user != user)
            dropped = len(self._queue) - len(kept)
            self._queue = kept
        return dropped

    def learned_offsets(self) -> dict[str, int]:
        """Per ``topic:partition``, the offset after the last event learned from (or given way)."""
        with self._cond:
            return dict(self._learned_offsets)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stream-rec-trainer", daemon=True)
            self._thread.start()

    def stop(self, drain: float = 0.0) -> None:
        """Stop the thread, after learning what waits for at most ``drain`` seconds; publish what was learned."""
        deadline = time.monotonic() + drain
        self._draining = True
        with self._cond:
            self._cond.notify()
        while drain and self.waiting and time.monotonic() < deadline and self._thread is not None:
            time.sleep(0.05)
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        left = self.waiting
        if left:
            log.warning("stopped with %d examples not learned", left)
        self._publish()

    def step(self) -> bool:
        """Learn one batch of what waits (at most ``batch`` examples) and publish if due; whether any was learned.
        The thread calls this in a loop; a caller without the thread (a test) may too."""
        with self._cond:
            taken = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            self._busy = bool(taken)
        if taken:
            with self.lock:
                self.learner.learn([q.example for q in taken])
            with self._cond:
                for q in taken:
                    self._note_offset(q)
                self._busy = False
            self._unpublished.extend(q.arrived for q in taken)
        if self._unpublished and time.monotonic() - self._last_publish >= self.refresh_every:
            self._publish()
        return bool(taken)

    def idle(self) -> bool:
        """Nothing waits and nothing is being learned."""
        with self._cond:
            return not self._queue and not self._busy

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self._until_ready()
            if not wait and self.step():
                continue
            if self._unpublished and time.monotonic() - self._last_publish >= self.refresh_every:
                self._publish()
            with self._cond:
                if not self._stop.is_set() and self._until_ready():
                    self._cond.wait(timeout=min(wait or self.refresh_every, 0.1))
            self._maybe_log()

    def _until_ready(self) -> float:
        """Seconds until the thread should learn what waits: 0 now; the refresh interval while nothing waits."""
        with self._cond:
            if not self._queue:
                return self.refresh_every
            if len(self._queue) >= self.gather or self._draining:
                return 0.0
            return max(0.0, self._queue[0].arrived + self.refresh_every / 2 - time.monotonic())

    def _publish(self) -> None:
        if not self._unpublished:
            return
        with self.lock:
            snapshot = self.learner.snapshot()
        snapshot.prepare()  # its item tables made here, not on the serving path
        now = time.monotonic()
        self.freshness.extend(now - arrived for arrived in self._unpublished)  # first: a process adds its hand-over
        self._unpublished.clear()
        self._last_publish = now
        self.publish(snapshot)

    def _note_offset(self, q: Queued) -> None:
        if q.source:
            self._learned_offsets[q.source] = max(self._learned_offsets.get(q.source, 0), q.next_offset)

    def _maybe_log(self) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._dropped_unlogged or now - self._last_log < LOG_EVERY:
                return
            n, since, self._dropped_unlogged, self._last_log = self._dropped_unlogged, now - self._last_log, 0, now
        log.warning(
            "learn_dropped: %d examples gave way unlearned in the last %.0f s (%d in all): the trainer is behind",
            n, since, self.dropped,
        )  # fmt: skip
