"""A recovery resumes the stream partitions only once they are sought and the queues are cleared (resume.py)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka
from faust.types import TP

from stream_rec.settings import Settings
from stream_rec.worker.app import create_app
from stream_rec.worker.resume import ResumingRecovery, ResumingTransport, _ConsumerThread

EVENTS, CHANGELOG = TP("events", 0), TP("app-user_sequences-changelog", 0)


def test_the_partitions_resume_after_the_seek_and_the_clear_the_changelog_stays_paused() -> None:
    calls: list[Any] = []

    class Consumer:
        def assignment(self) -> set[TP]:
            return {EVENTS, CHANGELOG}

        async def perform_seek(self) -> None:
            await asyncio.sleep(0)  # a fetch in this moment would be cleared below
            calls.append("seek")

        def resume_partitions(self, tps: set[TP]) -> None:
            calls.append(("resume", tps))

    app = SimpleNamespace(
        consumer=Consumer(),
        flow_control=SimpleNamespace(resume=lambda: calls.append("clear")),
        conf=SimpleNamespace(broker_request_timeout=1.0),
    )
    recovery = SimpleNamespace(
        app=app,
        log=logging.getLogger("test"),
        _is_changelog_tp=lambda tp: tp.topic.endswith("-changelog"),
        _wait=lambda coro, timeout: coro,
    )
    asyncio.run(ResumingRecovery.resume_streams_sought(recovery))  # type: ignore[arg-type]
    assert calls == ["seek", "clear", ("resume", {EVENTS})]


def test_the_worker_recovers_with_it_and_faust_calls_what_it_overrides(settings: Settings, tmp_path: Path) -> None:
    app = create_app(settings)
    assert type(app.tables.recovery) is ResumingRecovery
    assert type(app.transport) is ResumingTransport and type(app.consumer._thread) is _ConsumerThread
    # The override replaces Faust's method of the same name: a Faust that no longer called it would bypass it.
    assert "self.on_recovery_completed" in inspect.getsource(Recovery._restart_recovery.fun)
    ours, theirs = (inspect.signature(c.on_recovery_completed).parameters for c in (ResumingRecovery, Recovery))
    assert list(ours) == list(theirs)


def test_the_fetch_asks_for_a_copy_of_the_active_partitions_and_for_nothing_when_none_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[Any] = []

    async def faust_getmany(self: Any, active: Any, timeout: float) -> dict[TP, list[Any]]:
        asked.append(active)
        return {tp: [] for tp in active}

    monkeypatch.setattr(aiokafka.AIOKafkaConsumerThread, "getmany", faust_getmany)
    thread = object.__new__(_ConsumerThread)  # the fetch alone: no consumer behind it
    live = {EVENTS, CHANGELOG}
    assert asyncio.run(thread.getmany(live, 1.0)) == {EVENTS: [], CHANGELOG: []}
    live.clear()  # the event loop pauses partitions while the consumer's thread still waits for records
    assert asked == [frozenset({EVENTS, CHANGELOG})]
    assert asyncio.run(thread.getmany(live, 1.0)) == {}, "aiokafka reads no partitions as all of them"
    assert len(asked) == 1
