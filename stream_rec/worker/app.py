"""The Faust worker: records in, table, agent, sends out. It reads top to bottom; the logic it calls is pure.

The delivery promise: every valid event gets at least one recommendation, and is once in its user's sequence,
whatever is killed when. The agent reads batches without acknowledging them (``stream.noack_take``); for each
batch it decides every message (``admission.plan_batch``: dead letter, reroute, duplicate, redelivery or new),
learns and ranks in a worker thread, writes each touched user's sequence back to the table once, and sends the
dead letters, reroutes, recommendations and embeddings. Only when every one of those sends, the table's
changelog writes among them, is acknowledged by the broker are the batch's events acknowledged, and so become
committable: an offset is committed only after its event's effects are durable. A send that fails stops the
worker without committing (exit code 75), so its events are read again at restart; one read again from the
very message it was first read from is answered again (``sequences.redelivered``), never appended twice. After a
restore from the changelog the stream partitions resume only once sought (``resume.py``): Faust's own order lost
the records fetched in between.

Beside the agent: a checkpoint task (at start, on a cadence, at shutdown), an expiry task that removes users
inactive for ``user_ttl`` seconds, and the control commands (``stream-rec forget``) read with the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any

import faust
from faust.streams import _current_event

from ..errors import InvalidEvent
from ..learning import open_side
from ..learning.process import LearningError
from ..serving.engine import Engine
from ..settings import Settings
from ..wire.control import parse_command
from ..wire.deadletter import envelope
from .admission import Message, answer, home_partition, plan_batch
from .resume import ResumingTableManager, ResumingTransport
from .web import add_views, worker_stats

__all__ = ["EXIT_UNCOMMITTED", "create_app"]

log = logging.getLogger(__name__)

EXIT_UNCOMMITTED = 75  # EX_TEMPFAIL: a send failed; the worker stopped without committing; restart it
_RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


class SequenceTable(faust.Table):
    """Faust's table, remembering its changelog sends until the agent takes them, to wait for their delivery."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.__dict__.setdefault("unsettled", []).append(fut)
        return fut

    def take_unsettled(self) -> list[Awaitable[Any]]:
        taken: list[Awaitable[Any]] = self.__dict__.pop("unsettled", [])
        return taken


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


def _stop_uncommitted(why: str) -> None:
    """Stop at once, committing nothing: the events whose effects are not known to be durable are read again at
    restart. A graceful stop would wait for the broker that just failed, then commit what it could."""
    log.critical("%s: stopping without committing; restart the worker to process these events again", why)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_UNCOMMITTED)


def instance_id(settings: Settings) -> str:
    """The worker's static membership id: stable across its restarts, one per data folder."""
    if settings.instance_id:
        return settings.instance_id
    folder = str(settings.worker_dir.expanduser().resolve())
    return f"{settings.app_id}-{hashlib.sha256(folder.encode()).hexdigest()[:12]}"


