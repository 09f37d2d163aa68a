"""The worker's web view, on its own web server (Faust's): read-only, on 127.0.0.1 unless ``web_bind`` says
otherwise. Every view answers GET only (anything else: 405), in JSON unless it is a page.

- ``/stats``: the figures now: counters, events/s, consumer lag per partition, the serving snapshot, learning,
  accuracy as served (overall and per event type, since the start and over the last minute), latency and model
  freshness p50/p99 over the last minute, checkpoint age, the items recommended most over the last minute.
- ``/users/{user_id}``: the user's sequence, last recommendation (scores, strategy, explanation, the share of
  each of the model's modes behind each item) and embedding.
- ``/items/{item_id}``: count, last seen, whether the model has a row for it, its nearest items.
- ``/model``: the settings in force, vocabulary and replay sizes, the newest checkpoint.
- ``/health``: up, broker reachable, partitions assigned; 503 until the worker serves.
- ``/metrics``: the same figures in the Prometheus text format (prometheus.py).
- ``/dashboard``: a page that charts them live and opens a user's inspector (dashboard/).

An id in a URL is percent-encoded (``/users/a%2Fb`` is user ``a/b``); one that no event could carry (over 256
characters) is a 400, an unknown one a 404, both with a JSON ``error``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from importlib import resources
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from ..sequences import Step
from ..serving import inspector
from ..serving.engine import Engine
from ..serving.prometheus import CONTENT_TYPE
from ..serving.remote import RemoteLearning
from ..settings import Settings
from ..wire.events import MAX_ID_CHARS
from .admission import steps

__all__ = ["add_views", "engine_stats", "item_view", "model_view", "user_view", "worker_stats"]

HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
# The dashboard runs its own script and styles only, and talks to this server only.
PAGE_HEADERS = HEADERS | {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
ASSETS = {  # the dashboard's files: name -> content type; nothing else under /dashboard/ is served
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}
BROKER_TIMEOUT = 1.0  # seconds /health waits for the broker to accept a connection


def _bytes(view: View, body: bytes, content_type: str, status: int = 200, page: bool = False) -> Response:
    # The type in the headers: aiohttp refuses a charset in its content_type argument.
    headers = (PAGE_HEADERS if page else HEADERS) | {"Content-Type": content_type}
    return view.bytes(body, status=status, headers=headers)


def _json(view: View, value: Any, status: int = 200) -> Response:
    body = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return _bytes(view, body, "application/json", status)


def _error(view: View, status: int, message: str) -> Response:
    return _json(view, {"error": message}, status)


def _bad_id(view: View, kind: str, value: str) -> Response | None:
    if not 1 <= len(value) <= MAX_ID_CHARS:
        return _error(view, 400, f"an {kind} id has 1 to {MAX_ID_CHARS} characters, this one {len(value)}")
    return None


@functools.cache  # the package's files do not change while the worker runs
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("dashboard", name).read_bytes()


def user_view(engine: Engine, user_id: str, history: list[Step]) -> dict[str, Any] | None:
    """The user's last recommendation and embedding (None when not among the last INSPECTED_USERS served),
    with the share of each of the model's modes behind each recommended item, by the serving snapshot now."""
    out = engine.last_outputs.get(user_id)
    if out is None:
        return None
    rec, snapshot = out.recommendation, engine.serving
    items = [i["item_id"] for i in rec["items"]]
    shares = inspector.mode_shares(snapshot, history, items) if rec["strategy"] == "model" and history else {}
    return {
        "recommendation": {
            **rec, "items": [{**i, "modes": shares.get(i["item_id"])} for i in rec["items"]],
        },
        "modes_by": snapshot.version,
        "embedding": out.embedding["embedding"] if out.embedding else None,
    }  # fmt: skip


def item_view(engine: Engine, item_id: str, nearest: int = 10) -> dict[str, Any] | None:
    """How often the item was seen, when last, whether the model has a row for it, and its nearest items by
    the model's item vectors; None for an item never seen."""
    snapshot = engine.serving
    count = engine.item_count(item_id)
    if not count and item_id not in snapshot.vocab:
        return None
    return {
        "item_id": item_id, "count": count, "last_seen_ts": engine.item_seen.get(item_id),
        "in_vocabulary": item_id in snapshot.vocab, "model_version": snapshot.version,
        "nearest": [{"item_id": item, "cosine": c} for item, c in inspector.similar(snapshot, item_id, nearest)],
    }  # fmt: skip


