"""The Faust worker: records in, table, agent, sends out. It reads top to bottom; the logic it calls is pure.

Per batch of events (``stream.take_events``): decode and validate each (bad ones go whole to the dead-letter
topic with the reason), drop event ids seen before, score the event against the list served to its user last
time, append it to the user's sequence; then, in a worker thread, learn from the batch and rank; then write each
touched user's sequence back to the table once and publish one recommendation and one embedding per event.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import weakref
from typing import Any

import faust
import orjson
from faust.streams import _current_event

from .engine import Accepted, Engine
from .errors import InvalidEvent
from .events import parse_event
from .sequences import append, is_duplicate, steps, with_served
from .settings import Settings

__all__ = ["create_app", "dead_letter"]

log = logging.getLogger(__name__)


def dead_letter(reason: str, topic: str, partition: int, offset: int, key: Any, value: Any) -> bytes:
    """The dead-letter envelope: the original bytes whole (as text, or base64 where they are not UTF-8)."""
    text = b64 = None
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode()
        except UnicodeDecodeError:
            b64 = base64.b64encode(value).decode()
    elif value is not None:
        text = str(value)
    if isinstance(key, bytes | bytearray):
        key = bytes(key).decode(errors="replace")
    return orjson.dumps({
        "reason": reason, "topic": topic, "partition": partition, "offset": offset,
        "key": key, "value": text, "value_b64": b64, "ts": time.time(),
    })  # fmt: skip


def create_app(settings: Settings) -> faust.App:
    """The Faust app of one worker, wired to ``settings``; ``app.engine`` is its recommendation engine."""
    settings.worker_dir.mkdir(parents=True, exist_ok=True)  # Faust makes its datadir, but not the folders above
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=str(settings.worker_dir),
        web_port=settings.web_port,
        web_host="127.0.0.1",
        topic_partitions=settings.partitions,
        producer_max_request_size=4 * 1024 * 1024,
        consumer_auto_offset_reset="earliest",
        producer_linger=settings.linger,  # 0 sent a request per few messages: 253-297 -> 323 events/s
    )
    engine = Engine(settings)
    app.engine = engine  # type: ignore[attr-defined]

    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    events_topic = app.topic(settings.topic_events, **raw)
    recommendations = app.topic(settings.topic_recommendations, **raw)
    embeddings = app.topic(settings.topic_embeddings, **raw)
    dlq = app.topic(settings.topic_dlq, **raw)

    sequences = app.Table(
        "user_sequences",
        partitions=settings.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        options={"driver": "rocksdict"},
    )
    app.sequences = sequences  # type: ignore[attr-defined]

    # "topic:partition" -> the next offset after those learned from; a resumed model starts from its checkpoint's,
    # so a restart with nothing new to learn does not write a checkpoint that has forgotten them.
    offsets: dict[str, int] = dict(engine.offsets)

    @app.agent(events_topic)
    async def process(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):  # type: ignore[attr-defined]
            states: dict[str, dict[str, Any]] = {}
            sources: dict[str, faust.EventT] = {}  # user -> the event whose partition the user's state is on
            accepted: list[Accepted] = []
            taken: dict[str, int] = {}
            for ev in batch:
                msg = ev.message
                taken[f"{msg.topic}:{msg.partition}"] = msg.offset + 1
                engine.metrics.events += 1
                try:
                    event = parse_event(ev.value, settings.max_event_bytes)
                except InvalidEvent as exc:
                    engine.metrics.invalid += 1
                    log.warning("%s[%d] offset %d: dead-lettered, skipped: %s",
                                msg.topic, msg.partition, msg.offset, exc.reason)  # fmt: skip
                    envelope = dead_letter(exc.reason, msg.topic, msg.partition, msg.offset, ev.key, ev.value)
                    await dlq.send(key=ev.key, value=envelope)
                    continue
                user = event.user_id
                state = states[user] if user in states else sequences.get(user)
                if is_duplicate(state, event.event_id):
                    engine.metrics.duplicates += 1
                    continue
                engine.metrics.score(event, state["served"] if state else [])
                new = append(state, event, max_len=settings.seq_len)
                states[user] = new
                sources[user] = ev
                accepted.append(Accepted(event, steps(state), steps(new)))
            if not accepted:
                offsets.update(taken)
                continue
            outputs = await asyncio.to_thread(engine.process, accepted)
            offsets.update(taken)  # learned from: what a checkpoint may claim
            for a, out in zip(accepted, outputs, strict=True):
                user = a.event.user_id
                states[user] = with_served(states[user], [i["item_id"] for i in out.recommendation["items"]])
            for user, state in states.items():
                # After take_events, the "current event" (from which a table takes the changelog partition)
                # is the batch's last; point it at the user's own event for this write, then put it back.
                token = _current_event.set(weakref.ref(sources[user]))
                sequences[user] = state  # assigned back, so the changelog carries it
                _current_event.reset(token)
            for a, out in zip(accepted, outputs, strict=True):
                key = a.event.user_id.encode()
                await recommendations.send(key=key, value=orjson.dumps(out.recommendation))
                if out.embedding is not None:
                    await embeddings.send(key=key, value=orjson.dumps(out.embedding))

    if settings.checkpoint_every > 0:

        @app.timer(interval=settings.checkpoint_every)
        async def save_checkpoint() -> None:
            # Off the event loop: the copy of the model waits for the engine's lock, which a batch in progress
            # holds; packing and writing it then go on beside the next batches.
            path = await asyncio.to_thread(engine.checkpoint, dict(offsets))
            if path is not None:
                log.info("checkpoint %s", path)

    app.process_agent = process  # type: ignore[attr-defined]
    return app
