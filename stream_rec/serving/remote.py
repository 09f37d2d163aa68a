"""The learning side of a serving worker whose trainer runs elsewhere (``learn_in = kafka``), joined by two topics.

Serving never trains. The worker's agent sends each example to learn to the ``training-examples`` topic, keyed by
user, among the batch's other sends (worker/agent.py): at least once, as the recommendations. A task of the
worker's reads the whole ``model-updates`` topic (one partition, no consumer group: every worker reads all of it)
from the newest full snapshot on, and hands each message to :class:`RemoteLearning`, which gathers an update's
parts (:class:`Assembler`: an update larger than a message comes in several), applies each update that builds on
the version it has, and publishes the scorer to serving whole. An update that does not build on the version it
has (a gap, or a damaged part) makes it wait for the next full snapshot, counted and logged. Until the first one
arrives the worker serves a model that knows nothing, that is the marked cold-start lists. Each update carries
the trainer's figures (its :class:`Status`) and, per example it learned since the last, the seconds from the
example's arrival at the worker until the trainer published it: the worker adds the time until it applied the
update, for model freshness.

A message of ``model-updates`` is one part of one update: its value is the part's bytes, its headers say
``version`` (the trainer's count of updates), ``base`` (the version it builds on; empty for a full snapshot),
``part`` and ``parts``, and ``full`` (the offset of the full snapshot the update's chain starts from).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..items.evidence import GROUP_ITEMS, LIMIT
from ..items.transitions import Transitions
from ..items.vocab import Vocabulary
from ..model import SequenceModel
from ..settings import Settings
from .scoring import Scorer
from .side import Durations, Queued, Status
from .snapshots import Unpacker, from_bytes, warm_up

__all__ = ["Assembler", "RemoteLearning", "UpdateHeaders", "empty_scorer", "start_offset"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateHeaders:
    """What a part of an update says of itself (the message's Kafka headers)."""

    version: int
    base: int | None  # None: a full snapshot
    part: int
    parts: int
    full: int | None  # the offset of the chain's full snapshot, where known

    def encode(self) -> list[tuple[str, bytes]]:
        def b(value: int | None) -> bytes:
            return b"" if value is None else str(value).encode()

        return [("version", b(self.version)), ("base", b(self.base)), ("part", b(self.part)),
                ("parts", b(self.parts)), ("full", b(self.full))]  # fmt: skip

    @classmethod
    def decode(cls, headers: Sequence[tuple[str, bytes]] | None) -> UpdateHeaders:
        """The headers of a message; ``ValueError`` where they are not an update's."""
        found = dict(headers or ())
        try:
            values = {name: int(found[name]) if found[name] else None for name in ("version", "base", "part", "parts")}
            full = int(found["full"]) if found.get("full") else None
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not a model update's headers ({exc})") from None
        if values["version"] is None or values["part"] is None or not values["parts"]:
            raise ValueError("a model update's headers lack its version or parts")
        return cls(values["version"], values["base"], values["part"], values["parts"], full)


def empty_scorer(settings: Settings) -> Scorer:
    """A model that has learned nothing (no steps: serving falls back to the cold-start lists)."""
    s = settings.model
    model = SequenceModel(min(1024, s.capacity + 1), s.dim, s.encoder, s.fusion, s.max_len, s.bptt)
    vocab = Vocabulary(capacity=s.capacity, min_count=s.min_count)
    return Scorer(s, model, vocab, Transitions(LIMIT, GROUP_ITEMS), steps=0).prepare()


class Assembler:
    """Gathers the parts of each update, in order; a part out of its place drops the update it belongs to."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._current: UpdateHeaders | None = None

    def add(self, headers: UpdateHeaders, value: bytes) -> bytes | None:
        """The whole update once its last part is added, else None."""
        if headers.part == 0:
            self._parts, self._current = [], headers
        elif self._current is None or headers.version != self._current.version or headers.part != len(self._parts):
            self._current = None
            return None
        self._parts.append(value)
        if len(self._parts) < headers.parts:
            return None
        self._current = None
        return b"".join(self._parts)


def start_offset(last: tuple[int, Sequence[tuple[str, bytes]] | None] | None) -> int | None:
    """Where to start reading the updates, from the newest message (its offset and headers): the first part of the
    newest full snapshot (None: from the topic's start)."""
    if last is None:
        return None
    offset, raw = last
    try:
        headers = UpdateHeaders.decode(raw)
    except ValueError:
        return None
    return offset - headers.part if headers.base is None else headers.full


class RemoteLearning:
    """The learning side of a worker whose trainer runs elsewhere; see the module's docstring."""

    def __init__(self, settings: Settings, publish: Callable[[Scorer], None], freshness: Durations) -> None:
        self.settings, self._publish, self._freshness = settings, publish, freshness
        self.version: int | None = None  # the update applied last
        self.gaps = 0  # updates skipped while waiting for a full snapshot
        self.applied = 0
        self.behind: int | None = None  # messages of the topic not read yet, as the reader last saw it
        self.assembler = Assembler()
        self._unpacker: Unpacker | None = None
        self._status = Status(0, 0, 0, None, 0, 0, 0, 0, 0, False, None, None)  # until the trainer says
        publish(empty_scorer(settings))
        # beside the worker's start, which waits mostly on the broker (joining the group, recovering the table)
        self._warm = threading.Thread(target=warm_up, args=(settings.model,), name="warm-up", daemon=True)
        self._warm.start()

    # -- what serving asks: the examples and the forgetting go to the trainer through the agent's sends ---------

    def wait_ready(self) -> None:
        """A model that knows nothing was published at once."""

    def start(self) -> None:
        """The trainer learns where it runs."""

    def stop(self, drain: float = 5.0) -> None:
        """Nothing is learned here."""

    def close(self) -> None:
        """Nothing to let go of."""

    def submit(self, items: Sequence[Queued]) -> None:
        """The agent sends the examples to the trainer itself (worker/agent.py)."""

    def forget(self, user_id: str) -> int:
        """The agent tells the trainer, in order with the user's examples."""
        return 0

    def checkpoint(self, *, replace_all: bool = False) -> Path | None:
        """The trainer writes the checkpoints."""
        return None

    def status(self) -> Status:
        """The trainer's figures, as its newest update applied here carried them; ``running``: serving follows the
        trainer's updates (it serves whether the trainer runs or not)."""
        return dataclasses.replace(self._status, running=True)

    # -- the updates -------------------------------------------------------------------------------------------

    def take(self, offset: int, raw_headers: Sequence[tuple[str, bytes]] | None, value: bytes) -> None:
        """One message of the model-updates topic, in order (applied once its update is whole)."""
        try:
            headers = UpdateHeaders.decode(raw_headers)
        except ValueError as exc:
            log.warning("model-updates offset %d: skipped: %s", offset, exc)
            return
        data = self.assembler.add(headers, value)
        if data is not None:
            self.apply(headers, data)

    def apply(self, headers: UpdateHeaders, data: bytes) -> None:
        """Apply one whole update and publish its scorer, or wait for a full snapshot where it cannot be."""
        if headers.base is None:
            self._unpacker = Unpacker()  # a full snapshot: the vocabulary and counts start anew
        elif self._unpacker is None or headers.base != self.version:
            self._skip(f"model update {headers.version} builds on {headers.base}, but {self.version} is applied")
            return
        self._warm.join()
        try:
            header, buffers = from_bytes(data)
            scorer = self._unpacker.unpack(header, buffers)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            self._unpacker = None
            self._skip(f"model update {headers.version} cannot be applied ({exc})")
            return
        self._publish(scorer)
        if headers.base is None or self.version is None:
            log.info("model version %d applied (a full snapshot, %d steps learned)", headers.version, scorer.steps)
        self.version, self.applied = headers.version, self.applied + 1
        published = header.get("published")
        if isinstance(published, (int, float)):
            handed_over = max(0.0, time.time() - published)
            self._freshness.extend(d + handed_over for d in header.get("durations", ()))
        if isinstance(header.get("status"), dict):
            self._status = Status(**header["status"])

    def _skip(self, why: str) -> None:
        self.gaps += 1
        if self.gaps == 1 or self.gaps % 100 == 0:
            log.warning("%s: waiting for the next full snapshot (%d updates skipped so far)", why, self.gaps)
