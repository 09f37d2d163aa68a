"""What serving asks of the learning side, and what passes between them: the examples it queues to be learned
(:class:`Queued`), the figures it shows (:class:`Status`) and the calls it makes (:class:`LearningSide`). The
learning side (stream_rec/learning/: in this process, or in one of its own) implements them; serving never imports
it, and is handed one by whoever runs both (the worker, a test, a benchmark).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..sequences import Example
from ..settings import Settings
from .scoring import Scorer

__all__ = ["Durations", "LearningSide", "OpenSide", "Queued", "Status"]


class Durations(Protocol):
    def extend(self, durations: Iterable[float]) -> None: ...


@dataclass(frozen=True, slots=True)
class Queued:
    """An example waiting to be learned, with when it arrived and the offset after the event it came from."""

    example: Example
    arrived: float  # time.monotonic() at admission
    source: str = ""  # "topic:partition"
    next_offset: int = 0


@dataclass(frozen=True, slots=True)
class Status:
    """The learning side's figures at one moment (the web view's)."""

    steps: int
    skipped_steps: int
    examples: int
    loss: float | None
    drifts: int
    replay: int
    replay_capacity: int
    waiting: int  # examples queued, not learned yet
    dropped: int  # examples that gave way unlearned, ever
    running: bool  # whether the trainer learns
    checkpoint: str | None  # the newest checkpoint written or resumed from
    checkpoint_ts: float | None  # ... and its wall-clock time


class LearningSide(Protocol):
    """The learning side as serving uses it."""

    def wait_ready(self) -> None:
        """Return once the first snapshot was published."""

    def submit(self, items: Sequence[Queued]) -> None:
        """Queue examples to learn (never blocks)."""

    def status(self) -> Status: ...

    def start(self) -> None: ...

    def stop(self, drain: float = 5.0) -> None:
        """Stop learning after learning what waits, for at most ``drain`` seconds."""

    def close(self) -> None: ...

    def checkpoint(self, *, replace_all: bool = False) -> Path | None: ...

    def forget(self, user_id: str) -> int:
        """Drop the user's examples; return how many."""


# Makes the learning side for the settings, handing it what to publish snapshots to and where freshness goes.
OpenSide = Callable[[Settings, Callable[[Scorer], None], Durations], LearningSide]
