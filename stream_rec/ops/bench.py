"""``stream-rec bench``: DESIGN.md's end-to-end benchmark through a real broker, against a bare-Faust ceiling.

Each of the two runs (the ceiling of :mod:`stream_rec.ops.ceiling` first, then the worker) gets its own topics,
consumer group and state folder, and a process of its own started with the same settings:

1. Warm-up: ``warmup`` events are produced and their outputs awaited, so that start-up, partition assignment and
   the first model steps are not timed; where the worker ranks from an item index (a large catalogue), its first
   index is awaited too.
2. Timed: ``n`` events are produced (as fast as possible, or ``rate`` per second) while a consumer reads the
   output topic until every one of them has an output. Events/s runs from the first event produced to the last
   output consumed; an event's latency from its produce time to its output's arrival (p50, p99, max).
3. The CPU time over the timed part and the peak RSS of the process and its children (the worker's learning
   process; Linux ``/proc``, each one's peak, summed); for the worker, its model freshness over the last minute
   (``/stats``: from an event's arrival until a published serving snapshot had learned from it) once its trainer
   has caught up, and the examples it shed unlearned. Then it is stopped and its topics deleted.

The ratio is the worker's events/s over the ceiling's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..errors import BrokerError, StreamRecError
from ..settings import Settings
from ..wire.events import Event
from .clients import open_consumer, produce
from .kafka_install import read_tail
from .processes import free_port, isolated, start, stop_process
from .topics import create_topics, delete_topics, load_specs, specs_for

__all__ = ["RunFigures", "percentile", "run_bench"]

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RunFigures:
    """What one timed run measured."""

    name: str
    events: int
    seconds: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float | None  # user + system CPU over the timed part, the process and its children (learning)
    cpu_percent: float | None  # of one core, over the timed part (can exceed 100 with threads)
    peak_rss_mb: float | None  # the process's high-water resident memory
    freshness_p50_ms: float | None = None  # the worker's: an event's arrival until a published snapshot learned it
    freshness_p99_ms: float | None = None
    learn_dropped: int | None = None  # the worker's examples shed unlearned
    serve_p50_ms: float | None = None  # the worker's: a batch read until its rankings are done (in the engine)
    serve_p99_ms: float | None = None
    # Where the latency goes: produced until the worker published its answer (in, queued, batched, served),
    # and published until the bench's consumer had it (the producer's linger, the broker, the fetch).
    published_p50_ms: float | None = None
    published_p99_ms: float | None = None
    delivered_p50_ms: float | None = None
    delivered_p99_ms: float | None = None
    trainer_cpu_s: float | None = None  # learn_in = kafka: the trainer process's CPU over the timed part
    hit_rate: float | None = None  # the worker's: HR@k as served, each event against the list served before it
    catalogue_items: int | None = None  # the worker's: items its model ranks over at the end
    ranking: str | None = None  # the worker's at the end: "exact" (every item scored) or "index" (retrieval.py)
    index_build_s: float | None = None  # the worker's newest item index: how long it took to build


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method.

    >>> percentile([5, 1, 4, 2, 3], 50), percentile(range(1, 101), 99), percentile([7.0], 99)
    (3, 99, 7.0)
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least 1
    return ordered[int(rank) - 1]


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the worker and its learning process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in children.read_text().split()]
    return out


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of ``pid`` and its descendants so far."""
    total = None
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total = (total or 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def _peak_rss_mb(pid: int) -> float | None:
    """The peak resident memory of ``pid`` and of each descendant, summed."""
    total = None
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total = (total or 0.0) + int(line.split()[1]) / 1024
    return total


class _Outputs:
    """Reads the output topic and records when each awaited event id's output arrived."""

    def __init__(self, settings: Settings, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.consumer = open_consumer(settings, settings.topic_recommendations)
        self.proc = proc
        self.log = log
        self.arrived: dict[str, float] = {}
        self.published: dict[str, float] = {}  # the output's own published_ts, where it has one

    def await_ids(self, ids: set[str], idle_timeout: float) -> None:
        """Poll until every id in ``ids`` has arrived; fail if nothing new arrives for ``idle_timeout`` s."""
        last = time.monotonic()
        while not ids <= self.arrived.keys():
            if self.proc.poll() is not None:
                # the log's folder goes when the bench ends: say its first error here
                lines = read_tail(self.log, lines=100_000).splitlines()
                first = next(
                    (line for line in lines if "[ERROR]" in line or "Error:" in line), lines[-1] if lines else ""
                )
                code = self.proc.returncode
                raise StreamRecError(f"the benchmarked process exited with code {code}: {first.strip()}")
            if time.monotonic() - last > idle_timeout:
                missing = len(ids - self.arrived.keys())
                raise StreamRecError(f"{missing} outputs still missing after {idle_timeout:.0f} s idle; see {self.log}")
            for records in self.consumer.poll(timeout_ms=200).values():
                now = time.time()
                for record in records:
                    try:
                        value = orjson.loads(record.value)
                        event_id = value.get("event_id")
                    except (orjson.JSONDecodeError, AttributeError):
                        continue
                    if isinstance(event_id, str) and event_id not in self.arrived:
                        self.arrived[event_id] = now
                        if isinstance(published := value.get("published_ts"), float):
                            self.published[event_id] = published
                        last = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


def _measure(
    name: str, module: str, settings: Settings, warmup: list[Event], events: list[Event], rate: float, say: Say,
    idle_timeout: float,
) -> RunFigures:  # fmt: skip
    create_topics(settings, specs_for(settings, load_specs()))
    log = settings.worker_dir.with_suffix(".log")
    roles = module == "stream_rec" and settings.learn_in == "kafka"  # the trainer apart, its CPU counted apart
    args = ["worker", "--no-trainer"] if roles else ["worker"] if module == "stream_rec" else []
    proc = start(module, settings, log, *args)
    trainer = None
    if roles:
        trainer_settings = settings.model_copy(  # a web view of its own: on the worker's port, one of them would fail
            update={"data_dir": settings.worker_dir.with_name(f"{name}-trainer"), "web_port": free_port()}
        )
        trainer = start(module, trainer_settings, log.with_name(f"{name}-trainer.log"), "trainer")
    outputs = _Outputs(settings, proc, log)
    try:
        say(f"{name}: started (pid {proc.pid}); warming up with {len(warmup)} events")
        produce(settings, warmup)
        outputs.await_ids({e.event_id for e in warmup}, idle_timeout=max(idle_timeout, 180.0))
        if module == "stream_rec":
            _await_index(settings, say)
        say(f"{name}: timing {len(events)} events at {'the maximum rate' if rate <= 0 else f'{rate:g}/s'}")
        sent: dict[str, float] = {}
        cpu0 = _cpu_seconds(proc.pid)
        trainer_cpu0 = _cpu_seconds(trainer.pid) if trainer is not None else None
        producer = threading.Thread(
            target=produce, args=(settings, events),
            kwargs={"rate": rate, "on_sent": lambda e: sent.__setitem__(e.event_id, time.time())}, daemon=True,
        )  # fmt: skip
        producer.start()
        outputs.await_ids({e.event_id for e in events}, idle_timeout)
        producer.join()
        cpu1 = _cpu_seconds(proc.pid)
        trainer_cpu1 = _cpu_seconds(trainer.pid) if trainer is not None else None
        peak = _peak_rss_mb(proc.pid)
        learned = _learned(settings) if module == "stream_rec" else {}
    finally:
        outputs.close()
        stop_process(proc)
        if trainer is not None:
            stop_process(trainer)
        delete_topics(settings, containing=settings.topic_events.removesuffix("-events"))
    latencies = [(outputs.arrived[i] - t) * 1000 for i, t in sent.items()]
    seconds = max(outputs.arrived[i] for i in sent) - min(sent.values())
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    split: dict[str, Any] = {}
    if timed := [i for i in sent if i in outputs.published]:
        inside = [(outputs.published[i] - sent[i]) * 1000 for i in timed]
        after = [(outputs.arrived[i] - outputs.published[i]) * 1000 for i in timed]
        split = {
            "published_p50_ms": round(percentile(inside, 50), 1), "published_p99_ms": round(percentile(inside, 99), 1),
            "delivered_p50_ms": round(percentile(after, 50), 1), "delivered_p99_ms": round(percentile(after, 99), 1),
        }  # fmt: skip
    if trainer_cpu0 is not None and trainer_cpu1 is not None:
        split["trainer_cpu_s"] = round(trainer_cpu1 - trainer_cpu0, 2)
    return RunFigures(
        name=name, events=len(events), seconds=round(seconds, 3), events_per_s=round(len(events) / seconds, 1),
        p50_ms=round(percentile(latencies, 50), 1), p99_ms=round(percentile(latencies, 99), 1),
        max_ms=round(max(latencies), 1), cpu_s=None if cpu is None else round(cpu, 2),
        cpu_percent=None if cpu is None else round(100 * cpu / seconds, 1),
        peak_rss_mb=None if peak is None else round(peak, 1), **learned, **split,
    )  # fmt: skip


def _stats(settings: Settings) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/stats", timeout=10) as response:
        stats: dict[str, Any] = orjson.loads(response.read())
    return stats


def _await_index(settings: Settings, say: Say, timeout: float = 900.0) -> None:
    """Where the worker ranks from an item index (a large catalogue), until its first one is built: the timed part
    then measures serving as it runs, not the exact ranking it falls back on meanwhile."""
    deadline, said = time.monotonic() + timeout, False
    while (stats := _stats(settings))["index_wanted"] and stats["ranking"] != "index":
        if time.monotonic() > deadline:
            said_why = [line for line in read_tail(settings.worker_dir.with_suffix(".log"), lines=100_000).splitlines()
                        if "item index" in line]  # fmt: skip
            why = f": {said_why[-1].rsplit('] ', 1)[-1].strip()}" if said_why else ""
            raise StreamRecError(f"the worker ranked from no item index within {timeout:.0f} s{why}")
        if not said:
            say(f"waiting for the worker's first item index ({stats['catalogue_items']} items)")
            said = True
        time.sleep(1.0)


def _learned(settings: Settings, timeout: float = 120.0) -> dict[str, Any]:
    """The worker's model freshness (its last minute) once its trainer has learned everything and published it."""
    deadline = time.monotonic() + timeout
    while (stats := _stats(settings))["learn_waiting"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(settings.refresh_every + 0.5)  # the last examples learned get their snapshot
    stats = _stats(settings)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(1000 * value, 1)

    return {
        "freshness_p50_ms": ms(stats["freshness_p50_s"]), "freshness_p99_ms": ms(stats["freshness_p99_s"]),
        "learn_dropped": stats["learn_dropped"], "serve_p50_ms": ms(stats["latency_p50_s"]),
        "serve_p99_ms": ms(stats["latency_p99_s"]), "hit_rate": stats["hit_rate"],
        "catalogue_items": stats["catalogue_items"], "ranking": stats["ranking"],
        "index_build_s": stats["index_build_s"],
    }  # fmt: skip


_WORKER_ONLY = (
    "freshness_p50_ms", "freshness_p99_ms", "learn_dropped", "serve_p50_ms", "serve_p99_ms", "published_p50_ms",
    "published_p99_ms", "delivered_p50_ms", "delivered_p99_ms", "trainer_cpu_s", "hit_rate", "catalogue_items",
    "ranking", "index_build_s",
)  # fmt: skip


def run_bench(
    settings: Settings,
    events: Sequence[Event],
    *,
    rate: float = 0.0,
    warmup: int = 200,
    ceiling: bool = True,
    say: Say = print,
    idle_timeout: float = 120.0,
) -> dict[str, Any]:
    """Time ``events`` through the ceiling (unless ``ceiling`` is False) and the worker; the figures, JSON-ready.

    The first ``warmup`` events warm each run up untimed; the rest are timed. Keys: ``events``, ``rate``,
    ``events_per_s``, ``p50_ms``, ``p99_ms``, ``max_ms``, ``cpu_s``, ``cpu_percent``, ``peak_rss_mb`` (the
    worker's), ``ceiling_events_per_s``, ``ceiling_p50_ms``, ... (the ceiling's), ``ratio``, ``machine``.
    """
    if len(events) <= warmup:
        raise StreamRecError(f"bench needs more events than the {warmup} warm-up ones, got {len(events)}")
    if settings.broker is None:
        raise BrokerError("bench needs a broker: set STREAM_REC_BROKER or pass --broker")
    # A replay is a new stream: fresh event ids, so that no run drops another's events as duplicates.
    tag = uuid.uuid4().hex[:8]
    stream = [dataclasses.replace(e, event_id=f"bench-{tag}-{i}") for i, e in enumerate(events)]
    runs: dict[str, RunFigures] = {}
    with tempfile.TemporaryDirectory(prefix="stream-rec-bench-") as folder:
        for name, module in (("ceiling", "stream_rec.ops.ceiling"), ("worker", "stream_rec")):
            if name == "ceiling" and not ceiling:
                continue
            run_settings = isolated(settings, f"bench-{name}", Path(folder))
            runs[name] = _measure(name, module, run_settings, stream[:warmup], stream[warmup:], rate, say,
                                  idle_timeout)  # fmt: skip
    worker = runs["worker"]
    report: dict[str, Any] = {"events": worker.events, "warmup": warmup, "rate": rate}
    report |= {key: value for key, value in dataclasses.asdict(worker).items() if key not in ("name", "events")}
    if "ceiling" in runs:
        top = runs["ceiling"]
        report |= {f"ceiling_{key}": value for key, value in dataclasses.asdict(top).items()
                   if key not in ("name", "events", *_WORKER_ONLY)}  # fmt: skip
        report["ratio"] = round(worker.events_per_s / top.events_per_s, 4)
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    return report
