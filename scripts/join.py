"""A serving worker joining a running pair of roles: how long it takes to serve with the current model, and what
the model-updates topic carries.

    python scripts/join.py                              # MovieLens at 200 events/s, the second worker at 30 s
    python scripts/join.py --rate 200 --join-at 30 --limit 12000
    STREAM_REC_BROKER=host:9092 python scripts/join.py

One `stream-rec trainer` and one `stream-rec worker --no-trainer` (STREAM_REC_LEARN_IN=kafka) serve a MovieLens
stream at ``--rate``; ``--join-at`` seconds in, a second serving worker starts. The script prints when that
worker's process started, when it applied its first model (a full snapshot) and when its applied version first
reached the trainer's newest (read from both web views every 0.2 s), then, over the whole run, the bytes per
second on the model-updates topic and how many of its messages were full snapshots. The run's topics, groups and
state are its own and deleted afterwards. Figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from stream_rec import datasets
from stream_rec.ops import kafka_local
from stream_rec.ops.clients import produce
from stream_rec.ops.processes import free_port, isolated, start, stop_process
from stream_rec.ops.topics import create_topics, delete_topics, load_specs, specs_for
from stream_rec.settings import Settings


def view(settings: Settings) -> dict[str, Any] | None:
    address = f"http://127.0.0.1:{settings.web_port}/stats"
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(address, timeout=2) as response:
        found: dict[str, Any] = orjson.loads(response.read())
        return found
    return None


def since(log: str, pattern: str, start: float) -> float:
    """Seconds from ``start`` (wall clock) to the first log line matching ``pattern`` (NaN where none does)."""
    found = re.search(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)\][^\n]*" + pattern, log)
    if found is None:
        return float("nan")
    return time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")) + int(found.group(2)) / 1000 - start


def updates_topic(settings: Settings) -> tuple[int, int, int]:
    """(messages, bytes, full-snapshot parts) on the model-updates topic now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.client_config(enable_auto_commit=False, group_id=None))
    tp = TopicPartition(settings.topic_updates, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    n = size = full = 0
    try:
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                for r in records:
                    n, size = n + 1, size + len(r.value or b"")
                    full += not dict(r.headers).get("base")  # a full snapshot builds on nothing
    finally:
        consumer.close()
    return n, size, full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    parser.add_argument("--join-at", type=float, default=30.0, help="seconds before the second worker starts")
    parser.add_argument("--limit", type=int, default=12_000, help="MovieLens events to send (default 12,000)")
    args = parser.parse_args()
    path = datasets.default_dataset()
    if path is None:
        raise SystemExit("no ml-100k/u.data in ../shared/data")
    events = datasets.load(path, limit=args.limit)
    console = Console()
    configured = Settings(learn_in="kafka")
    started_broker = False
    if configured.broker is None:
        started_broker = not kafka_local.start(configured).already_running
        configured = configured.model_copy(update={"broker": configured.bootstrap})
    with tempfile.TemporaryDirectory(prefix="stream-rec-join-") as folder:
        one = isolated(configured, "join", Path(folder))
        two = one.model_copy(update={"data_dir": Path(folder) / "second", "web_port": free_port()})
        trainer_settings = one.model_copy(update={"data_dir": Path(folder) / "trainer", "web_port": free_port()})
        create_topics(one, specs_for(one, load_specs()))
        procs = [
            start("stream_rec", trainer_settings, Path(folder) / "trainer.log", "trainer"),
            start("stream_rec", one, Path(folder) / "first.log", "worker", "--no-trainer"),
        ]
        try:
            while (v := view(one)) is None or v.get("model_version") is None:
                time.sleep(0.5)
            feeder = threading.Thread(target=produce, args=(one, events), kwargs={"rate": args.rate}, daemon=True)
            t0 = time.monotonic()
            feeder.start()
            time.sleep(args.join_at)
            procs.append(start("stream_rec", two, Path(folder) / "second.log", "worker", "--no-trainer"))
            joined, joined_wall = time.monotonic(), time.time()
            first = caught = None
            while caught is None and time.monotonic() - joined < 120:
                mine, theirs = view(two), view(trainer_settings)
                if mine and theirs and (applied := (mine.get("model_updates") or {}).get("applied")):
                    first = first or time.monotonic() - joined
                    if applied >= theirs.get("version_published", 0):
                        caught = time.monotonic() - joined
                time.sleep(0.2)
            feeder.join()
            seconds = time.monotonic() - t0
            n, size, full = updates_topic(one)
            log = (Path(folder) / "second.log").read_text(errors="replace")
            applied_line = re.search(r"model version \d+ applied \(a full snapshot[^)]*\)", log)
            starting, ready = (since(log, rf"\[\^Worker\]: {word}", joined_wall) for word in ("Starting", "Ready"))
            console.print(f"the second worker: Faust starting {starting:.1f} s after its process, ready {ready:.1f} s, "
                          f"first model "
                          f"{first or float('nan'):.1f} s, the "
                          f"trainer's newest version {caught or float('nan'):.1f} s after"
                          f"{f' ({applied_line.group(0)})' if applied_line else ''}")  # fmt: skip
            console.print(f"model-updates: {n} messages ({full} parts of full snapshots), {size / 1e6:.1f} MB in "
                          f"{seconds:.0f} s: {size / seconds / 1e3:.0f} KB/s at {args.rate:g} events/s")  # fmt: skip
        finally:
            for proc in procs:
                stop_process(proc)
            delete_topics(one, containing=one.topic_events.removesuffix("-events"))
    if started_broker:
        kafka_local.stop(configured)


if __name__ == "__main__":
    main()
