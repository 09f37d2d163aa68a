"""``stream-rec demo``: the whole pipeline in one command, with recommendations and the hit rate shown live.

Where no broker is configured it installs and starts the local one; it creates the topics, starts a worker
process, replays a dataset (MovieLens 100K if found, else a synthetic stream) and reads the recommendations
back, scoring each event against the newest list served to its user before it ("as served", as the worker's own
live metrics do), beside two baselines served the same events the same way in the demo's process (popularity,
and the user's recent items then what followed them: recent-markov), with a summary table at the end. It says
what it is doing at each phase, with the time since it began. Ctrl-C stops everything it started.

Each run is a stream of its own: its topics (``demo-<run>-events``, ...), consumer group and worker state are new
and are deleted at the end. A run never starts from what an earlier one learned (replaying the same events
into users' sequences that already hold them would score nonsense), nor waits behind events an earlier one left.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import datasets
from ..datasets import synthetic
from ..errors import BrokerUnreachable
from ..recommenders import Popularity, RecentMarkov, Recommender
from ..sequences import Step, step_of
from ..settings import Settings
from ..wire.events import Event
from . import kafka_local
from .clients import open_consumer, produce
from .probe import PROBE_TIMEOUT, is_up
from .processes import isolated, start, stop_process
from .topics import create_topics, delete_topics, load_specs, specs_for

__all__ = ["AsServed", "Beside", "run_demo"]


@dataclasses.dataclass
class AsServed:
    """Hit rate of each event against the newest list its user was served before it, as the worker's own live
    metrics score it: a list answers the event it was made for, from the history up to it and a model snapshot
    that had not learned from anything after it, so the user's next event is fair to score against it."""

    scored: int = 0
    hits: int = 0
    lists: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # user -> the newest list served

    def add(self, user: str, item: str, served: list[str]) -> None:
        """Score ``item`` (the event's) against the user's list before it, then remember ``served`` (its list)."""
        before = self.lists.get(user)
        if before:
            self.scored += 1
            self.hits += item in before
        self.lists[user] = served

    @property
    def hit_rate(self) -> float:
        return self.hits / self.scored if self.scored else 0.0


class Beside:
    """A baseline served the same events the same way, in the demo's process: for each event as the worker
    answers it, the baseline learns it and ranks the user's next list; events are scored against those lists by
    :class:`AsServed` too, so the model's figure can be judged."""

    def __init__(self, name: str, recommender: Recommender, k: int, exclude_seen: bool) -> None:
        self.name, self.recommender, self.k, self.exclude_seen = name, recommender, k, exclude_seen
        self.histories: dict[str, list[Step]] = {}
        self.as_served = AsServed()

    def add(self, event: Event, max_len: int) -> None:
        history = self.histories.setdefault(event.user_id, [])
        step = step_of(event)
        self.recommender.learn_many([(list(history), step)])
        history.append(step)
        del history[:-max_len]
        served = [item for item, _ in self.recommender.rank(history, self.k, self.exclude_seen)]
        self.as_served.add(event.user_id, event.item_id, served)


class Phases:
    """Says what the demo is doing, with the time since it began."""

    def __init__(self, console: Console) -> None:
        self.console, self.t0 = console, time.monotonic()

    def __call__(self, message: str) -> None:
        self.console.print(f"[dim][{self.elapsed():6.1f} s][/dim] {message}")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def run_demo(
    settings: Settings, *, dataset: str | None, fmt: str, rate: float, limit: int | None,
    columns: dict[str, str] | None = None,
) -> int:  # fmt: skip
    console = Console()
    say = Phases(console)
    started_broker = False
    if settings.broker is None:
        if not kafka_local.status(settings).installed:
            say(f"broker: fetching Kafka {settings.kafka_version}'s jars from Maven Central (once, about 60 MB)")
            kafka_local.install(settings)
        say(f"broker: none configured (STREAM_REC_BROKER), starting the local one on {settings.bootstrap}")
        status = kafka_local.start(settings)
        started_broker = not status.already_running
        say(status.describe())
    elif not is_up(settings.bootstrap, timeout=PROBE_TIMEOUT, security=settings.security):
        raise BrokerUnreachable(settings.bootstrap)
    try:
        return _run(settings, console, say, dataset=dataset, fmt=fmt, columns=columns, rate=rate, limit=limit)
    finally:
        if started_broker:
            say("broker: stopping the local one the demo started")
            kafka_local.stop(settings)


def _run(
    configured: Settings, console: Console, say: Phases, *, dataset: str | None, fmt: str,
    columns: dict[str, str] | None, rate: float, limit: int | None,
) -> int:  # fmt: skip
    path = Path(dataset) if dataset else datasets.default_dataset()
    if path is not None:
        events: list[Event] = datasets.load(path, fmt, limit=limit, columns=columns)
        say(f"data: {len(events)} events from {path}")
        if (fmt if fmt != "auto" else datasets.detect_format(path)) == "movielens" and (
            "exclude_seen" not in configured.model.model_fields_set
        ):
            configured = configured.model_copy(update={"model": configured.model.replaced(exclude_seen=True)})
            say("data: a rating never repeats an item, so lists leave out the user's seen items "
                "(STREAM_REC_MODEL__EXCLUDE_SEEN=false keeps them)")  # fmt: skip
    else:
        events = list(synthetic.synthetic_events(limit or 20_000))
        say(f"data: no dataset found, {len(events)} synthetic events")

    settings = isolated(configured, "demo", configured.home / "demo", web_port=configured.web_port)
    # Fresh event ids, named after the run: a dataset's own may repeat, and the worker would drop the repeats.
    run = settings.topic_events.removesuffix("-events")
    events = [dataclasses.replace(e, event_id=f"{run}-{i}") for i, e in enumerate(events)]
    created = create_topics(settings, specs_for(settings, load_specs()))
    say(f"topics: {', '.join(created)} ({', '.join(sorted(set(created.values())))})")
    try:
        return _replay(settings, console, say, events, rate)
    finally:
        delete_topics(settings, containing=run)
        shutil.rmtree(settings.worker_dir, ignore_errors=True)


