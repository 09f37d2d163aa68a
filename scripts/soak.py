"""Soak: a worker at its maximum rate for minutes through the real broker, printing RSS and lag over time.

    python scripts/soak.py                          # 10 minutes, synthetic events, the local broker
    python scripts/soak.py --minutes 2 --sample 10  # a short one
    STREAM_REC_BROKER=host:9092 python scripts/soak.py

A producer keeps ``--backlog`` events waiting for the worker (so it never idles and the backlog stays bounded)
from a synthetic stream of ``--users`` users and ``--items`` items, every event with an id of its own. Every
``--sample`` seconds it prints the worker's RSS, the events answered per second, the backlog (produced minus
answered) and Kafka's consumer lag (the events topic's end offsets minus the worker's committed offsets). At the
end it drains, then says how many events were produced, answered and never answered (must be 0). The run's
topics, consumer group and worker state are its own and deleted afterwards. Figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from rich.console import Console

from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.ops import kafka_local
from stream_rec.ops.clients import open_consumer
from stream_rec.ops.processes import isolated, start, stop_process
from stream_rec.ops.topics import create_topics, delete_topics, load_specs, specs_for
from stream_rec.settings import Settings
from stream_rec.wire.events import Event, encode_event


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory now (VmRSS) or its high-water mark (VmHWM), from Linux's /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Feeder(threading.Thread):
    """Produces fresh synthetic events while fewer than ``backlog`` are unanswered."""

    def __init__(self, settings: Settings, users: int, items: int, backlog: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.users, self.items, self.backlog = settings, users, items, backlog
        self.produced, self.answered = 0, 0
        self.halt = threading.Event()

    def run(self) -> None:
        kafka = KafkaProducer(**self.settings.client_config(acks="all", linger_ms=10))
        lap = 0
        try:
            while not self.halt.is_set():
                # each lap replays the synthetic stream later in time, with new ids: a stream that never repeats
                for e in synthetic_events(50_000, users=self.users, items=self.items, seed=lap):
                    while self.produced - self.answered >= self.backlog and not self.halt.is_set():
                        time.sleep(0.01)
                    if self.halt.is_set():
                        break
                    event = Event(e.user_id, e.item_id, e.event, e.ts + lap * 3e6, f"soak-{self.produced}",
                                  e.context, e.item)  # fmt: skip
                    kafka.send(self.settings.topic_events, key=event.user_id.encode(), value=encode_event(event))
                    self.produced += 1
                lap += 1
            kafka.flush()
        finally:
            kafka.close()


def committed_lag(settings: Settings, admin: KafkaAdminClient, ends: KafkaConsumer) -> int:
    parts = [TopicPartition(settings.topic_events, p) for p in range(settings.partitions)]
    offsets = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
    end = ends.end_offsets(parts)
    return sum(end[tp] - (offsets[tp].offset if tp in offsets else 0) for tp in parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--backlog", type=int, default=5000, help="events kept waiting for the worker (default 5,000)")
    parser.add_argument("--users", type=int, default=20_000, help="synthetic users (default 20,000)")
    parser.add_argument("--items", type=int, default=50_000, help="synthetic items (default 50,000)")
    args = parser.parse_args()
    console = Console()
    configured = Settings()
    started = False
    if configured.broker is None:
        status = kafka_local.start(configured)
        started = not status.already_running
        configured = configured.model_copy(update={"broker": configured.bootstrap})
    with tempfile.TemporaryDirectory(prefix="stream-rec-soak-") as folder:
        settings = isolated(configured, "soak", Path(folder))
        create_topics(settings, specs_for(settings, load_specs()))
        recs = open_consumer(settings, settings.topic_recommendations)
        worker = start("stream_rec", settings, Path(folder) / "worker.log", "worker")
        feeder = Feeder(settings, args.users, args.items, args.backlog)
        admin = KafkaAdminClient(**settings.client_config())
        ends = KafkaConsumer(**settings.client_config())
        seen: set[str] = set()
        try:
            console.print(f"soak: {args.minutes:g} min, backlog {args.backlog}, worker pid {worker.pid}, "
                          f"log {Path(folder) / 'worker.log'}")  # fmt: skip
            console.print(f"{'t s':>6} {'RSS MB':>8} {'answered/s':>11} {'backlog':>8} {'committed lag':>14}")
            feeder.start()
            t0 = last = time.monotonic()
            answered_at_last = 0
            while time.monotonic() - t0 < args.minutes * 60:
                for records in recs.poll(timeout_ms=500).values():
                    for r in records:
                        seen.add(orjson.loads(r.value)["event_id"])
                feeder.answered = len(seen)
                if time.monotonic() - last >= args.sample:
                    now = time.monotonic()
                    rate = (len(seen) - answered_at_last) / (now - last)
                    lag = committed_lag(settings, admin, ends)
                    console.print(f"{now - t0:6.0f} {rss_mb(worker.pid):8.0f} {rate:11.0f} "
                                  f"{feeder.produced - len(seen):8d} {lag:14d}")  # fmt: skip
                    last, answered_at_last = now, len(seen)
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited with code {worker.returncode}")
            feeder.halt.set()
            feeder.join(60)
            deadline = time.monotonic() + 300
            while len(seen) < feeder.produced and time.monotonic() < deadline:
                for records in recs.poll(timeout_ms=500).values():
                    for r in records:
                        seen.add(orjson.loads(r.value)["event_id"])
            lost = feeder.produced - len(seen)
            console.print(f"produced {feeder.produced}, answered {len(seen)}, never answered {lost}; "
                          f"RSS {rss_mb(worker.pid):.0f} MB, peak {rss_mb(worker.pid, 'VmHWM'):.0f} MB")  # fmt: skip
        finally:
            feeder.halt.set()
            stop_process(worker)
            recs.close()
            ends.close()
            admin.close()
            # "soak-<8 hex>": the run's own topics and, inside its app id, the worker's changelog.
            delete_topics(settings, containing=settings.topic_events.removesuffix("-events"))
            if started:
                kafka_local.stop(configured)


if __name__ == "__main__":
    main()
