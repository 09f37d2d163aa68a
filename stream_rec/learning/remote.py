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
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from kafka import ConsumerRebalanceListener

from ..sequences import example_from_json
from ..serving.remote import UpdateHeaders
from ..serving.scoring import Scorer
from ..serving.side import Queued
from ..serving.snapshots import Packer, parts, to_bytes
from ..settings import Settings
from .local import Learning

__all__ = ["FORGET_EXAMPLES", "RemoteTrainer", "newest_version"]

FORGET_EXAMPLES = b'{"forget": true}'  # sent by a worker keyed by the user (worker/agent.py): forget the user

log = logging.getLogger(__name__)


class RemoteTrainer:
    """The trainer role; :meth:`run` until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        self.settings = settings
        self._producer = KafkaProducer(
            **settings.client_config(
                client_id=f"{settings.app_id}-trainer", acks="all", max_in_flight_requests_per_connection=1,
                max_request_size=2 * 1024 * 1024, linger_ms=5,
            )
        )  # fmt: skip
        self._publishing = threading.Lock()
        self._packer = Packer()
        self._durations: list[float] = []
        self.version = newest_version(settings)  # the newest on the topic: a restart goes on from it
        self._full_at: int | None = None  # the offset of the newest full snapshot's first part
        self._full_ts = 0.0
        self.bytes_published = 0
        self.failed = 0  # updates not published (the broker away)
        self.invalid = 0
        self.lag: int | None = None  # examples on the topic not read yet, as of the last look
        self._rate: deque[tuple[float, int]] = deque(maxlen=20)  # (time, examples learned), a look a second
        self.started = time.time()
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
            **s.client_config(
                group_id=f"{s.app_id}-trainer", client_id=f"{s.app_id}-trainer", enable_auto_commit=False,
                auto_offset_reset="earliest", max_poll_records=1000,
            )
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
                if not self._rate or now - self._rate[-1][0] >= 1.0:
                    self._look(consumer, now)
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

    def _look(self, consumer: Any, now: float) -> None:
        """Take the lag on the examples topic and a point of the learning rate (in the consumer's thread)."""
        self._rate.append((now, self.learning.status().examples))
        assigned = list(consumer.assignment())
        try:
            ends = consumer.end_offsets(assigned) if assigned else {}
            self.lag = sum(max(0, ends[tp] - consumer.position(tp)) for tp in assigned)
        except Exception:  # a rebalance in between: the next look
            self.lag = None

    def stats(self) -> dict[str, Any]:
        """The trainer's view (``GET /stats``): what it learned, how fast, how far behind, what it published."""
        status, rate = self.learning.status(), list(self._rate)
        per_s = (rate[-1][1] - rate[0][1]) / (rate[-1][0] - rate[0][0]) if len(rate) > 1 else None
        return {
            "role": "trainer", "app_id": self.settings.app_id, "uptime_s": round(time.time() - self.started, 1),
            "examples": status.examples, "examples_per_s": None if per_s is None else round(per_s, 1),
            "steps": status.steps, "loss": status.loss, "drift_alarms": status.drifts, "waiting": status.waiting,
            "learn_dropped": status.dropped, "invalid": self.invalid, "lag": self.lag,
            "version_published": self.version, "bytes_published": self.bytes_published, "failed": self.failed,
            "topic_examples": self.settings.topic_examples, "topic_updates": self.settings.topic_updates,
            "checkpoint": status.checkpoint, "checkpoint_ts": status.checkpoint_ts,
        }  # fmt: skip

    def serve_stats(self, port: int) -> None:
        """Serve :meth:`stats` as JSON on ``port`` of ``web_bind`` in a thread (a port taken: a warning, no view)."""
        trainer = self

        class View(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path.split("?")[0] in ("/stats", "/")
                body = orjson.dumps(trainer.stats() if found else {"error": f"no page {self.path}; see /stats"})
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        try:
            server = ThreadingHTTPServer((self.settings.web_bind, port), View)
        except OSError as exc:
            log.warning("no trainer view on %s:%d (%s)", self.settings.web_bind, port, exc)
            return
        threading.Thread(target=server.serve_forever, name="stream-rec-trainer-view", daemon=True).start()
        log.info("trainer view on http://%s:%d/stats", self.settings.web_bind, port)

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
            self.version = version  # taken even if it fails: a version number is never published twice
            try:
                futures = []
                for i, chunk in enumerate(chunks):
                    headers = UpdateHeaders(version, base, i, len(chunks), None if full else self._full_at)
                    futures.append(self._producer.send(self.settings.topic_updates, value=chunk, partition=0,
                                                       headers=headers.encode()))  # fmt: skip
                first = futures[0].get(timeout=30)  # in order, one request in flight: the rest follow it
                for future in futures[1:]:
                    future.get(timeout=30)
            except Exception as exc:  # the broker away: learning goes on, and the next update is a full snapshot
                self._full_at = None
                self.failed += 1
                log.warning("model update %d not published (%s); the next one is a full snapshot", version, exc)
                return
            if full:
                self._full_at, self._full_ts = first.offset, time.monotonic()
            self.bytes_published += len(data)


def newest_version(settings: Settings) -> int:
    """The version of the newest update on the model-updates topic (0 where there is none), so that a restarted
    trainer's versions go on from there and a worker's applied version never goes back."""
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(settings.topic_updates, 0)
    consumer = KafkaConsumer(**settings.client_config(enable_auto_commit=False, group_id=None))
    try:
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        if end == 0:
            return 0
        consumer.seek(tp, end - 1)
        for _ in range(25):  # a few seconds at most
            for record in consumer.poll(timeout_ms=200).get(tp, []):
                try:
                    return UpdateHeaders.decode(record.headers).version
                except ValueError:
                    return 0
        return 0
    finally:
        consumer.close()


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
