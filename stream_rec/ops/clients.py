"""Plain Kafka clients (kafka-python) for the outside of the pipeline: producing events, reading topics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ..errors import BrokerError
from ..settings import Settings
from ..wire.events import Event, encode_event

__all__ = ["Pacer", "consume", "forget", "open_consumer", "produce", "producer"]


class Pacer:
    """Sleeps so that calls to :meth:`tick` happen at most ``rate`` times a second (0 = no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.start = time.monotonic()
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.interval:
            ahead = self.start + self.count * self.interval - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(
        **settings.client_config(
            acks="all",  # no event lost once produce() returns
            linger_ms=5,
            key_serializer=lambda k: k.encode(),
        )
    )


def produce(
    settings: Settings,
    events: Iterable[Event],
    *,
    rate: float = 0.0,
    limit: int | None = None,
    on_sent: Callable[[Event], None] | None = None,
    topic: str | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Write events keyed by user id, ``rate`` per second at most (0 = as fast as possible); return the count."""
    kafka = producer(settings)
    pacer = Pacer(rate)
    sent = 0
    try:
        for event in events:
            if (limit is not None and sent >= limit) or (stop is not None and stop.is_set()):
                break
            pacer.tick()
            kafka.send(topic or settings.topic_events, key=event.user_id, value=encode_event(event))
            sent += 1
            if on_sent is not None:
                on_sent(event)
        if stop is None or not stop.is_set():
            kafka.flush()
    finally:
        kafka.close(timeout=0 if stop is not None and stop.is_set() else None)
    return sent


def open_consumer(settings: Settings, topic: str, *, from_beginning: bool = False) -> KafkaConsumer:
    """A group-less consumer assigned every partition of ``topic``, positioned now (no rebalance to wait for)."""
    consumer = KafkaConsumer(
        **settings.client_config(
            enable_auto_commit=False, group_id=None, auto_offset_reset="earliest" if from_beginning else "latest"
        )
    )
    deadline = time.monotonic() + 3  # a topic just created is in the metadata at once; a wrong name never is
    while not (partitions := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            there = sorted(t for t in consumer.topics() if not t.startswith("_"))
            consumer.close()
            listed = ", ".join(there[:12]) + (", ..." if len(there) > 12 else "") if there else "none"
            raise BrokerError(
                f"no topic {topic!r} on {settings.bootstrap} (its topics: {listed}); `stream-rec topics create` "
                "makes the project's"
            )
        time.sleep(0.2)
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    if from_beginning:
        consumer.seek_to_beginning(*assigned)
    else:
        consumer.seek_to_end(*assigned)
    for tp in assigned:
        consumer.position(tp)  # resolve the offsets now, before anything is produced
    return consumer


def consume(
    settings: Settings,
    topic: str | None = None,
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    timeout: float | None = None,
) -> Iterator[tuple[str | None, Any]]:
    """Yield (key, decoded JSON value) from a topic; stop after ``limit`` messages or ``timeout`` idle seconds."""
    consumer = open_consumer(settings, topic or settings.topic_recommendations, from_beginning=from_beginning)
    consumer.config["consumer_timeout_ms"] = int(timeout * 1000) if timeout else float("inf")
    n = 0
    try:
        for message in consumer:
            key = message.key.decode(errors="replace") if message.key is not None else None
            try:
                value = orjson.loads(message.value) if message.value is not None else None
            except orjson.JSONDecodeError:
                value = message.value.decode(errors="replace")
            yield key, value
            n += 1
            if limit is not None and n >= limit:
                return
    finally:
        consumer.close()


def forget(settings: Settings, user_id: str, *, wait: float = 0.0) -> bool:
    """Ask the workers to forget ``user_id`` (a command on the control topic, keyed by the user so that it lands on
    the user's partition); with ``wait``, wait that many seconds for the worker's tombstone of the user on the
    embeddings topic and say whether it came."""
    from ..wire.control import forget_command

    watch = open_consumer(settings, settings.topic_embeddings) if wait > 0 else None
    try:
        kafka = producer(settings)
        try:
            kafka.send(settings.topic_control, key=user_id, value=forget_command(user_id)).get(timeout=30)
        finally:
            kafka.close()
        if watch is None:
            return True
        key = user_id.encode()
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            for records in watch.poll(timeout_ms=int(min(left, 1.0) * 1000)).values():
                if any(r.key == key and r.value is None for r in records):
                    return True
        return False
    finally:
        if watch is not None:
            watch.close()