def model_view(engine: Engine) -> dict[str, Any]:
    """The settings in force, the model's size and its newest checkpoint."""
    status, snapshot = engine.learning.status(), engine.serving
    return {
        "settings": engine.settings.model_dump(mode="json"),
        "model_version": snapshot.version, "model_ts": snapshot.ts,
        "vocabulary": len(snapshot.vocab), "vocabulary_capacity": snapshot.vocab.capacity,
        "replay": status.replay, "replay_capacity": status.replay_capacity,
        "steps": status.steps, "examples": status.examples,
        "checkpoint": status.checkpoint, "checkpoint_age_s": _age(status.checkpoint_ts),
    }  # fmt: skip


def engine_stats(engine: Engine) -> dict[str, Any]:
    """The engine's figures now (/stats; :func:`worker_stats` adds what the consumer knows)."""
    m, snapshot, status = engine.metrics, engine.serving, engine.learning.status()
    hit_rate_1m = m.recent.ratio()
    return {
        "events": m.events, "valid": m.events - m.invalid, "invalid": m.invalid, "duplicates": m.duplicates,
        "redelivered": m.redelivered, "rerouted": m.rerouted, "forgotten": m.forgotten, "expired": m.expired,
        "recommendations": engine.served, "cold_start": m.cold_start,
        "events_per_s": round(engine.rate.per_second(), 2),
        "scored": m.scored, "hits": m.hits, "hit_rate": round(m.hit_rate, 6), "ndcg": round(m.ndcg, 6),
        "hit_rate_1m": None if hit_rate_1m is None else round(hit_rate_1m, 6),
        "by_event": {
            event: {"scored": int(n), "hit_rate": round(h / n, 6), "ndcg": round(g / n, 6)}
            for event, (n, h, g) in sorted(m.by_event.items())
        },
        "model_version": snapshot.version, "model_ts": snapshot.ts,
        "snapshot_age_s": round(time.time() - snapshot.ts, 3),
        "catalogue_items": len(snapshot.vocab), "ranking": "index" if snapshot.ranks_from_index else "exact",
        "index_wanted": engine.indexer.wanted(snapshot), **engine.indexer.stats(),
        "steps": status.steps, "skipped_steps": status.skipped_steps, "examples": status.examples,
        "loss": None if status.loss is None else round(status.loss, 6), "drift_alarms": status.drifts,
        "learn_waiting": status.waiting, "learn_dropped": status.dropped,
        "latency_p50_s": engine.latency.percentile(50), "latency_p99_s": engine.latency.percentile(99),
        "freshness_p50_s": engine.freshness.percentile(50), "freshness_p99_s": engine.freshness.percentile(99),
        "checkpoint_age_s": _age(status.checkpoint_ts),
        "top_recommended": [{"item_id": item, "count": n} for item, n in engine.recommended.top(10)],
    }  # fmt: skip


def _age(ts: float | None) -> float | None:
    return None if ts is None else round(time.time() - ts, 3)


def worker_stats(app: faust.App, engine: Engine, settings: Settings) -> dict[str, Any]:
    """:func:`engine_stats` with what the consumer knows: the lag of each partition the worker reads (events not
    yet taken by the agent) and the partitions of the events topic assigned to it."""
    stats = engine_stats(engine)
    lag: dict[str, int] = {}
    read_offsets = app.monitor.tp_read_offsets
    for tp in _assignment(app):
        if tp.topic not in (settings.topic_events, settings.topic_rerouted):
            continue
        try:
            end = app.consumer.highwater(tp)
        except Exception:
            end = None
        if end is None:
            continue
        read = read_offsets.get(tp)
        # Nothing read from it since this worker started: it waits at the committed offset (Faust's, as it sought
        # there; the start where none was committed), not at 0, which would show a partition read before a restart
        # (the reroute topic's, often) as its whole history of lag, for as long as nothing new comes.
        committed = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        position = read + 1 if read is not None else committed if committed is not None else 0
        lag[f"{tp.topic}:{tp.partition}"] = max(0, end - position)
    stats["lag"] = lag
    stats["lag_total"] = sum(lag.values()) if lag else None
    stats["partitions"] = assigned = _events_partitions(app, settings)
    stats["partitions_assigned"] = len(assigned)
    remote = engine.learning
    if isinstance(remote, RemoteLearning):  # learn_in = kafka: the trainer's model as this worker follows it
        stats["model_updates"] = {
            "applied": remote.version, "behind": remote.behind, "skipped": remote.gaps, "topic": settings.topic_updates,
        }  # fmt: skip
    return stats