def _wait_until_serving(worker: subprocess.Popen[bytes], settings: Settings, timeout: float = 300.0) -> bool:
    """Whether the worker's /health said it serves within ``timeout`` seconds (False: it exited first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):  # not listening yet, or 503: not serving yet
            pass
        time.sleep(0.5)
    return worker.poll() is None


def _replay(settings: Settings, console: Console, say: Phases, events: list[Event], rate: float) -> int:
    """Start the worker, produce ``events`` and read their recommendations back; stop the worker at the end."""
    log_path = settings.home / "demo-worker.log"
    worker = start("stream_rec", settings, log_path, "worker")
    say(f"worker: started (pid {worker.pid}, log {log_path}); waiting until it serves")
    try:
        if not _wait_until_serving(worker, settings):
            console.print(f"[red]The worker exited with code {worker.returncode}; see {log_path}")
            return 1
        say(f"worker: serving; dashboard at http://127.0.0.1:{settings.web_port}/dashboard while the demo runs")
        consumer = open_consumer(settings, settings.topic_recommendations)
    except BaseException:
        stop_process(worker)
        raise
    sent: dict[str, Event] = {}
    stop = threading.Event()
    # Ctrl-C sets a flag rather than raising inside the Kafka clients, so that everything stops in order.
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    producer = threading.Thread(
        target=produce,
        args=(settings, events),
        kwargs={"rate": rate, "stop": stop, "on_sent": lambda e: sent.__setitem__(e.event_id, e)},
        daemon=True,
    )
    say(f"replay: {len(events)} events at {rate:g}/s (0 = as fast as possible), recommendations read back")
    producer.start()
    as_served = AsServed()
    exclude = settings.model.exclude_seen
    baselines = [
        Beside("popularity", Popularity(), settings.k, exclude),
        Beside("recent-markov", RecentMarkov(), settings.k, exclude),
    ]
    received = 0
    first: float | None = None
    try:
        with Progress(
            TextColumn("[bold]recommendations"), BarColumn(), MofNCompleteColumn(),
            TextColumn("HR@{task.fields[k]} {task.fields[hr]:.3f} · popularity {task.fields[pop]:.3f} · "
                       "recent-markov {task.fields[rm]:.3f}"),
            TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("recs", total=len(events), hr=0.0, pop=0.0, rm=0.0, k=settings.k)
            while received < len(events) and not stop.is_set():
                if worker.poll() is not None:
                    console.print(f"[red]The worker exited with code {worker.returncode}; see {log_path}")
                    return 1
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        rec = _loads(record.value)
                        event = sent.get(rec.get("event_id", "")) if rec else None
                        if rec is None or event is None:
                            continue  # from an earlier run
                        received += 1
                        if first is None:
                            first = say.elapsed()
                            progress.console.print(f"First recommendation {first:.1f} s after start: {_show(rec)}")
                        as_served.add(rec["user_id"], event.item_id, [i["item_id"] for i in rec["items"]])
                        for baseline in baselines:
                            baseline.add(event, settings.seq_len)
                        if received % 5000 == 0:
                            progress.console.print(_show(rec))
                progress.update(
                    task, completed=received, hr=as_served.hit_rate, pop=baselines[0].as_served.hit_rate,
                    rm=baselines[1].as_served.hit_rate,
                )  # fmt: skip
        if stop.is_set():
            console.print("Interrupted: stopping what the demo started.")
            return 130
        elapsed = say.elapsed()
        rate_seen = received / max(elapsed - (first or 0.0), 1e-9)
        console.print(
            f"Done: {received} recommendations, hit rate@{settings.k} as served {as_served.hit_rate:.4f} "
            f"over {as_served.scored} scored events; {rate_seen:.0f} recommendations/s after the first; "
            f"{elapsed:.1f} s in all"
        )
        console.print(_summary(settings, as_served, baselines))
        return 0
    except KeyboardInterrupt:
        console.print("Interrupted: stopping what the demo started.")
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        stop.set()
        producer.join(30)
        consumer.close()
        say("worker: stopping")
        stop_process(worker)


def _summary(settings: Settings, model: AsServed, baselines: list[Beside]) -> Table:
    table = Table(title=f"hit rate@{settings.k} as served, on the same events")
    for column in ("recommender", f"HR@{settings.k}", "events scored", "where"):
        table.add_column(column, justify="left" if column in ("recommender", "where") else "right")
    table.add_row(f"stream-rec ({settings.model.encoder}-{settings.model.fusion})", f"{model.hit_rate:.4f}",
                  str(model.scored), "the worker, through Kafka")  # fmt: skip
    for b in baselines:
        table.add_row(b.name, f"{b.as_served.hit_rate:.4f}", str(b.as_served.scored), "in the demo, beside it")
    return table


def _loads(value: bytes | None) -> dict[str, Any] | None:
    import orjson

    try:
        return orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None


def _show(rec: dict[str, Any]) -> str:
    items = ", ".join(i["item_id"] for i in rec["items"][:5])
    return f"user {rec['user_id']} ({rec['strategy']}): {items}, ..."
