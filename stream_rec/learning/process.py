"""Learning in a process of its own (``learn_in = "process"``; the default is a thread).

In one process, a trainer thread's Python (history encoding, transition offers, snapshots, checkpoint packing)
holds the interpreter's lock that serving needs between its tensor operations. :class:`LearningProcess` runs a
:class:`~stream_rec.learning.local.Learning` in a child process instead, behind the same methods, over one pipe:

- examples go to the child in the order they were submitted, from a thread of their own, so :meth:`submit` never
  blocks; where the child falls behind by more than ``learn_queue`` examples the oldest give way, counted;
- every serving snapshot the child publishes comes back as raw arrays (the weights and the prepared item tables)
  and what changed in the vocabulary and the transition counts since the last one, and is swapped in whole;
- forget, checkpoint and stop are requests that wait for the child's answer, in the order of the examples before
  them; the child writes the checkpoints.

The child is the worker's own (spawned, never fed anything but what the worker sends), so its messages are
trusted. It ends when the worker closes it or when the pipe breaks: a worker killed outright takes its learning
with it, and the next start resumes from the newest checkpoint as ever.

It is not the default: on two cores shared with the broker, a trainer free of the lock takes a core that serving
and the broker need, and at 100,000 items each snapshot's 55 MB of arrays cross the pipe under the worker's lock;
both cost more than the lock did (docs/benchmarks/history.md, "A trainer process").
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..logs import configure_logging
from ..serving.scoring import Scorer
from ..serving.side import Durations, Queued, Status
from ..serving.snapshots import Packer, Unpacker, warm_up
from ..settings import Settings
from . import checkpoint
from .local import Learning

__all__ = ["LearningError", "LearningProcess"]

log = logging.getLogger(__name__)

START_TIMEOUT = 300.0  # seconds for the child to load its checkpoint and publish its first snapshot
STATUS_EVERY = 1.0  # seconds between the child's status reports while it publishes nothing


class LearningError(RuntimeError):
    """The learning process failed a request, or is gone."""


class LearningProcess:
    """A :class:`Learning` in a child process; see the module's docstring."""

    def __init__(self, settings: Settings, publish: Callable[[Scorer], None], freshness: Durations) -> None:
        self.settings, self._publish, self._freshness = settings, publish, freshness
        # Refused here, in one line, before the child could fail on it out of sight (Learning refuses it too).
        checkpoint.check_settings(settings.checkpoint_dir, settings.model)
        context = multiprocessing.get_context("spawn")  # a fork would copy the worker's threads' locks mid-use
        self._conn, theirs = context.Pipe()
        self._process = context.Process(
            target=_child_main, args=(settings.model_dump_json(), theirs),
            name="stream-rec-learning", daemon=True,
        )  # fmt: skip
        self._process.start()
        theirs.close()
        self._unpacker = Unpacker()
        warm_up(settings.model)  # while the child starts
        # Sending is one message at a time; the requests waiting for an answer have a lock of their own, never
        # held while sending: the receiver takes it, and must never wait on a sender stuck on a full pipe.
        self._sending = threading.Lock()
        self._pending = threading.Lock()
        self._cond = threading.Condition()
        self._outbox: deque[Queued] = deque()
        self._dropped = 0  # examples that gave way here, before reaching the child
        self._published = 0  # snapshots
        self._requests: dict[int, Future[Any]] = {}
        self._ids = itertools.count()
        self._closing = False
        self._gone = False
        self._ready = threading.Event()  # the first snapshot was published (or the child is gone)
        self._status = Status(0, 0, 0, None, 0, 0, 0, 0, 0, False, None, None)  # until the child says
        self._receiver = threading.Thread(target=self._receive, name="stream-rec-learning-in", daemon=True)
        self._feeder = threading.Thread(target=self._feed, name="stream-rec-learning-out", daemon=True)
        self._receiver.start()
        self._feeder.start()

    def wait_ready(self) -> None:
        """Wait for the child's first snapshot (published by then); LearningError if it does not come."""
        if not self._ready.wait(START_TIMEOUT):
            raise LearningError(f"the learning process did not start within {START_TIMEOUT:.0f} s")
        if self._gone and self._published == 0:
            raise LearningError(f"the learning process did not start (exit code {self._process.exitcode}); see its log")

    # -- requests ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._send(("start",))

    def stop(self, drain: float = 5.0) -> None:
        """Stop the child's trainer after it learned what waits, for at most ``drain`` seconds; the child stays up
        for the checkpoint after it. A child already gone has nothing left to stop (its end was logged)."""
        if self._gone:
            return
        deadline = time.monotonic() + drain
        while self._outbox and time.monotonic() < deadline and not self._gone:
            time.sleep(0.05)  # the examples still here go over first
        self._request("stop", max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 10.0) -> None:
        """End the child (after what it was asked before) and wait for it."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._feeder.join(timeout)
        with contextlib.suppress(OSError):  # (gone already)
            self._send(("close",))
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def submit(self, items: Sequence[Queued]) -> None:
        """Queue examples for the child (never blocks); past ``learn_queue`` waiting here, the oldest give way."""
        with self._cond:
            self._outbox.extend(items)
            over = len(self._outbox) - self.settings.learn_queue
            for _ in range(max(0, over)):
                self._outbox.popleft()
            self._dropped += max(0, over)
            self._cond.notify()

    def forget(self, user_id: str) -> int:
        with self._cond:
            kept = deque(q for q in self._outbox if q.example[1].user != user_id)
            dropped = len(self._outbox) - len(kept)
            self._outbox = kept
        return dropped + int(self._request("forget", user_id))

    def checkpoint(self, *, replace_all: bool = False) -> Path | None:
        path, self._status = self._request("checkpoint", replace_all)  # the status: the new path and time
        return None if path is None else Path(path)

    def status(self) -> Status:
        with self._cond:
            status, here = self._status, len(self._outbox)
        return dataclasses.replace(
            status, waiting=status.waiting + here, dropped=status.dropped + self._dropped,
            running=status.running and not self._gone,
        )  # fmt: skip

    def _request(self, kind: str, argument: Any = None) -> Any:
        """Ask the child and wait for its answer; LearningError where it is gone or failed the request."""
        future: Future[Any] = Future()
        with self._pending:  # as the receiver fails what waits when the child is gone: never one left waiting
            if self._gone:
                raise LearningError(f"the learning process is gone (exit code {self._process.exitcode})")
            number = next(self._ids)
            self._requests[number] = future
        try:
            self._send((kind, number, argument))
        except OSError:
            with self._pending:
                self._requests.pop(number, None)
            raise LearningError("the learning process is gone") from None
        return future.result()

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._sending:
            self._conn.send(message)

    # -- the threads -------------------------------------------------------------------------------------------

    def _feed(self) -> None:
        while True:
            with self._cond:
                while not self._outbox and not self._closing:
                    self._cond.wait()
                if not self._outbox:
                    return
                items = list(self._outbox)
                self._outbox.clear()
            try:
                self._send(("examples", items))
            except OSError:
                return  # the child is gone: the receiver says so

    def _receive(self) -> None:
        while True:
            try:
                got = self._receive_one()
            except (EOFError, OSError):
                break
            if isinstance(got, Scorer):
                self._publish(got)
                self._published += 1
                self._ready.set()
        if not self._closing:  # said before the status says so: whoever sees it stopped can find why in the log
            self._process.join(1.0)
            log.error(
                "the learning process ended (exit code %s): serving goes on with the last snapshot, nothing more is "
                "learned", self._process.exitcode,
            )  # fmt: skip
        with self._pending:
            self._gone = True
            waiting, self._requests = list(self._requests.values()), {}
        self._ready.set()
        for future in waiting:
            future.set_exception(LearningError("the learning process ended before it answered"))

    def _receive_one(self) -> Scorer | None:
        """Read one message; a snapshot is returned, the rest handled here."""
        message = self._conn.recv()
        kind = message[0]
        if kind == "snapshot":
            _, header, status, sent = message
            buffers = []
            for size in header["sizes"]:
                buffer = bytearray(size)
                self._conn.recv_bytes_into(buffer)
                buffers.append(buffer)
            scorer = self._unpacker.unpack(header, buffers)
            handed_over = time.monotonic() - sent
            self._freshness.extend(d + handed_over for d in header["durations"])
            if status is not None:
                self._status = status
            return scorer
        if kind == "status":
            self._status = message[1]
        elif kind in ("answer", "failed"):
            with self._pending:
                future = self._requests.pop(message[1])
            if kind == "answer":
                future.set_result(message[2])
            else:
                future.set_exception(OSError(message[2]) if message[3] else LearningError(message[2]))
        return None


# -- the child ---------------------------------------------------------------------------------------------------


def _child_main(settings_json: str, conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C reaches the whole group: the worker decides when to stop
    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings)
    os.nice(settings.learn_nice)  # serving keeps the cores when both want them: learning takes what is left
    torch.set_num_threads(settings.model.torch_threads(beside=2))
    try:
        _Child(settings, conn).run()
    except Exception:
        log.exception("the learning process failed")
        os._exit(1)
    os._exit(0)  # not waiting on the threads of a trainer that was never stopped


class _Child:
    def __init__(self, settings: Settings, conn: Any) -> None:
        self.conn = conn
        self.sending = threading.Lock()
        self.durations: list[float] = []
        self.packer = Packer()
        self.learning: Learning | None = None  # (it publishes its first snapshot as it is made)
        self.learning = Learning(settings, self.publish, freshness=self)

    def extend(self, durations: Iterable[float]) -> None:
        """The trainer's freshness figures, measured just before it publishes: they go with the snapshot."""
        self.durations.extend(durations)

    def publish(self, scorer: Scorer) -> None:
        header, arrays = self.packer.pack(scorer)
        header["durations"], self.durations = self.durations, []
        with self.sending:
            status = self.learning.status() if self.learning is not None else None
            self.conn.send(("snapshot", header, status, time.monotonic()))
            for a in arrays:
                self.conn.send_bytes(a.data.cast("B") if a.size else b"")  # (a view of nothing cannot be cast)

    def run(self) -> None:
        learning = self.learning
        assert learning is not None
        slow = ThreadPoolExecutor(1, thread_name_prefix="stream-rec-learning-requests")  # checkpoints, stop
        last_status = 0.0
        while True:
            if time.monotonic() - last_status >= STATUS_EVERY:
                with self.sending:
                    self.conn.send(("status", learning.status()))
                last_status = time.monotonic()
            if not self.conn.poll(STATUS_EVERY):
                continue
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return  # the worker is gone
            kind = message[0]
            if kind == "examples":
                learning.submit(message[1])
            elif kind == "start":
                learning.start()
            elif kind == "close":
                slow.shutdown(wait=True)
                return
            elif kind in ("forget", "status"):  # at once: in order with the examples around it
                self.answer(kind, message[1], message[2])
            else:
                slow.submit(self.answer, kind, message[1], message[2])

    def answer(self, kind: str, number: int, argument: Any) -> None:
        learning = self.learning
        assert learning is not None
        try:
            if kind == "forget":
                result: Any = learning.forget(argument)
            elif kind == "checkpoint":
                path = learning.checkpoint(replace_all=argument)
                result = (None if path is None else str(path), learning.status())
            elif kind == "stop":
                learning.stop(argument)
                result = None
            elif kind == "status":
                result = learning.status()
            else:
                raise LearningError(f"unknown request {kind!r}")
        except Exception as exc:
            log.exception("the learning process failed a request (%s)", kind)
            reply: tuple[Any, ...] = ("failed", number, f"{kind}: {exc}", isinstance(exc, OSError))
        else:
            reply = ("answer", number, result)
        with self.sending:
            self.conn.send(reply)
