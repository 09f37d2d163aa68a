"""The Faust app of one worker: its settings, topics and table, and the agent and timers of agent.py wired to them.

Faust's app is built from the settings (a factory, so that tests and several workers in one process each have
their own); what it runs reads top to bottom in agent.py, as module-level functions over one ``Worker``. After a
restore from the changelog the stream partitions resume only once sought (``resume.py``): Faust's own order lost
the records fetched in between.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable
from typing import Any

import faust

from ..learning import open_side
from ..serving.engine import Engine
from ..serving.remote import RemoteLearning
from ..settings import Settings
from . import agent
from .agent import EXIT_UNCOMMITTED, SequenceTable, Worker
from .resume import ResumingTableManager, ResumingTransport
from .web import add_views

__all__ = ["EXIT_UNCOMMITTED", "create_app"]

_RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def instance_id(settings: Settings) -> str:
    """The worker's static membership id: stable across its restarts, one per data folder."""
    if settings.instance_id:
        return settings.instance_id
    folder = str(settings.worker_dir.expanduser().resolve())
    return f"{settings.app_id}-{hashlib.sha256(folder.encode()).hexdigest()[:12]}"


def create_app(settings: Settings, *, store: str = "rocksdb://") -> faust.App:
    """The Faust app of one worker, wired to ``settings``; ``app.engine`` is its recommendation engine, and
    ``app.process_agent`` its agent. ``store`` is the table's (``memory://`` for a test of the agent alone)."""
    settings.worker_dir.mkdir(parents=True, exist_ok=True)  # Faust makes its datadir, but not the folders above
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=settings.security.faust(),
        store=store,
        datadir=str(settings.worker_dir),
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_bind,
        web_tables_enabled=settings.web_tables,
        web_router_enabled=settings.web_tables,  # the router maps any key to its worker: a table page's companion
        topic_partitions=settings.partitions,
        producer_max_request_size=4 * 1024 * 1024,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=instance_id(settings),  # a restart gets its partitions back, no rebalance
        broker_commit_interval=1.0,  # after a crash, at most about a second of events is answered twice
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(1.0, settings.session_timeout / 10),
        producer_linger=settings.linger,  # 0 sends a request per few messages, and fewer events/s get through
        TableManager=ResumingTableManager,  # Faust's own loses records fetched as a recovery ends (resume.py)
    )
    app.transport = ResumingTransport(app.conf.broker_consumer, app)  # Faust's own loses records (resume.py)

    # The events, the events sent on to their user's partition, and the commands: one stream, co-partitioned,
    # so that one agent is the only writer of a user's state. Declared (created where missing) with the table's
    # partition count before the worker subscribes: a broker's auto-creation would give them its default count.
    source = app.topic(
        settings.topic_events, settings.topic_rerouted, settings.topic_control,
        partitions=settings.partitions, internal=True, **_RAW,
    )  # fmt: skip
    sequences = SequenceTable(
        app,
        name="user_sequences",
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        options={"driver": "rocksdict"},
    )
    app.tables.add(sequences)
    worker = Worker(
        app,
        settings,
        Engine(settings, open_side),
        sequences,
        rerouted=app.topic(settings.topic_rerouted, partitions=settings.partitions, internal=True, **_RAW),
        control=app.topic(settings.topic_control, partitions=settings.partitions, internal=True, **_RAW),
        recommendations=app.topic(settings.topic_recommendations, **_RAW),
        embeddings=app.topic(settings.topic_embeddings, **_RAW),
        dlq=app.topic(settings.topic_dlq, **_RAW),
        examples=app.topic(settings.topic_examples, **_RAW) if settings.learn_in == "kafka" else None,
    )
    app.engine, app.sequences = worker.engine, sequences  # type: ignore[attr-defined]

    @app.agent(source, name="stream_rec.worker.agent.process")
    async def process(stream: faust.StreamT) -> None:
        await agent.process(worker, stream)

    @app.task
    async def learning() -> None:
        await agent.keep_checkpoints(worker)

    @app.on_before_shutdown.connect
    def shutdown(sender: Any, /, *_: Any, signal: Any, **__: Any) -> Awaitable[None]:
        return agent.shut_down(worker)

    remote = worker.engine.learning
    if isinstance(remote, RemoteLearning):

        @app.task
        async def updates() -> None:
            await agent.follow_updates(worker, remote)

    if settings.user_ttl > 0:
        started = time.time()

        @app.timer(interval=min(max(settings.user_ttl / 10, 1.0), 600.0))
        async def expire() -> None:
            await agent.expire(worker, started)

    if settings.status_every > 0:

        @app.timer(interval=settings.status_every)
        async def report() -> None:
            await agent.report(worker)

    add_views(app, worker.engine, settings)
    app.process_agent = process  # type: ignore[attr-defined]
    return app
