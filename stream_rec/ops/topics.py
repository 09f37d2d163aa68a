"""The Kafka topics of stream-rec: their specs (``topics/*.json``, the wire contract) and their creation.

Each spec file names a topic by its default name and holds its partitions, replication, retention, extra topic
configs, and the JSON Schemas of its key and value. :func:`specs_for` renames the specs to the topic names
that :class:`~stream_rec.settings.Settings` configures; :func:`create_topics` creates the missing ones, so
running it twice changes nothing.

>>> specs = specs_for(Settings(topic_events="clicks", partitions=8), load_specs())
>>> [(s.name, s.partitions, s.cleanup_policy) for s in specs]  # doctest: +NORMALIZE_WHITESPACE
[('clicks', 8, 'delete'), ('recommendations', 8, 'delete'), ('user-embeddings', 8, 'compact'),
 ('events-dlq', 1, 'delete'), ('control', 8, 'delete')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from ..errors import BrokerError, StreamRecError
from ..settings import Settings

__all__ = [
    "DEFAULT_TOPICS_DIR", "CleanupPolicy", "TopicSpec", "create_role_topics", "create_topics", "delete_topics",
    "load_specs", "specs_for",
]  # fmt: skip

CleanupPolicy = Literal["delete", "compact", "compact,delete"]

DEFAULT_TOPICS_DIR = Path(__file__).resolve().parents[2] / "topics"

# Kafka's error code for "topic already exists" (TopicAlreadyExistsError): a topic created between our listing
# and our request, by another process, is there all the same.
_TOPIC_ALREADY_EXISTS = 36
_FIELDS = ("name", "partitions", "replication", "cleanup_policy", "retention_ms", "config", "key")
_POLICIES: tuple[CleanupPolicy, ...] = ("delete", "compact", "compact,delete")
_ORDER = ("events", "recommendations", "user-embeddings", "events-dlq", "control")  # the flow's order; others after


@dataclass(frozen=True)
class TopicSpec:
    """One topic as its spec file describes it."""

    name: str
    partitions: int
    replication: int
    cleanup_policy: CleanupPolicy
    retention_ms: int | None  # None: the broker's default
    config: Mapping[str, str] = field(default_factory=dict, hash=False)  # extra topic configs
    key: Mapping[str, Any] = field(default_factory=dict, hash=False)  # JSON Schema of the key
    value_schema: Mapping[str, Any] = field(default_factory=dict, hash=False)  # JSON Schema of the value

    @classmethod
    def from_file(cls, path: Path) -> TopicSpec:
        """Read and check one spec file; a broken one raises :class:`StreamRecError` naming file and fault."""
        try:
            raw = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise StreamRecError(f"topic spec {path}: cannot read it as JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise StreamRecError(f"topic spec {path}: must be a JSON object")
        missing = [name for name in (*_FIELDS, "value_schema") if name not in raw]
        if missing:
            raise StreamRecError(f"topic spec {path}: missing {', '.join(missing)}")
        name, partitions, replication = raw["name"], raw["partitions"], raw["replication"]
        config, retention = raw["config"], raw["retention_ms"]
        if not isinstance(name, str) or not name:
            raise StreamRecError(f"topic spec {path}: 'name' must be a non-empty string")
        if not _positive_int(partitions) or not _positive_int(replication):
            raise StreamRecError(f"topic spec {path}: 'partitions' and 'replication' must be integers >= 1")
        policy = next((p for p in _POLICIES if p == raw["cleanup_policy"]), None)
        if policy is None:
            raise StreamRecError(f"topic spec {path}: 'cleanup_policy' must be one of {', '.join(_POLICIES)}")
        if retention is not None and (isinstance(retention, bool) or not isinstance(retention, int)):
            raise StreamRecError(f"topic spec {path}: 'retention_ms' must be an integer or null")
        if not isinstance(config, dict) or not all(isinstance(v, str) for v in config.values()):
            raise StreamRecError(f"topic spec {path}: 'config' must map config names to strings")
        if not isinstance(raw["key"], dict) or not isinstance(raw["value_schema"], dict):
            raise StreamRecError(f"topic spec {path}: 'key' and 'value_schema' must be JSON Schema objects")
        return cls(
            name=name,
            partitions=partitions,
            replication=replication,
            cleanup_policy=policy,
            retention_ms=retention,
            config=config,
            key=raw["key"],
            value_schema=raw["value_schema"],
        )

    def topic_configs(self) -> dict[str, str]:
        """Every topic config to create the topic with, as Kafka wants them: strings by config name."""
        configs: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs | dict(self.config)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def load_specs(folder: Path | None = None) -> list[TopicSpec]:
    """The specs of every ``*.json`` file in ``folder`` (default: the repository's ``topics/``).

    The four topics of DESIGN.md and the control topic come first, in the order of the flow; others follow by name.
    """
    folder = folder if folder is not None else DEFAULT_TOPICS_DIR
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise StreamRecError(
            f"no topic specs (*.json) in {folder}; pass --topics-dir with the folder that holds them "
            "(topics/ in the stream-rec repository)"
        )
    specs = [TopicSpec.from_file(path) for path in files]
    return sorted(specs, key=lambda s: (_ORDER.index(s.name) if s.name in _ORDER else len(_ORDER), s.name))


def specs_for(settings: Settings, specs: Sequence[TopicSpec] | None = None) -> list[TopicSpec]:
    """The specs renamed to the topics ``settings`` configures; partitioned topics take its partition count.

    Specs are matched by their default name (``events``, ``recommendations``, ``user-embeddings``,
    ``events-dlq``, ``control``); any other spec is kept as it is.
    """
    topics = {
        "events": (settings.topic_events, settings.partitions),
        "recommendations": (settings.topic_recommendations, settings.partitions),
        "user-embeddings": (settings.topic_embeddings, settings.partitions),
        "events-dlq": (settings.topic_dlq, None),  # one partition: dead letters are few and read in order
        "control": (settings.topic_control, settings.partitions),  # co-partitioned with the events, by user
    }
    out = []
    for spec in specs if specs is not None else load_specs():
        name, partitions = topics.get(spec.name, (spec.name, None))
        out.append(dataclasses.replace(spec, name=name, partitions=partitions or spec.partitions))
    return out


def create_topics(settings: Settings, specs: Sequence[TopicSpec], timeout: float = 30.0) -> dict[str, str]:
    """Create the topics of ``specs`` that do not exist yet on ``settings.bootstrap``.

    Returns ``{name: "created" | "exists"}``. Existing topics are left alone, whatever their configs.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            **settings.client_config(client_id=f"{settings.app_id}-topics", request_timeout_ms=int(timeout * 1000))
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.bootstrap}: {exc!r}") from None
    try:
        existing = set(admin.list_topics())
        result = {spec.name: "exists" for spec in specs if spec.name in existing}
        missing = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": spec.replication,
                "configs": spec.topic_configs(),
            }
            for spec in specs
            if spec.name not in existing
        }
        if not missing:
            return result
        response = admin.create_topics(missing, timeout_ms=int(timeout * 1000), raise_errors=False)
        for topic in response["topics"]:
            code = topic["error_code"]
            if code == 0:
                result[topic["name"]] = "created"
            elif code == _TOPIC_ALREADY_EXISTS:
                result[topic["name"]] = "exists"
            else:
                raise BrokerError(
                    f"Kafka at {settings.bootstrap} refused to create topic {topic['name']!r} "
                    f"(error {code}): {topic.get('error_message') or 'no message'}"
                )
        created = [name for name, state in result.items() if state == "created"]
        if created:  # the broker answers before every partition has a leader; callers want to produce at once
            admin.wait_for_topics(created, timeout_ms=int(timeout * 1000))
        return {spec.name: result[spec.name] for spec in specs}
    except KafkaError as exc:
        raise BrokerError(f"topic creation on {settings.bootstrap} failed: {exc!r}") from None
    finally:
        admin.close()


