"""The worker's agent and timers: module-level functions over one :class:`Worker`, read top to bottom.

The delivery promise: every valid event gets at least one recommendation, and is once in its user's sequence,
whatever is killed when. :func:`process` reads batches without acknowledging them (``stream.noack_take``); for
each batch :func:`serve` decides every message (``admission.plan_batch``: dead letter, reroute, duplicate,
redelivery or new), ranks in a worker thread, hands the new events to learning, writes each touched user's
state back to the table once (``admission.answer`` makes it, the only place besides ``plan_batch``), and sends
the dead letters, reroutes, recommendations and embeddings. Only when every one of those sends, the table's
changelog writes among them, is acknowledged by the broker are the batch's events acknowledged (:func:`settle`),
and so become committable: an offset is committed only after its event's effects are durable. A send that fails
stops the worker without committing (exit code 75), so its events are read again at restart; one read again from
the very message it was first read from is answered again (``admission.redelivered``), never appended twice.

Beside the agent: :func:`keep_checkpoints` (at start, on a cadence; :func:`shut_down` writes the last),
:func:`expire` (users inactive for ``user_ttl`` seconds), :func:`report` (the status line), the control
commands (``stream-rec forget``, :func:`obey`) read in order with the events, and where a trainer learns
elsewhere (``learn_in = kafka``), :func:`follow_updates`, which applies the model it publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.streams import _current_event

from ..errors import InvalidEvent
from ..learning.process import LearningError
from ..learning.remote import FORGET_EXAMPLES
from ..sequences import example_json, step_of
from ..serving.engine import Engine
from ..serving.remote import Assembler, RemoteLearning, start_offset
from ..settings import Settings
from ..wire.control import parse_command
from ..wire.deadletter import envelope
from .admission import Message, answer, home_partition, plan_batch
from .web import worker_stats

__all__ = [
    "EXIT_UNCOMMITTED", "SequenceTable", "Worker", "expire", "follow_updates", "keep_checkpoints",
    "process", "report", "shut_down",
]  # fmt: skip

log = logging.getLogger(__name__)

EXIT_UNCOMMITTED = 75  # EX_TEMPFAIL: a send failed; the worker stopped without committing; restart it


class SequenceTable(faust.Table):
    """Faust's table, remembering its changelog sends until the agent takes them, to wait for their delivery."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.__dict__.setdefault("unsettled", []).append(fut)
        return fut

    def take_unsettled(self) -> list[Awaitable[Any]]:
        taken: list[Awaitable[Any]] = self.__dict__.pop("unsettled", [])
        return taken


@dataclass
class Worker:
    """What the agent and the timers work with: the app, its settings, the engine, the users' table, the topics."""

    app: faust.App
    settings: Settings
    engine: Engine
    sequences: SequenceTable
    rerouted: faust.TopicT
    control: faust.TopicT
    recommendations: faust.TopicT
    embeddings: faust.TopicT
    dlq: faust.TopicT
    examples: faust.TopicT | None = None  # learn_in = kafka: where the examples go, to a trainer elsewhere
    guard: asyncio.Lock = field(default_factory=asyncio.Lock)  # one writer of the table: the batches, and expiry
    settling: set[asyncio.Task[None]] = field(default_factory=set)

    def partitions(self) -> int:
        """The events topic's partition count, as the consumer knows it."""
        return self.app.consumer.topic_partitions(self.settings.topic_events) or self.settings.partitions


# -- the agent ---------------------------------------------------------------------------------------------------


async def process(worker: Worker, stream: faust.StreamT) -> None:
    """The agent: batches of events and commands, commands in order with the events around them."""
    settings = worker.settings
    last: asyncio.Task[None] | None = None  # the batch before's acknowledgement: batches are acknowledged in order
    async for batch in stream.noack_take(settings.batch_size, within=settings.batch_within):  # type: ignore[attr-defined]
        sent: list[Awaitable[Any]] = []
        async with worker.guard:
            start = 0
            for i, ev in enumerate(batch):
                if ev.message.topic == settings.topic_control:
                    sent += await serve(worker, batch[start:i])
                    sent += await obey(worker, ev)
                    start = i + 1
            sent += await serve(worker, batch[start:])
        task = asyncio.create_task(settle(stream, batch, sent, after=last))
        worker.settling.add(task)
        task.add_done_callback(worker.settling.discard)
        last = task