def _assignment(app: faust.App) -> list[Any]:
    try:
        return sorted(app.consumer.assignment())
    except Exception:  # no consumer yet (starting)
        return []


def _events_partitions(app: faust.App, settings: Settings) -> list[int]:
    """The partitions of the events topic assigned to this worker."""
    return [tp.partition for tp in _assignment(app) if tp.topic == settings.topic_events]


def add_views(app: faust.App, engine: Engine, settings: Settings) -> None:
    """Register the worker's views on ``app``'s web server (``app.sequences`` is the users' table)."""

    started = time.monotonic()

    def stats() -> dict[str, Any]:
        return worker_stats(app, engine, settings)

    engine.exposition.read_stats(stats)

    @app.page("/stats")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return _json(self, stats())

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return _bytes(self, engine.exposition.text(), CONTENT_TYPE)

    @app.page("/users/{user_id:.+}")
    class User(View):
        async def get(self, request: Request, user_id: str) -> Response:
            if bad := _bad_id(self, "user", user_id):
                return bad
            state = app.sequences.get(user_id)  # type: ignore[attr-defined]
            history = steps(state) if isinstance(state, dict) else []
            served = await asyncio.to_thread(user_view, engine, user_id, history)
            if not history and served is None:
                return _error(self, 404, f"no user {user_id!r} on this worker")
            return _json(self, {
                "user_id": user_id,
                "events": state.get("n", len(history)) if isinstance(state, dict) else 0,
                "sequence": [
                    {"item_id": s.item, "event": s.event, "ts": s.ts, "context": s.context, "item": s.features}
                    for s in history
                ],
                "last_event_s": state.get("seen") if isinstance(state, dict) else None,
                **(served or {"recommendation": None, "modes_by": None, "embedding": None}),
            })  # fmt: skip

    @app.page("/items/{item_id:.+}")
    class Item(View):
        async def get(self, request: Request, item_id: str) -> Response:
            if bad := _bad_id(self, "item", item_id):
                return bad
            found = await asyncio.to_thread(item_view, engine, item_id)
            if found is None:
                return _error(self, 404, f"no item {item_id!r} seen by this worker")
            return _json(self, found)

    @app.page("/model")
    class Model(View):
        async def get(self, request: Request) -> Response:
            return _json(self, model_view(engine))

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            broker = await _reachable(settings.bootstrap)
            partitions = _events_partitions(app, settings)  # not the whole of /stats: a probe polls this often
            learning = engine.learning.status().running
            version = engine.serving.version if engine.ready else None  # (the first snapshot is not waited for)
            serving = version is not None and learning and bool(partitions)
            status = "ok" if serving and broker else "starting" if not serving else "broker unreachable"
            body = {
                "status": status, "broker": settings.bootstrap, "broker_reachable": broker,
                "partitions": partitions, "learning": learning, "model_version": version,
                "uptime_s": round(time.monotonic() - started, 3),
            }  # fmt: skip
            return _json(self, body, 200 if status == "ok" else 503)

    @app.page("/dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return _bytes(self, _asset("index.html"), "text/html; charset=utf-8", page=True)

    @app.page("/dashboard/{name}")
    class Asset(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in ASSETS:
                return _error(self, 404, f"no file {name!r} in the dashboard")
            return _bytes(self, _asset(name), ASSETS[name], page=True)


async def _reachable(bootstrap: str) -> bool:
    """Whether one of the bootstrap brokers accepts a TCP connection within BROKER_TIMEOUT."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), BROKER_TIMEOUT)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False