def create_app(settings: Settings) -> faust.App:
    """The Faust app of one worker, wired to ``settings``; ``app.engine`` is its recommendation engine."""
    settings.worker_dir.mkdir(parents=True, exist_ok=True)  # Faust makes its datadir, but not the folders above
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=str(settings.worker_dir),
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_bind,
        web_tables_enabled=settings.web_tables,
        web_router_enabled=settings.web_tables,  # the router maps any key to its worker: a table page's companion
        topic_partitions=settings.partitions,
        producer_max_request_size=4 * 1024 * 1024,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=instance_id(settings),  # a restart gets its partitions back, no rebalance
        broker_commit_interval=1.0,  # after a crash, at most about a second of events is answered twice
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(1.0, settings.session_timeout / 10),
        producer_linger=settings.linger,  # 0 sent a request per few messages: 253-297 -> 323 events/s
        TableManager=ResumingTableManager,  # Faust's own loses records fetched as a recovery ends (resume.py)
    )
    app.transport = ResumingTransport(app.conf.broker_consumer, app)  # Faust's own loses records (resume.py)
    engine = Engine(settings, open_side)
    app.engine = engine  # type: ignore[attr-defined]

    # The events, the events sent on to their user's partition, and the commands: one stream, co-partitioned,
    # so that one agent is the only writer of a user's state. Declared (created where missing) with the table's
    # partition count before the worker subscribes: a broker's auto-creation would give them its default count.
    source = app.topic(
        settings.topic_events, settings.topic_rerouted, settings.topic_control,
        partitions=settings.partitions, internal=True, **_RAW,
    )  # fmt: skip
    rerouted = app.topic(settings.topic_rerouted, partitions=settings.partitions, internal=True, **_RAW)
    control = app.topic(settings.topic_control, partitions=settings.partitions, internal=True, **_RAW)
    recommendations = app.topic(settings.topic_recommendations, **_RAW)
    embeddings = app.topic(settings.topic_embeddings, **_RAW)
    dlq = app.topic(settings.topic_dlq, **_RAW)

    sequences = SequenceTable(
        app,
        name="user_sequences",
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        options={"driver": "rocksdict"},
    )
    app.tables.add(sequences)
    app.sequences = sequences  # type: ignore[attr-defined]

    guard = asyncio.Lock()  # one writer of the table at a time: the agent's batches, and expiry
    settling: set[asyncio.Task[None]] = set()

    def partitions_of_events() -> int:
        return app.consumer.topic_partitions(settings.topic_events) or settings.partitions

    def dead_letter(msg: Message, reason: str) -> bytes:
        log.warning("%s[%d] offset %d: dead-lettered, skipped: %s", msg.topic, msg.partition, msg.offset, reason)
        return envelope(reason, msg.topic, msg.partition, msg.offset, msg.key, msg.value)

    async def serve(events: Sequence[faust.EventT]) -> list[Awaitable[Any]]:
        """Decide, learn, rank, write back and send one run of event messages; the futures of every send."""
        if not events:
            return []
        arrived = time.monotonic()
        messages = [_message(ev) for ev in events]
        faust_event = {(m.topic, m.partition, m.offset): ev for m, ev in zip(messages, events, strict=True)}

        def lookup(user: str, msg: Message) -> Any:
            with on_partition_of(faust_event[msg.topic, msg.partition, msg.offset]):
                return sequences.get(user)

        plan = plan_batch(
            messages, lookup, events_topic=settings.topic_events, partitions=partitions_of_events(),
            seq_len=settings.seq_len, max_bytes=settings.max_event_bytes, metrics=engine.metrics, now=time.time(),
            keep_seen=settings.model.exclude_seen,
        )  # fmt: skip
        log.debug(
            "batch of %d: %d accepted (%d redelivered), %d dead-lettered, %d rerouted",
            len(messages), len(plan.accepted), sum(not a.learn for a in plan.accepted), len(plan.dead),
            len(plan.rerouted),
        )  # fmt: skip
        sent = [await dlq.send(key=msg.key, value=dead_letter(msg, reason)) for msg, reason in plan.dead]
        for r in plan.rerouted:
            sent.append(await rerouted.send(key=r.user_id.encode(), value=r.message.value, partition=r.partition))
        outputs = await asyncio.to_thread(engine.serve, plan.accepted, arrived) if plan.accepted else []
        engine.submit(plan.accepted, arrived)  # learned beside, never waited for
        answered = answer(plan, outputs)
        for user, state in answered.states.items():
            home = plan.homes[user]
            with on_partition_of(faust_event[home.topic, home.partition, home.offset]):
                sequences[user] = state  # assigned back, so the changelog carries it
        sent += sequences.take_unsettled()
        for kind, key, value in answered.messages:
            sent.append(await (recommendations if kind == "recommendation" else embeddings).send(key=key, value=value))
        return sent

    async def obey(ev: faust.EventT) -> list[Awaitable[Any]]:
        """Carry out one control command (forget a user), or dead-letter it."""
        msg = _message(ev)
        try:
            command = parse_command(msg.value)
        except InvalidEvent as exc:
            return [await dlq.send(key=msg.key, value=dead_letter(msg, exc.reason))]
        user = command.user_id
        home = home_partition(user, partitions_of_events())
        if msg.partition != home:  # the user's state is on the user's partition, maybe another worker's
            return [await control.send(key=user.encode(), value=msg.value, partition=home)]
        with contextlib.suppress(KeyError):
            del sequences.data[user]
        sequences.send_changelog(home, user, None, value_serializer="raw")  # the tombstone
        sent = [*sequences.take_unsettled(), await embeddings.send(key=user.encode(), value=None)]
        dropped = await asyncio.to_thread(engine.forget, user)
        path = None
        if settings.checkpoint_every > 0:
            path = await asyncio.to_thread(engine.checkpoint, replace_all=True)
        engine.metrics.forgotten += 1
        log.info("forgot user %r: sequence, %d replay examples, embedding; checkpoint %s", user, dropped, path)
        return sent

    async def settle(
        stream: faust.StreamT, events: Sequence[faust.EventT], sent: list[Awaitable[Any]], after: Awaitable[None] | None
    ) -> None:
        """Acknowledge ``events`` once every send made for them is acknowledged by the broker and the batch
        before (``after``) is acknowledged. In order, because Faust (0.15.3) commits a run of acknowledged offsets
        even when the one offset before it, at the committed position, is not (nor, before a partition's first
        commit, any offsets before it): a later batch settled first would commit past an earlier one's events."""
        for fut in sent:
            try:
                await fut
            except Exception as exc:  # every send is retried by the producer until its request timeout first
                _stop_uncommitted(f"a send failed after retries ({exc!r})")
        if after is not None:
            await after
        for ev in events:
            await stream.ack(ev)

    @app.agent(source)
    async def process(stream: faust.StreamT) -> None:
        last: asyncio.Task[None] | None = None  # the batch before's acknowledgement: batches are acknowledged in order
        async for batch in stream.noack_take(settings.batch_size, within=settings.batch_within):  # type: ignore[attr-defined]
            sent: list[Awaitable[Any]] = []
            async with guard:
                start = 0
                for i, ev in enumerate(batch):  # commands in order with the events around them
                    if ev.message.topic == settings.topic_control:
                        sent += await serve(batch[start:i])
                        sent += await obey(ev)
                        start = i + 1
                sent += await serve(batch[start:])
            task = asyncio.create_task(settle(stream, batch, sent, after=last))
            settling.add(task)
            task.add_done_callback(settling.discard)
            last = task

    async def write_checkpoint(when: str) -> None:
        # Off the event loop: the copy of the model waits for the learner's lock, which a learning step holds;
        # packing and writing it then go on beside the next steps.
        try:
            path = await asyncio.to_thread(engine.checkpoint)
        except LearningError as exc:  # its end was logged; serving goes on
            log.error("no checkpoint (%s): %s", when, exc)
            return
        if path is not None:
            log.info("checkpoint (%s): %s", when, path)

    @app.task
    async def learning() -> None:
        engine.start()  # after the table's recovery: the trainer learns beside the agent
        if settings.checkpoint_every > 0:
            await write_checkpoint("start")
            while True:
                await asyncio.sleep(settings.checkpoint_every)
                await write_checkpoint("cadence")

    async def shutdown() -> None:
        # After the consumer stopped, so no batch comes: learn what waits (a few seconds at most), then save it.
        await asyncio.to_thread(engine.stop)
        if settings.checkpoint_every > 0:
            await write_checkpoint("shutdown")
        await asyncio.to_thread(engine.close)

    @app.on_before_shutdown.connect
    def stop_learning(sender: Any, /, *_: Any, signal: Any, **__: Any) -> Awaitable[None]:
        return shutdown()

    if settings.user_ttl > 0:
        started = time.time()

        @app.timer(interval=min(max(settings.user_ttl / 10, 1.0), 600.0))
        async def expire() -> None:
            cutoff = time.time() - settings.user_ttl
            stale = []
            for n, (user, state) in enumerate(sequences.items()):
                if isinstance(state, dict) and state.get("seen", started) < cutoff:
                    stale.append(user)
                if n % 1000 == 999:
                    await asyncio.sleep(0)  # a long scan lets the batches run
            if not stale:
                return
            sent: list[Awaitable[Any]] = []
            async with guard:
                for user in stale:
                    state = sequences.data.get(user)
                    if not isinstance(state, dict) or state.get("seen", started) >= cutoff:
                        continue  # active again since the scan
                    with contextlib.suppress(KeyError):
                        del sequences.data[user]
                    home = home_partition(user, partitions_of_events())
                    sequences.send_changelog(home, user, None, value_serializer="raw")
                    sent.append(await embeddings.send(key=user.encode(), value=None))
                    engine.metrics.expired += 1
                sent += sequences.take_unsettled()
            log.info("expired %d users inactive for %g s", len(stale), settings.user_ttl)
            for fut in sent:
                try:
                    await fut
                except Exception as exc:
                    _stop_uncommitted(f"a tombstone could not be sent ({exc!r})")

    if settings.status_every > 0:

        @app.timer(interval=settings.status_every)
        async def status() -> None:
            s = worker_stats(app, engine, settings)
            hr = "-" if s["hit_rate_1m"] is None else f"{s['hit_rate_1m']:.3f}"
            loss = "-" if s["loss"] is None else f"{s['loss']:.3f}"
            log.info(
                "status: %d events (%.1f/s), lag %s, hit rate@%d as served %.3f (last minute %s), loss %s, "
                "model %s, %d shed unlearned, %d dead-lettered", s["events"], s["events_per_s"],
                "-" if s["lag_total"] is None else s["lag_total"], settings.k, s["hit_rate"], hr, loss,
                s["model_version"], s["learn_dropped"], s["invalid"],
            )  # fmt: skip

    add_views(app, engine, settings)
    app.process_agent = process  # type: ignore[attr-defined]
    return app


def _message(ev: faust.EventT) -> Message:
    msg = ev.message
    return Message(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
