"""A recovery resumes the stream partitions only once they are sought and the queues are cleared (resume.py)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka
from faust.types import TP

from stream_rec.settings import Settings
from stream_rec.worker.app import create_app
from stream_rec.worker.resume import ResumingRecovery, ResumingTransport, _ConsumerThread

EVENTS, CHANGELOG = TP("events", 0), TP("app-user_sequences-changelog", 0)


def test_the_partitions_resume_after_the_seek_and_the_clear_the_changelog_stays_paused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's own recovery, consumer and flow control; the consumer's calls into the broker are recorded."""
    calls: list[Any] = []

    async def scenario() -> None:
        app = create_app(settings)  # on the running loop, which Faust's services take as theirs
        recovery, consumer = app.tables.recovery, app.consumer
        events, changelog = TP(settings.topic_events, 0), TP(app.sequences.changelog_topic.get_topic_name(), 0)

        async def perform_seek() -> None:
            await asyncio.sleep(0)  # a fetch in this moment would be cleared below
            calls.append("seek")

        clear = app.flow_control.resume
        monkeypatch.setattr(consumer, "assignment", lambda: {events, changelog})
        monkeypatch.setattr(consumer, "perform_seek", perform_seek)
        monkeypatch.setattr(consumer, "resume_partitions", lambda tps: calls.append(("resume", tps)))
        monkeypatch.setattr(app.flow_control, "resume", lambda: (calls.append("clear"), clear()))
        await recovery.resume_streams_sought()
        assert calls == ["seek", "clear", ("resume", {events})]
        assert app.flow_control.is_active(), "the queues take records again"

    asyncio.run(scenario())


def test_the_worker_recovers_with_it(settings: Settings) -> None:
    # The recovery itself, after a SIGKILL, is tests/integration/test_delivery.py's, against the broker.
    app = create_app(settings)
    assert type(app.tables.recovery) is ResumingRecovery
    assert type(app.transport) is ResumingTransport and type(app.consumer._thread) is _ConsumerThread
    ours, theirs = (inspect.signature(c.on_recovery_completed).parameters for c in (ResumingRecovery, Recovery))
    assert list(ours) == list(theirs), "the override takes what Faust passes"


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
