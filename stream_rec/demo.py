"""``stream-rec demo``: the whole pipeline in one command, with recommendations and the hit rate shown live.

Where no broker is configured it installs and starts the local one; it creates the topics, starts a worker
process, replays a dataset (MovieLens 100K if found, else a synthetic stream) and reads the recommendations
back, scoring each event against the list served to its user before it ("as served", as the worker's own live
metrics do): the newest list of an earlier batch. A list from the event's own batch does not count, for it was
ranked after the whole batch, this event included, was learned from. Ctrl-C stops everything it started.

Each run is a stream of its own: its topics (``demo-<run>-events``, ...), consumer group and worker state are new
and are deleted at the end. A run never starts from what an earlier one learned (replaying the same events
into users' sequences that already hold them would score nonsense), nor waits behind events an earlier one left.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import datasets, kafka_local, synthetic
from .clients import open_consumer, produce
from .events import Event
from .processes import isolated, start, stop_process
from .settings import Settings
from .topics import create_topics, delete_topics, load_specs, specs_for

__all__ = ["AsServed", "run_demo"]


@dataclasses.dataclass
class AsServed:
    """Hit rate of each event against the newest list its user was served from an earlier batch.

    The worker learns a batch, then ranks each of its events; a user with two events in one batch gets, for the
    first, a list ranked after learning the second, which would score it a hit. Lists of one batch share their
    ``model_version`` (the model's steps), so a list counts only for events of a later version. Where no step
    was taken between two batches they share a version too, and the older list is used: stricter, never leaky.
    """

    scored: int = 0
    hits: int = 0
    # user -> (model_version of the newest list, the newest list, the newest list of an earlier version)
    lists: dict[str, tuple[str, list[str], list[str]]] = dataclasses.field(default_factory=dict)

    def add(self, user: str, item: str, version: str, served: list[str]) -> None:
        """Score ``item`` (the event's) against the user's list before it, then remember ``served`` (its list)."""
        last_version, newest, earlier = self.lists.get(user, ("", [], []))
        before = earlier if version == last_version else newest
        if before:
            self.scored += 1
            self.hits += item in before
        self.lists[user] = (version, served, before)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.scored if self.scored else 0.0


def run_demo(settings: Settings, *, dataset: str | None, fmt: str, rate: float, limit: int | None) -> int:
    console = Console()
    t0 = time.monotonic()
    started_broker = False
    if settings.broker is None:
        console.print("No broker configured (STREAM_REC_BROKER): using the local one.")
        status = kafka_local.start(settings)
        started_broker = not status.already_running
        console.print(status.describe())
    try:
        return _run(settings, console, t0, dataset=dataset, fmt=fmt, rate=rate, limit=limit)
    finally:
        if started_broker:
            kafka_local.stop(settings)


def _run(
    configured: Settings, console: Console, t0: float, *, dataset: str | None, fmt: str, rate: float, limit: int | None
) -> int:
    path = Path(dataset) if dataset else datasets.default_dataset()
    if path is not None:
        events: list[Event] = datasets.load(path, fmt, limit=limit)
        console.print(f"Replaying {len(events)} events from {path} at {rate:g}/s (0 = max)")
    else:
        events = list(synthetic.synthetic_events(limit or 20_000))
        console.print(f"No dataset found: replaying {len(events)} synthetic events at {rate:g}/s")

    settings = isolated(configured, "demo", configured.home / "demo", web_port=configured.web_port)
    # Fresh event ids, named after the run: a dataset's own may repeat, and the worker would drop the repeats.
    run = settings.topic_events.removesuffix("-events")
    events = [dataclasses.replace(e, event_id=f"{run}-{i}") for i, e in enumerate(events)]
    for name, outcome in create_topics(settings, specs_for(settings, load_specs())).items():
        console.print(f"topic {name}: {outcome}")
    try:
        return _replay(settings, console, t0, events, rate)
    finally:
        delete_topics(settings, containing=run)
        shutil.rmtree(settings.worker_dir, ignore_errors=True)


def _replay(settings: Settings, console: Console, t0: float, events: list[Event], rate: float) -> int:
    """Start the worker, produce ``events`` and read their recommendations back; stop the worker at the end."""
    log_path = settings.home / "demo-worker.log"
    worker = start("stream_rec", settings, log_path, "worker")
    console.print(f"Worker started (pid {worker.pid}, log {log_path})")
    console.print(f"Dashboard, while the demo runs: http://127.0.0.1:{settings.web_port}/dashboard")
    try:
        consumer = open_consumer(settings, settings.topic_recommendations)
    except BaseException:
        stop_process(worker)
        raise
    items: dict[str, str] = {}
    stop = threading.Event()
    # Ctrl-C sets a flag rather than raising inside the Kafka clients, so that everything stops in order.
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    producer = threading.Thread(
        target=produce,
        args=(settings, events),
        kwargs={"rate": rate, "stop": stop, "on_sent": lambda e: items.__setitem__(e.event_id, e.item_id)},
        daemon=True,
    )
    producer.start()
    as_served = AsServed()
    received = 0
    first: float | None = None
    try:
        with Progress(
            TextColumn("[bold]recommendations"), BarColumn(), MofNCompleteColumn(),
            TextColumn("hit rate@{task.fields[k]} {task.fields[hr]:.3f}"), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("recs", total=len(events), hr=0.0, k=settings.k)
            while received < len(events) and not stop.is_set():
                if worker.poll() is not None:
                    console.print(f"[red]The worker exited with code {worker.returncode}; see {log_path}")
                    return 1
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        rec = _loads(record.value)
                        if rec is None or rec.get("event_id") not in items:
                            continue  # from an earlier run
                        received += 1
                        if first is None:
                            first = time.monotonic() - t0
                            progress.console.print(f"First recommendation {first:.1f} s after start: {_show(rec)}")
                        served = [i["item_id"] for i in rec["items"]]
                        as_served.add(rec["user_id"], items[rec["event_id"]], rec["model_version"], served)
                        if received % 2000 == 0:
                            progress.console.print(_show(rec))
                progress.update(task, completed=received, hr=as_served.hit_rate)
        if stop.is_set():
            console.print("Interrupted: stopping what the demo started.")
            return 130
        elapsed = time.monotonic() - t0
        rate_seen = received / max(elapsed - (first or 0.0), 1e-9)
        console.print(
            f"Done: {received} recommendations, hit rate@{settings.k} as served {as_served.hit_rate:.4f} "
            f"over {as_served.scored} scored events; {rate_seen:.0f} recommendations/s after the first; "
            f"{elapsed:.1f} s in all"
        )
        return 0
    except KeyboardInterrupt:
        console.print("Interrupted: stopping what the demo started.")
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        stop.set()
        producer.join(30)
        consumer.close()
        stop_process(worker)


def _loads(value: bytes | None) -> dict[str, Any] | None:
    import orjson

    try:
        return orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None


def _show(rec: dict[str, Any]) -> str:
    items = ", ".join(i["item_id"] for i in rec["items"][:5])
    return f"user {rec['user_id']} ({rec['strategy']}): {items}, ..."