async def serve(worker: Worker, events: Sequence[faust.EventT]) -> list[Awaitable[Any]]:
    """Decide, rank, learn beside, write back and send one run of event messages; the futures of every send."""
    if not events:
        return []
    settings, engine, table = worker.settings, worker.engine, worker.sequences
    arrived = time.monotonic()
    messages = [_message(ev) for ev in events]
    faust_event = {(m.topic, m.partition, m.offset): ev for m, ev in zip(messages, events, strict=True)}

    def lookup(user: str, msg: Message) -> Any:
        with on_partition_of(faust_event[msg.topic, msg.partition, msg.offset]):
            return table.get(user)

    plan = plan_batch(
        messages, lookup, events_topic=settings.topic_events, partitions=worker.partitions(),
        seq_len=settings.seq_len, max_bytes=settings.max_event_bytes, metrics=engine.metrics, now=time.time(),
        keep_seen=settings.model.exclude_seen,
    )  # fmt: skip
    log.debug(
        "batch of %d: %d accepted (%d redelivered), %d dead-lettered, %d rerouted",
        len(messages), len(plan.accepted), sum(not a.learn for a in plan.accepted), len(plan.dead), len(plan.rerouted),
    )  # fmt: skip
    sent = [await worker.dlq.send(key=msg.key, value=_dead_letter(msg, reason)) for msg, reason in plan.dead]
    for r in plan.rerouted:
        sent.append(await worker.rerouted.send(key=r.user_id.encode(), value=r.message.value, partition=r.partition))
    outputs = await asyncio.to_thread(engine.serve, plan.accepted, arrived) if plan.accepted else []
    if worker.examples is None:
        engine.submit(plan.accepted, arrived)  # learned beside, never waited for
    else:  # to the trainer, among the batch's sends: at least once, as the recommendations
        wall = time.time() - (time.monotonic() - arrived)
        for a in plan.accepted:
            if a.learn:
                value = example_json((a.before, step_of(a.event)), arrived=wall)
                sent.append(await worker.examples.send(key=a.event.user_id.encode(), value=value))
    answered = answer(plan, outputs)
    for user, state in answered.states.items():
        home = plan.homes[user]
        with on_partition_of(faust_event[home.topic, home.partition, home.offset]):
            table[user] = state  # assigned back, so the changelog carries it
    sent += table.take_unsettled()
    for kind, key, value in answered.messages:
        topic = worker.recommendations if kind == "recommendation" else worker.embeddings
        sent.append(await topic.send(key=key, value=value))
    return sent


async def obey(worker: Worker, ev: faust.EventT) -> list[Awaitable[Any]]:
    """Carry out one control command (forget a user), or dead-letter it."""
    msg = _message(ev)
    try:
        command = parse_command(msg.value)
    except InvalidEvent as exc:
        return [await worker.dlq.send(key=msg.key, value=_dead_letter(msg, exc.reason))]
    user = command.user_id
    home = home_partition(user, worker.partitions())
    if msg.partition != home:  # the user's state is on the user's partition, maybe another worker's
        return [await worker.control.send(key=user.encode(), value=msg.value, partition=home)]
    sent = [*_erase(worker, user, home), await worker.embeddings.send(key=user.encode(), value=None)]
    if worker.examples is not None:  # the trainer's replay buffer and checkpoints, in order with the examples
        sent.append(await worker.examples.send(key=user.encode(), value=FORGET_EXAMPLES))
    dropped = await asyncio.to_thread(worker.engine.forget, user)
    path = None
    if worker.settings.checkpoint_every > 0:
        path = await asyncio.to_thread(worker.engine.checkpoint, replace_all=True)
    worker.engine.metrics.forgotten += 1
    log.info("forgot user %r: sequence, %d replay examples, embedding; checkpoint %s", user, dropped, path)
    return sent


async def settle(
    stream: faust.StreamT, events: Sequence[faust.EventT], sent: list[Awaitable[Any]], after: Awaitable[None] | None
) -> None:
    """Acknowledge ``events`` once every send made for them is acknowledged by the broker and the batch before
    (``after``) is acknowledged. In order, because Faust (0.15.3) commits a run of acknowledged offsets even when
    the one offset before it, at the committed position, is not (nor, before a partition's first commit, any
    offsets before it): a later batch settled first would commit past an earlier one's events."""
    for fut in sent:
        try:
            await fut
        except Exception as exc:  # every send is retried by the producer until its request timeout first
            stop_uncommitted(f"a send failed after retries ({exc!r})")
    if after is not None:
        await after
    for ev in events:
        await stream.ack(ev)


# -- beside the agent --------------------------------------------------------------------------------------------


async def keep_checkpoints(worker: Worker) -> None:
    """Start learning (after the table's recovery: the trainer learns beside the agent), and checkpoint the model at
    once and every ``checkpoint_every`` seconds."""
    worker.engine.start()
    if worker.settings.checkpoint_every <= 0:
        return
    await _checkpoint(worker, "start")
    while True:
        await asyncio.sleep(worker.settings.checkpoint_every)
        await _checkpoint(worker, "cadence")


async def shut_down(worker: Worker) -> None:
    """After the consumer stopped, so no batch comes: learn what waits (a few seconds at most), then save it."""
    await asyncio.to_thread(worker.engine.stop)
    if worker.settings.checkpoint_every > 0:
        await _checkpoint(worker, "shutdown")
    await asyncio.to_thread(worker.engine.close)


