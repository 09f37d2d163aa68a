"""The worker's agent without a broker: Faust's ``agent.test_context()``, the table in Faust's memory store, and a
producer that keeps what it is given instead of sending it (the broker tests run the same agent end to end)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import faust
import orjson
from faust.transport.producer import Producer
from faust.types import TP, Message
from faust.types.tuples import RecordMetadata

from stream_rec.settings import ModelSettings, Settings
from stream_rec.worker.admission import home_partition
from stream_rec.worker.app import create_app

PARTITIONS = 4


class Kept(Producer):
    """Faust's producer, keeping each message as the broker would have acknowledged it: (topic, partition, key,
    value). ``send_soon`` (the table's changelog) publishes as Faust's buffer would, through ``send``."""

    def __init__(self, app: faust.App) -> None:
        super().__init__(app.producer_transport)
        self.sent: list[tuple[str, int | None, bytes | None, bytes | None]] = []
        self.publishing: set[asyncio.Future[Any]] = set()
        self.held: list[tuple[asyncio.Future[RecordMetadata], RecordMetadata]] | None = None  # unacknowledged

    def hold(self) -> None:
        """Leave the sends from now on unacknowledged until :meth:`release`."""
        self.held = []

    def release(self) -> None:
        for fut, metadata in self.held or ():
            fut.set_result(metadata)
        self.held = None

    async def send(self, topic: str, key: Any, value: Any, partition: Any, timestamp: Any, headers: Any, *,
                   transactional_id: Any = None) -> asyncio.Future[RecordMetadata]:  # fmt: skip
        self.sent.append((topic, partition, key, value))
        done = asyncio.get_running_loop().create_future()
        metadata = RecordMetadata(topic, partition or 0, TP(topic, partition or 0), len(self.sent), 0.0, 0)
        if self.held is None:
            done.set_result(metadata)
        else:
            self.held.append((done, metadata))
        return done

    def send_soon(self, fut: Any) -> None:
        self.publishing.add(task := asyncio.ensure_future(fut.message.channel.publish_message(fut)))
        task.add_done_callback(self.publishing.discard)

    def to(self, topic: str) -> list[tuple[int | None, bytes | None, bytes | None]]:
        return [(p, k, v) for t, p, k, v in self.sent if t == topic]


def worker_app(settings: Settings) -> faust.App:
    """A worker's app with its table in memory and a producer that keeps its messages; made on the running loop,
    which Faust's services take as theirs."""
    model = ModelSettings(dim=8, batch=8, drift=False)
    update = {"k": 3, "partitions": PARTITIONS, "learn_in": "thread", "checkpoint_every": 0.0, "model": model,
              "batch_within": 0.01, "status_every": 0.0, "app_id": "agent-test"}  # fmt: skip
    configured = settings.model_copy(update=update)
    app = create_app(configured, store="memory://")
    app.producer = Kept(app)
    return app


def event(user: str, item: str, n: int) -> bytes:
    return orjson.dumps({"user_id": user, "item_id": item, "event": "view", "ts": 1.7e9 + n, "event_id": f"e{n}"})


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"the agent did not {what} within 10 s"
        await asyncio.sleep(0.01)


def test_the_agent_answers_writes_the_table_and_acknowledges_after_its_sends(settings: Settings) -> None:
    home = home_partition("u1", PARTITIONS)
    offsets = iter(range(100))
    read: list[faust.EventT] = []

    async def put(agent: Any, topic: str, key: bytes | None, value: bytes, partition: int = home) -> None:
        """What the consumer hands the agent: a message of ``topic`` (Faust's own ``put`` names none for an agent
        of several topics)."""
        channel = agent.stream().channel
        message = Message(topic, partition, next(offsets), time.time(), 0, None, key, value, b"", 0, 0,
                          generation_id=app.consumer_generation_id)  # fmt: skip
        read.append(await channel.decode(message))
        await channel.put(read[-1])

    async def scenario() -> None:
        nonlocal app
        app = worker_app(settings)
        kept: Kept = app.producer
        changelog, s = app.sequences.changelog_topic.get_topic_name(), app.engine.settings
        async with app.process_agent.test_context() as agent:
            kept.hold()
            await put(agent, s.topic_events, b"u1", event("u1", "i1", 1))
            await put(agent, s.topic_events, b"u1", b"{not json")
            await put(agent, s.topic_events, None, event("u1", "i2", 2))  # no key: sent on to its partition
            await until(lambda: len(kept.to(s.topic_recommendations)) == 1, "answer the event")
            await until(lambda: len(kept.sent) == 4, "send the recommendation, the dead letter, the reroute, the state")
            await asyncio.sleep(0.2)
            assert not any(ev.message.acked for ev in read), "acknowledged before the broker acknowledged the sends"
            kept.release()
            await until(lambda: all(ev.message.acked for ev in read), "acknowledge the batch once its sends are")

            (_, key, value), *_ = kept.to(s.topic_recommendations)
            answer = orjson.loads(value)
            assert key == b"u1" and answer["user_id"] == "u1" and answer["strategy"] == "cold_start"
            assert [item["item_id"] for item in answer["items"]] == ["i1"], "the one item known"
            state = app.sequences["u1"]
            assert [step[0] for step in state["steps"]] == ["i1"]
            assert state["served"] == [item["item_id"] for item in answer["items"]]
            assert [(p, k) for p, k, _ in kept.to(changelog)] == [(home, b'"u1"')], "the state is logged once"
            (_, _, letter), = kept.to(s.topic_dlq)  # fmt: skip
            assert orjson.loads(letter)["reason"].startswith("not JSON")
            assert kept.to(s.topic_rerouted) == [(home, b"u1", event("u1", "i2", 2))]

            # Read again from the reroute topic: admitted; the same event id once more: a duplicate, ignored.
            await put(agent, s.topic_rerouted, b"u1", event("u1", "i2", 2))
            await put(agent, s.topic_events, b"u1", event("u1", "i2", 2))
            await until(lambda: all(ev.message.acked for ev in read), "acknowledge the second batch")
            *_, (_, _, value) = kept.to(s.topic_recommendations)
            assert len(kept.to(s.topic_recommendations)) == 2 and len(orjson.loads(value)["items"]) == 2
            assert [step[0] for step in app.sequences["u1"]["steps"]] == ["i1", "i2"]

            # Forgotten: the state's tombstone on the changelog and the embedding's, and no state left.
            await put(agent, s.topic_control, b"u1", orjson.dumps({"command": "forget", "user_id": "u1"}))
            await until(lambda: read[-1].message.acked, "carry out the command")
            assert kept.to(changelog)[-1] == (home, b'"u1"', None)
            assert kept.to(s.topic_embeddings)[-1] == (None, b"u1", None)
            assert app.sequences.get("u1") is None

    app: Any = None
    try:
        asyncio.run(scenario())
    finally:
        if app is not None:
            app.engine.close()
