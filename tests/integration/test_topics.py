"""Topic creation against the real broker: configs as the specs say, and a second run changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stream_rec.ops.topics import create_topics, load_specs, specs_for
from stream_rec.settings import Settings

pytestmark = pytest.mark.kafka


@pytest.fixture
def settings(broker: str) -> Iterator[Settings]:
    """Settings naming throw-away topics; they are deleted afterwards."""
    from kafka import KafkaAdminClient

    run = f"t-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        broker=broker,
        topic_events=f"{run}-events",
        topic_recommendations=f"{run}-recommendations",
        topic_embeddings=f"{run}-user-embeddings",
        topic_dlq=f"{run}-events-dlq",
        topic_control=f"{run}-control",
        partitions=3,
    )
    try:
        yield settings
    finally:
        admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
        try:
            ours = [t for t in admin.list_topics() if t.startswith(run)]
            if ours:
                admin.delete_topics(ours)
        finally:
            admin.close()


def test_create_then_nothing_to_do(settings: Settings) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    specs = specs_for(settings, load_specs())
    names = {s.name for s in specs}
    assert create_topics(settings, specs) == dict.fromkeys(names, "created")
    assert create_topics(settings, specs) == dict.fromkeys(names, "exists")

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        partitions = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(sorted(names))}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in sorted(names)])[
            "topic"
        ]
    finally:
        admin.close()
    assert partitions == {
        settings.topic_events: 3,
        settings.topic_recommendations: 3,
        settings.topic_embeddings: 3,
        settings.topic_dlq: 1,
        settings.topic_control: 3,
    }

    def value(topic: str, key: str) -> str | None:
        entry = configs[topic].get(key)
        return entry["value"] if entry else None

    assert value(settings.topic_embeddings, "cleanup.policy") == "compact"
    assert value(settings.topic_events, "cleanup.policy") == "delete"
    assert value(settings.topic_events, "retention.ms") == str(7 * 86_400_000)
    assert value(settings.topic_recommendations, "retention.ms") == str(86_400_000)
    assert value(settings.topic_dlq, "retention.ms") == str(14 * 86_400_000)
    assert value(settings.topic_dlq, "max.message.bytes") == "4194304"


def test_only_missing_topics_are_created(settings: Settings) -> None:
    specs = specs_for(settings, load_specs())
    first = [s for s in specs if s.name == settings.topic_events]
    assert create_topics(settings, first) == {settings.topic_events: "created"}
    result = create_topics(settings, specs)
    assert result.pop(settings.topic_events) == "exists"
    assert set(result.values()) == {"created"}
    assert list(create_topics(settings, specs)) == [s.name for s in specs]  # in the order of the specs