async def expire(worker: Worker, started: float) -> None:
    """Remove the users inactive for ``user_ttl`` seconds (a user never stamped counts from ``started``)."""
    cutoff = time.time() - worker.settings.user_ttl
    stale = []
    for n, (user, state) in enumerate(worker.sequences.items()):
        if isinstance(state, dict) and state.get("seen", started) < cutoff:
            stale.append(user)
        if n % 1000 == 999:
            await asyncio.sleep(0)  # a long scan lets the batches run
    if not stale:
        return
    sent: list[Awaitable[Any]] = []
    removed = 0
    async with worker.guard:
        for user in stale:
            state = worker.sequences.data.get(user)
            if not isinstance(state, dict) or state.get("seen", started) >= cutoff:
                continue  # active again since the scan
            sent += _erase(worker, user, home_partition(user, worker.partitions()))
            sent.append(await worker.embeddings.send(key=user.encode(), value=None))
            worker.engine.metrics.expired += 1
            removed += 1
    log.info("expired %d users inactive for %g s", removed, worker.settings.user_ttl)
    for fut in sent:
        try:
            await fut
        except Exception as exc:
            stop_uncommitted(f"a tombstone could not be sent ({exc!r})")


async def follow_updates(worker: Worker, remote: RemoteLearning) -> None:
    """learn_in = kafka: read the model-updates topic from the newest full snapshot on, and apply each update; where
    reading fails (the broker away), serve on with the model there is and start again from the newest full one."""
    while True:
        try:
            await _follow_updates(worker, remote)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("reading the model updates failed (%r): serving goes on with its model; again in 5 s", exc)
            remote.assembler = Assembler()  # a part of an update read before the failure is dropped
            await asyncio.sleep(5.0)


async def _follow_updates(worker: Worker, remote: RemoteLearning) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(worker.settings.topic_updates, 0)
    consumer = AIOKafkaConsumer(
        **worker.settings.aio_client_config(
            client_id=f"{worker.settings.app_id}-updates", enable_auto_commit=False, group_id=None,
            fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
        )
    )  # fmt: skip
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        last = None
        if end > 0:
            consumer.seek(tp, end - 1)
            record = await consumer.getone()
            last = record.offset, record.headers
        start = start_offset(last)
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        while True:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            for record in batches.get(tp, []):
                await asyncio.to_thread(remote.take, record.offset, record.headers, record.value)
            end = consumer.highwater(tp)
            remote.behind = None if end is None else max(0, end - await consumer.position(tp))
    finally:
        await consumer.stop()


async def report(worker: Worker) -> None:
    """Log one status line."""
    s = worker_stats(worker.app, worker.engine, worker.settings)
    hr = "-" if s["hit_rate_1m"] is None else f"{s['hit_rate_1m']:.3f}"
    loss = "-" if s["loss"] is None else f"{s['loss']:.3f}"
    log.info(
        "status: %d events (%.1f/s), lag %s, hit rate@%d as served %.3f (last minute %s), loss %s, "
        "model %s, %d shed unlearned, %d dead-lettered", s["events"], s["events_per_s"],
        "-" if s["lag_total"] is None else s["lag_total"], worker.settings.k, s["hit_rate"], hr, loss,
        s["model_version"], s["learn_dropped"], s["invalid"],
    )  # fmt: skip


# -- helpers -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def on_partition_of(event: faust.EventT) -> Iterator[None]:
    """Make ``event`` the current one, from which a table takes the partition it reads, writes and logs to.

    After ``noack_take`` the current event is the batch's last, and a read would look for a user's state on that
    message's partition only, not on the user's.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def stop_uncommitted(why: str) -> None:
    """Stop at once, committing nothing: the events whose effects are not known to be durable are read again at
    restart. A graceful stop would wait for the broker that just failed, then commit what it could."""
    log.critical("%s: stopping without committing; restart the worker to process these events again", why)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_UNCOMMITTED)


def _erase(worker: Worker, user: str, home: int) -> list[Awaitable[Any]]:
    """Remove the user's state and log its tombstone; the changelog sends to wait for."""
    with contextlib.suppress(KeyError):
        del worker.sequences.data[user]
    worker.sequences.send_changelog(home, user, None, value_serializer="raw")
    return worker.sequences.take_unsettled()


async def _checkpoint(worker: Worker, when: str) -> None:
    # Off the event loop: the copy of the model waits for the learner's lock, which a learning step holds; packing
    # and writing it then go on beside the next steps.
    try:
        path = await asyncio.to_thread(worker.engine.checkpoint)
    except LearningError as exc:  # its end was logged; serving goes on
        log.error("no checkpoint (%s): %s", when, exc)
        return
    if path is not None:
        log.info("checkpoint (%s): %s", when, path)


def _dead_letter(msg: Message, reason: str) -> bytes:
    log.warning("%s[%d] offset %d: dead-lettered, skipped: %s", msg.topic, msg.partition, msg.offset, reason)
    return envelope(reason, msg.topic, msg.partition, msg.offset, msg.key, msg.value)


def _message(ev: faust.EventT) -> Message:
    msg = ev.message
    return Message(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