def create_role_topics(settings: Settings) -> dict[str, str]:
    """Create the topics joining serving workers and the trainer (learn_in = kafka), where missing: the examples,
    partitioned as the events by user, and the model updates, one partition so that they are read in order."""
    specs = [
        TopicSpec(settings.topic_examples, settings.partitions, 1, "delete", 86_400_000),
        # A worker starts from the newest full snapshot (every publish_full_every s): an hour back is plenty.
        TopicSpec(settings.topic_updates, 1, 1, "delete", 3_600_000, {"segment.ms": "600000"}),
    ]
    return create_topics(settings, specs)


def delete_topics(settings: Settings, *, containing: str, timeout: float = 30.0) -> list[str]:
    """Delete every topic whose name contains ``containing`` (a run's own tag); return the names deleted.

    For throw-away runs (``stream-rec bench``): their topics and the changelogs Faust made for them.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if len(containing) < 8:
        raise ValueError(f"refusing to delete topics by a tag as short as {containing!r}")
    try:
        admin = KafkaAdminClient(**settings.client_config(request_timeout_ms=int(timeout * 1000)))
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.bootstrap}: {exc!r}") from None
    try:
        doomed = sorted(name for name in admin.list_topics() if containing in name)
        if doomed:
            admin.delete_topics(doomed, timeout_ms=int(timeout * 1000))
        return doomed
    except KafkaError as exc:
        raise BrokerError(f"topic deletion on {settings.bootstrap} failed: {exc!r}") from None
    finally:
        admin.close()
