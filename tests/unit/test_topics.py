"""The topic specs in topics/: they load, say what DESIGN.md says, and follow the configured names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_rec.errors import StreamRecError
from stream_rec.ops.topics import DEFAULT_TOPICS_DIR, TopicSpec, load_specs, specs_for
from stream_rec.settings import Settings
from stream_rec.wire.events import EVENT_TYPES, parse_event

NAMES = {"events", "recommendations", "user-embeddings", "events-dlq", "control"}
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def specs() -> dict[str, TopicSpec]:
    return {spec.name: spec for spec in load_specs()}


def test_one_file_per_topic_named_after_it() -> None:
    files = sorted(DEFAULT_TOPICS_DIR.glob("*.json"))
    assert {f.stem for f in files} == NAMES
    for f in files:
        assert json.loads(f.read_text())["name"] == f.stem


def test_partitions_policies_and_retention(specs: dict[str, TopicSpec]) -> None:
    summary = {n: (s.partitions, s.replication, s.cleanup_policy, s.retention_ms) for n, s in specs.items()}
    assert summary == {
        "events": (4, 1, "delete", 7 * DAY_MS),
        "recommendations": (4, 1, "delete", 1 * DAY_MS),
        "user-embeddings": (4, 1, "compact", None),
        "events-dlq": (1, 1, "delete", 14 * DAY_MS),
        "control": (4, 1, "delete", 7 * DAY_MS),
    }
    assert specs["events-dlq"].config == {"max.message.bytes": "4194304"}
    assert specs["events-dlq"].topic_configs() == {
        "cleanup.policy": "delete",
        "retention.ms": str(14 * DAY_MS),
        "max.message.bytes": "4194304",
    }
    assert specs["user-embeddings"].topic_configs() == {"cleanup.policy": "compact"}


@pytest.mark.parametrize(
    ("name", "required"),
    [
        ("events", {"user_id", "item_id", "event", "ts"}),
        (
            "recommendations",
            {
                "user_id",
                "items",
                "event_id",
                "event_ts",
                "published_ts",
                "model_version",
                "model_ts",
                "strategy",
                "explain",
            },
        ),
        ("user-embeddings", {"user_id", "embedding", "model_version", "model_ts", "ts"}),
        ("events-dlq", {"reason", "topic", "partition", "offset", "key", "value", "value_b64", "ts"}),
        ("control", {"command", "user_id"}),
    ],
)
def test_value_schemas(specs: dict[str, TopicSpec], name: str, required: set[str]) -> None:
    spec = specs[name]
    schema = spec.value_schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert set(schema["required"]) == required
    assert required <= set(schema["properties"])
    assert spec.key == {"type": "string", "description": spec.key["description"]}
    assert "user_id" in spec.key["description"]


def test_event_schema_details(specs: dict[str, TopicSpec]) -> None:
    props = specs["events"].value_schema["properties"]
    assert set(EVENT_TYPES) | {"pv", "cart", "buy", "fav"} == set(props["event"]["enum"])
    assert (props["user_id"]["minLength"], props["user_id"]["maxLength"]) == (1, 256)
    assert set(props["ts"]["type"]) == {"number", "string"}
    assert props["context"]["maxProperties"] == 32
    assert set(props["context"]["additionalProperties"]["type"]) == {"string", "number"}
    assert "event_id" not in specs["events"].value_schema["required"]
    strategy = specs["recommendations"].value_schema["properties"]["strategy"]
    assert set(strategy["enum"]) == {"model", "cold_start"}


def test_schemas_are_valid_and_match_the_parser(specs: dict[str, TopicSpec]) -> None:
    """Where jsonschema is at hand: every schema is valid 2020-12, and the parser's output validates."""
    jsonschema = pytest.importorskip("jsonschema")
    for spec in specs.values():
        jsonschema.Draft202012Validator.check_schema(spec.value_schema)
    events = jsonschema.Draft202012Validator(specs["events"].value_schema)
    event = parse_event(b'{"user_id":"u","item_id":"i","event":"pv","ts":1.6e9,"context":{"device":"ios","h":3}}')
    events.validate(event.to_dict())
    assert not events.is_valid({"user_id": "", "item_id": "i", "event": "view", "ts": 1.6e9})
    assert not events.is_valid({"user_id": "u", "item_id": "i", "event": "teleport", "ts": 1.6e9})
    assert not events.is_valid({"user_id": "u", "item_id": "i", "event": "view", "ts": 1.6e12})  # ms
    many = {f"k{i}": i for i in range(33)}
    assert not events.is_valid({"user_id": "u", "item_id": "i", "event": "view", "ts": 1.6e9, "context": many})
    dlq = jsonschema.Draft202012Validator(specs["events-dlq"].value_schema)
    dlq.validate(
        {"reason": "not JSON", "topic": "events", "partition": 0, "offset": 7, "key": None,
         "value": None, "value_b64": "/w==", "ts": 1.7e9}
    )  # fmt: skip


