"""One frozen settings object; every option has a default that works on a laptop and an environment variable.

Nothing else in stream-rec reads ``os.environ``. Each field is read from ``STREAM_REC_<NAME>`` (upper case), and
model fields from ``STREAM_REC_MODEL__<NAME>``, e.g. ``STREAM_REC_MODEL__DIM=128``; the same lines in a settings
file (:meth:`Settings.load`) count where the environment says nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import StreamRecError
from .security import Security

__all__ = ["DEFAULT_BROKER", "ModelSettings", "Retrieval", "Settings"]

DEFAULT_BROKER = "127.0.0.1:9092"


class ModelSettings(BaseModel):
    """The sequence model and its online learner (shared by the worker and ``stream-rec evaluate``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoder: Literal["lstm", "gru", "transformer", "graph"] = Field(
        "lstm", description="sequence encoder: lstm, gru, a small causal transformer, or graph (SR-GNN-like)"
    )
    fusion: Literal["concat", "weighted", "attention"] = Field("attention", description="context fusion")
    dim: int = Field(64, ge=8, le=1024, description="item embedding and hidden size")
    max_len: int = Field(50, ge=1, le=1000, description="history steps the encoder reads")
    bptt: int = Field(
        10, ge=0, le=1000, description="lstm/gru: steps back-propagated through while learning (0 = all of them)"
    )
    capacity: int = Field(200_000, ge=16, description="most items held in the vocabulary; the oldest are evicted")
    min_count: int = Field(1, ge=1, description="sightings before an item gets an embedding")
    optimizer: Literal["adagrad", "adam"] = Field("adagrad", description="online optimizer")
    lr: float = Field(0.05, gt=0, description="learning rate")
    head_lr: float = Field(
        0.1,
        gt=0,
        description="learning rate of the mixture head (its gates, repeat scores and explore scale): a handful of "
        "weights that every new event teaches, so that they settle within a stream's first few thousand events",
    )
    accumulator_init: float = Field(
        3e-4,
        ge=0,
        description="adagrad: each item-table weight's starting sum of squared gradients, about one step's worth "
        "for a row; from 0 a row's first step moves every weight by the full learning rate, and an item seen "
        "once jumps as far as a popular one (TensorFlow's 0.1 all but froze MovieLens's items)",
    )
    clip: float = Field(5.0, gt=0, description="gradient norm clipping")
    batch: int = Field(64, ge=1, description="examples per gradient step")
    replay: float = Field(1.0, ge=0, description="replayed past examples per new example in each step")
    replay_size: int = Field(20_000, ge=0, description="examples held in the replay buffer")
    negatives: int = Field(1024, ge=0, description="popularity-sampled negatives; 0 = full softmax")
    full_softmax_below: int = Field(20_000, ge=0, description="use the full softmax while the vocabulary is smaller")
    exclude_seen: bool = Field(
        False,
        description="never recommend an item the user has had an event for (the last 1,000 distinct ones: data "
        "without repeat consumption); the worker and evaluate alike, and the training softmax leaves them out too",
    )
    scoring: Literal["dot", "cosine", "sigmoid"] = Field(
        "dot",
        description="item scores: dot product (softmax loss), cosine (scaled, softmax loss) or sigmoid (dot "
        "product, binary loss on the target against the sampled items)",
    )
    drift: bool = Field(True, description="detect a rise of the loss (river's ADWIN) and raise the learning rate")
    drift_boost: float = Field(3.0, ge=1, description="learning-rate factor after a detected rise of the loss")
    drift_steps: int = Field(100, ge=1, description="steps the boosted learning rate lasts")
    repeat: bool = Field(
        True,
        description="the repeat mode: the user's own recent items, scored from their recency, event type and count, "
        "with a gate that learns from the data how often users come back (inactive with exclude_seen)",
    )
    evidence: bool = Field(
        True,
        description="the new mode weighs the evidence of counting beside the sequence model's scores: what followed "
        "the user's last items within a window anywhere in the stream, what went with the user's last few items, "
        "and the popular items of the category of the user's newest item, each at a learned weight",
    )
    evidence_window: int = Field(
        10,
        ge=1,
        le=200,
        description="how far apart two events of a user may be to count as one following (or going with) the other "
        "in the evidence: that many steps (weighted 1/gap), and that many distinct items",
    )
    groups: bool = Field(
        True,
        description="the evidence includes the items most often seen with the side features of the user's newest "
        'item that has any (item={"category": ...}): the popular items of its category',
    )
    popularity: bool = Field(
        True,
        description="add a learned multiple of log(1 + the item's count so far) to its score: a popularity prior "
        "that holds from an item's first sighting, where its embedding and bias have learned nothing yet",
    )
    threads: int = Field(
        0,
        ge=0,
        le=256,
        description="torch threads (process-wide); 0 = one per core in evaluate, and half of the cores in the worker, "
        "whose serving and trainer run side by side (two each on two cores raised the p99 latency by a third)",
    )

    @property
    def mixture(self) -> bool:
        """Whether the head mixes modes (model/head.py): the repeat mode is on, or the evidence's offered mode."""
        return self.repeats or self.evidence

    @property
    def repeats(self) -> bool:
        """Whether the repeat mode is on: asked for, and the user's own items can be ranked at all."""
        return self.repeat and not self.exclude_seen

    def replaced(self, **changes: Any) -> ModelSettings:
        """A copy with ``changes``, validated as the settings are (``model_copy`` would take any value).

        >>> ModelSettings().replaced(dim=16, exclude_seen=True).repeats
        False
        """
        return ModelSettings.model_validate({**self.model_dump(), **changes})

    def torch_threads(self, *, beside: int = 1) -> int:
        """The torch threads to use: ``threads``, or where it is 0 the cores shared among ``beside`` threads of
        work."""
        return self.threads or max(1, (os.cpu_count() or 1) // beside)

    seed: int = Field(0, description="seed of every random choice")


class Retrieval(BaseModel):
    """How serving finds the best items of a large catalogue (serving/retrieval.py): by scoring every item, or
    from an approximate index's candidates, rescored exactly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["auto", "exact", "index"] = Field(
        "auto",
        description="auto: score every item below index_from items and rank from the index's candidates above; "
        "exact: always score every item; index: always use the index (once one is built)",
    )
    index_from: int = Field(
        50_000,
        ge=1,
        description="items in the vocabulary from which auto ranks from the index (exact ranking costs about 2 us "
        "per 1,000 items per event here, the index's search about 100-200 us whatever the size)",
    )
    rebuild_every: float = Field(
        60.0,
        gt=0,
        description="seconds between two index builds from the newest snapshot, in a thread beside serving (a "
        "million items take 25-30 s of one core); items admitted since a build are scored exactly until the next",
    )
    lists: int = Field(0, ge=0, description="inverted lists of the index (k-means cells); 0 = 4 x sqrt(items)")
    probe: int = Field(16, ge=1, description="lists searched for each user: more is slower and finds more")
    candidates: int = Field(100, ge=10, description="items the index gives each user, rescored exactly")


class Settings(BaseSettings):
    """Everything a stream-rec process can be told, from keyword arguments or ``STREAM_REC_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="STREAM_REC_", env_nested_delimiter="__", frozen=True, extra="ignore")

    broker: str | None = Field(
        None,
        description="Kafka bootstrap servers, host:port[,host:port]; unset = the local broker on 127.0.0.1:9092, "
        "which `stream-rec demo` installs and starts by itself",
    )
    home: Path = Field(Path.home() / ".stream-rec", description="where the local broker and worker keep state")
    kafka_version: str = Field("3.9.2", description="Apache Kafka version of the local broker")
    app_id: str = Field("stream-rec", description="Faust application id (consumer group, changelog prefix)")
    topic_events: str = Field("events", description="input topic of behaviour events")
    topic_recommendations: str = Field("recommendations", description="output topic of top-k lists")
    topic_embeddings: str = Field("user-embeddings", description="output topic of user embeddings (compacted)")
    topic_dlq: str = Field("events-dlq", description="dead-letter topic for invalid input")
    topic_control: str = Field("control", description="commands to the workers, keyed by user id (`stream-rec forget`)")
    partitions: int = Field(4, ge=1, description="partitions of the events topic (and of the sequence table)")
    k: int = Field(10, ge=1, le=1000, description="length of each recommendation list")
    seq_len: int = Field(
        50,
        ge=1,
        le=10_000,
        description="events kept in each user's rolling sequence (the worker's table, evaluate's histories); the "
        "encoder reads the last model.max_len of them",
    )
    data_dir: Path | None = Field(None, description="worker state (RocksDB tables); unset = <home>/worker")
    catalogue: Path | None = Field(
        None,
        description="a file of the shop's item ids, one per line, that the model gives rows to as it starts: they "
        "can be recommended before their first event (up to model.capacity items; the trainer reads it)",
    )
    checkpoint_every: float = Field(
        60.0,
        ge=0,
        description="seconds between the worker's model checkpoints (0 = never); a worker resumes from "
        "the newest one in <data_dir>/checkpoints",
    )
    checkpoint_keep: int = Field(3, ge=1, description="newest checkpoints kept")
    web_port: int = Field(6066, ge=1, le=65535, description="port of the worker's web view")
    web_bind: str = Field(
        "127.0.0.1",
        description="address the web view listens on; 127.0.0.1 keeps it to this machine, 0.0.0.0 opens it to "
        "the network",
    )
    web_tables: bool = Field(
        False,
        description="also serve Faust's own /table/ and /router/ pages (any user's whole sequence, to anyone who "
        "can reach the web view)",
    )
    user_ttl: float = Field(
        30 * 86_400.0,
        ge=0,
        description="seconds without an event after which a user's sequence is removed from the table (with a "
        "changelog tombstone) and their embedding tombstoned; 0 = never",
    )
    session_timeout: float = Field(
        10.0,
        ge=6,
        le=300,
        description="seconds the broker waits for a silent worker before giving its partitions to others",
    )
    instance_id: str | None = Field(
        None,
        description="the worker's static group membership id (Kafka's group.instance.id): a restarted worker with "
        "the same id gets its partitions back at once; unset = derived from the app id and the data folder",
    )
    batch_size: int = Field(256, ge=1, description="most events the agent takes at once (stream.take)")
    evaluate_batch: int = Field(
        128,
        ge=1,
        description="events `stream-rec evaluate` ranks together before the models learn them, as the worker ranks "
        "a batch with a snapshot that learned none of it (1 = strictly event by event)",
    )
    batch_within: float = Field(
        0.02,
        gt=0,
        description="seconds the agent waits to fill a batch (all of them, unless batch_size events come first): "
        "shorter means less latency, longer fewer, larger batches",
    )
    linger: float = Field(
        0.01,
        ge=0,
        le=1,
        description="seconds the worker's producer waits to gather outgoing messages into one request (Kafka's "
        "linger.ms): up to that much latency for fewer, larger requests",
    )
    max_event_bytes: int = Field(65_536, ge=256, description="largest event payload accepted")
    refresh_every: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="seconds between two serving snapshots of the model (after something was learned): the "
        "serving path ranks with the newest one while the trainer learns beside it",
    )
    status_every: float = Field(
        30.0,
        ge=0,
        description="seconds between the worker's one-line status logs (events/s, lag, hit rate, loss); 0 = none",
    )
    learn_in: Literal["thread", "process", "kafka"] = Field(
        "thread",
        description="where the trainer learns: a thread of the worker's process, or a process of its own, which "
        "leaves the interpreter's lock to serving but needs a core of its own to gain (docs/benchmarks/history.md); "
        "kafka: a `stream-rec trainer` elsewhere, fed the examples and publishing the model through Kafka topics",
    )
    publish_full_every: float = Field(
        60.0,
        gt=0,
        description="learn_in = kafka: seconds between the trainer's full snapshots on the model-updates topic "
        "(between them it publishes what changed); a worker starts from the newest full one and applies the changes "
        "since, so this bounds how many it applies before it serves the current model",
    )
    learn_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="the learning process's niceness (learn_in = process): above 0, serving has the cores first "
        "when both want them, and learning takes what is left",
    )
    learn_queue: int = Field(
        10_000,
        ge=1,
        description="examples waiting for the trainer at most; beyond it the oldest give way, counted as "
        "learn_dropped (the serving path never waits for learning)",
    )
    log_level: str = Field("info", description="worker log level")
    security: Security = Field(
        default_factory=Security, description="TLS and SASL of the cluster, for every client (STREAM_REC_SECURITY__*)"
    )
    model: ModelSettings = Field(default_factory=ModelSettings)
    retrieval: Retrieval = Field(
        default_factory=Retrieval, description="exact ranking or an approximate index (STREAM_REC_RETRIEVAL__*)"
    )

    @classmethod
    def load(cls, file: str | Path | None = None, **overrides: Any) -> Settings:
        """The settings: ``overrides``, over ``STREAM_REC_*`` variables, over a settings file of such lines
        (``file``, else the one ``STREAM_REC_SETTINGS_FILE`` names, e.g. what ``stream-rec tune`` wrote), over the
        defaults."""
        file = file or os.environ.get("STREAM_REC_SETTINGS_FILE") or None
        if file is not None and not Path(file).is_file():
            raise StreamRecError(f"settings file not found: {file}; pass the file `stream-rec tune --out` wrote")
        return cls(_env_file=file, **overrides)

    @property
    def bootstrap(self) -> str:
        """The broker to talk to: the configured one, else the local one."""
        return self.broker or DEFAULT_BROKER

    def client_config(self, **config: Any) -> dict[str, Any]:
        """kafka-python's client arguments for this cluster (address and security), with ``config`` added."""
        return {"bootstrap_servers": self.bootstrap, **self.security.kafka_python(), **config}

    def aio_client_config(self, **config: Any) -> dict[str, Any]:
        """aiokafka's client arguments for this cluster (address and security), with ``config`` added."""
        return {"bootstrap_servers": self.bootstrap, **self.security.aiokafka(), **config}

    @property
    def topic_rerouted(self) -> str:
        """Where events not keyed by user id are sent on, keyed by user id (a topic the worker creates)."""
        return f"{self.app_id}-{self.topic_events}-rerouted"

    @property
    def topic_examples(self) -> str:
        """Where serving workers send the examples to learn, keyed by user (learn_in = kafka; created at start)."""
        return f"{self.app_id}-training-examples"

    @property
    def topic_updates(self) -> str:
        """Where the trainer publishes the model, one partition, in order (learn_in = kafka; created at start)."""
        return f"{self.app_id}-model-updates"

    @property
    def checkpoint_dir(self) -> Path:
        return self.worker_dir / "checkpoints"

    @property
    def worker_dir(self) -> Path:
        return self.data_dir or self.home / "worker"
