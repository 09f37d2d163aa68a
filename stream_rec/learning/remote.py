"""The trainer role (``stream-rec trainer``): learns from the examples serving workers send and publishes the model.

It reads the ``training-examples`` topic in a consumer group of its own, from the offsets its newest checkpoint
learned up to (the group's committed offsets, else the start, where it has none), and hands the examples to the
same :class:`~stream_rec.learning.local.Learning` a worker runs in its own process: a trainer thread, replay,
drift, guards, load shedding (``learn_dropped``) and checkpoints with the offsets learned up to. Every snapshot
it publishes goes to the ``model-updates`` topic (serving/remote.py says the format): what changed since the last
one, and all of it at start and every ``publish_full_every`` seconds. A user forgotten leaves its queue and replay
buffer, and every checkpoint is rewritten without them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from kafka import ConsumerRebalanceListener

from ..sequences import example_from_json
from ..serving.remote import UpdateHeaders
from ..serving.scoring import Scorer
from ..serving.side import Queued
from ..serving.snapshots import Packer, parts, to_bytes
from ..settings import Settings
from .local import Learning

__all__ = ["FORGET_EXAMPLES", "RemoteTrainer"]

FORGET_EXAMPLES = b'{"forget": true}'  # sent by a worker keyed by the user (worker/agent.py): forget the user

log = logging.getLogger(__name__)


class RemoteTrainer:
    """The trainer role; :meth:`run` until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        self.settings = settings
        self._producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap, client_id=f"{settings.app_id}-trainer", acks="all",
            max_in_flight_requests_per_connection=1, max_request_size=2 * 1024 * 1024, linger_ms=5,
        )  # fmt: skip
        self._publishing = threading.Lock()
        self._packer = Packer()
        self._durations: list[float] = []
        self.version = 0  # updates published
        self._full_at: int | None = None  # the offset of the newest full snapshot's first part
        self._full_ts = 0.0
        self.bytes_published = 0
        self.invalid = 0
        self._stopping = threading.Event()
        self.learning = Learning(settings, self._publish, freshness=self)  # publishes the model as it starts

    def extend(self, durations: Iterable[float]) -> None:
        """The trainer's freshness figures, measured just before it publishes: they go with the update."""
        self._durations.extend(durations)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Consume, learn and publish until :meth:`stop`; then learn what waits, checkpoint and close."""
        from kafka import KafkaConsumer, TopicPartition

        s, learning = self.settings, self.learning
        consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap, group_id=f"{s.app_id}-trainer", client_id=f"{s.app_id}-trainer",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=1000,
        )  # fmt: skip
        deadline = time.monotonic() + 30.0  # a topic just created: joining before its metadata would assign nothing
        while not consumer.partitions_for_topic(s.topic_examples) and time.monotonic() < deadline:
            time.sleep(0.2)
        consumer.subscribe([s.topic_examples], listener=_SeekToCheckpoint(consumer, learning))
        learning.start()
        last_checkpoint = last_report = time.monotonic()
        reported = (0, 0)  # examples learned and bytes published at the last report
        try:
            while not self._stopping.is_set():
                batches = consumer.poll(timeout_ms=200)
                for tp, records in batches.items():
                    self._take(TopicPartition(tp.topic, tp.partition), records)
                now = time.monotonic()
                if s.checkpoint_every > 0 and now - last_checkpoint >= s.checkpoint_every:
                    self._checkpoint(consumer)
                    last_checkpoint = now
                if s.status_every > 0 and now - last_report >= s.status_every:
                    reported = self._report(now - last_report, reported)
                    last_report = now
        finally:
            learning.stop()
            if s.checkpoint_every > 0:
                self._checkpoint(consumer)
            consumer.close()
            self._producer.flush(10.0)
            self._producer.close(5.0)

    def _report(self, seconds: float, before: tuple[int, int]) -> tuple[int, int]:
        """Log one status line; the examples learned and the bytes published so far."""
        status = self.learning.status()
        loss = "-" if status.loss is None else f"{status.loss:.3f}"
        log.info(
            "trainer: %d examples learned (%.1f/s), loss %s, version %d published (%d steps), %.0f KB/s on %s, "
            "%d waiting, %d shed unlearned, %d invalid", status.examples, (status.examples - before[0]) / seconds,
            loss, self.version, status.steps, (self.bytes_published - before[1]) / 1024 / seconds,
            self.settings.topic_updates, status.waiting, status.dropped, self.invalid,
        )  # fmt: skip
        return status.examples, self.bytes_published

    def _take(self, tp: Any, records: list[Any]) -> None:
        now, wall = time.monotonic(), time.time()
        items: list[Queued] = []
        source = f"{tp.topic}:{tp.partition}"
        for record in records:
            try:
                example, extra = example_from_json(record.value)
            except ValueError:
                if record.value == FORGET_EXAMPLES and record.key:
                    self._forget(items, record.key.decode())
                    items = []
                else:
                    self.invalid += 1
                    log.warning("%s offset %d: not a training example, skipped", source, record.offset)
                continue
            arrived = extra.get("arrived")
            arrived = now - max(0.0, wall - arrived) if isinstance(arrived, (int, float)) else now
            items.append(Queued(example, arrived, source, record.offset + 1))
        if items:
            self.learning.submit(items)

    def _forget(self, before: list[Queued], user: str) -> None:
        if before:
            self.learning.submit(before)  # in order: the user's earlier examples are queued, then dropped
        dropped = self.learning.forget(user)
        path = self.learning.checkpoint(replace_all=True) if self.settings.checkpoint_every > 0 else None
        log.info("forgot user %r: %d examples; checkpoint %s", user, dropped, path)

    def _checkpoint(self, consumer: Any) -> None:
        from kafka import OffsetAndMetadata, TopicPartition

        path = self.learning.checkpoint()
        if path is not None:
            log.info("checkpoint: %s", path)
        offsets = {}
        for key, offset in self.learning.offsets.items():
            topic, _, partition = key.rpartition(":")
            offsets[TopicPartition(topic, int(partition))] = OffsetAndMetadata(offset, "", -1)
        if offsets:  # for the group's lag as tools show it; the checkpoint's offsets are what a restart reads
            try:
                consumer.commit(offsets)
            except Exception as exc:  # a rebalance in between: the next checkpoint commits
                log.info("offsets not committed (%s)", exc)

    def _publish(self, scorer: Scorer) -> None:
        """One update on the model-updates topic: all of it at start and every ``publish_full_every`` seconds."""
        with self._publishing:
            full = self._full_at is None or time.monotonic() - self._full_ts >= self.settings.publish_full_every
            if full:
                self._packer = Packer()
            header, arrays = self._packer.pack(scorer)
            header["durations"], self._durations = self._durations, []
            header["published"] = time.time()
            learning = getattr(self, "learning", None)  # (not yet, for the snapshot it publishes as it is made)
            if learning is not None:
                header["status"] = dataclasses.asdict(learning.status())
            data = to_bytes(header, arrays)
            chunks = parts(data)
            version, base = self.version + 1, None if full else self.version
            futures = []
            for i, chunk in enumerate(chunks):
                headers = UpdateHeaders(version, base, i, len(chunks), None if full else self._full_at)
                futures.append(self._producer.send(self.settings.topic_updates, value=chunk, partition=0,
                                                   headers=headers.encode()))  # fmt: skip
            first = futures[0].get(timeout=30)  # in order, one request in flight: the rest follow it
            if full:
                self._full_at, self._full_ts = first.offset, time.monotonic()
            self.version = version
            self.bytes_published += len(data)


class _SeekToCheckpoint(ConsumerRebalanceListener):
    """Where the newest checkpoint has an offset for an assigned partition, the trainer starts there."""

    def __init__(self, consumer: Any, learning: Learning) -> None:
        self.consumer, self.learning = consumer, learning

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            offset = self.learning.offsets.get(f"{tp.topic}:{tp.partition}")
            if offset is not None:
                self.consumer.seek(tp, offset)