def test_specs_for_renames_to_the_settings(specs: dict[str, TopicSpec]) -> None:
    settings = Settings(
        topic_events="t-events",
        topic_recommendations="t-recs",
        topic_embeddings="t-emb",
        topic_dlq="t-dlq",
        topic_control="t-control",
        partitions=6,
    )
    renamed = {s.name: s for s in specs_for(settings, list(specs.values()))}
    assert {n: s.partitions for n, s in renamed.items()} == {
        "t-events": 6,
        "t-recs": 6,
        "t-emb": 6,
        "t-dlq": 1,
        "t-control": 6,
    }
    assert renamed["t-emb"].cleanup_policy == "compact"
    assert renamed["t-dlq"].config == specs["events-dlq"].config
    assert renamed["t-events"].value_schema == specs["events"].value_schema
    assert {s.name for s in specs.values()} == NAMES  # the originals are untouched


def test_specs_for_defaults_keep_names_and_extra_specs(specs: dict[str, TopicSpec]) -> None:
    extra = TopicSpec("audit", 2, 1, "delete", None)
    out = specs_for(Settings(), [*specs.values(), extra])
    assert {s.name for s in out} == NAMES | {"audit"}
    assert out[-1] == extra


def test_missing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StreamRecError, match="--topics-dir"):
        load_specs(tmp_path / "nowhere")
    with pytest.raises(StreamRecError, match="--topics-dir"):
        load_specs(tmp_path)  # exists but holds no spec


def test_broken_spec_names_file_and_fault(tmp_path: Path) -> None:
    good = json.loads((DEFAULT_TOPICS_DIR / "events.json").read_text())
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(StreamRecError, match=r"a\.json.*JSON"):
        load_specs(tmp_path)
    del good["partitions"]
    (tmp_path / "a.json").write_text(json.dumps(good))
    with pytest.raises(StreamRecError, match="missing partitions"):
        load_specs(tmp_path)
    good |= {"partitions": 0}
    (tmp_path / "a.json").write_text(json.dumps(good))
    with pytest.raises(StreamRecError, match="partitions"):
        load_specs(tmp_path)
    good |= {"partitions": 2, "config": {"max.message.bytes": 4194304}}
    (tmp_path / "a.json").write_text(json.dumps(good))
    with pytest.raises(StreamRecError, match="config"):
        load_specs(tmp_path)


def test_spec_from_a_folder(tmp_path: Path) -> None:
    for name in ("events", "events-dlq"):
        (tmp_path / f"{name}.json").write_text((DEFAULT_TOPICS_DIR / f"{name}.json").read_text())
    (tmp_path / "audit.json").write_text(
        json.dumps({**json.loads((tmp_path / "events.json").read_text()), "name": "audit"})
    )
    assert [s.name for s in load_specs(tmp_path)] == ["events", "events-dlq", "audit"]
