"""What the worker hands serving, an accepted event with the user's history around it (worker/admission.py
decides what is accepted), and what it gets back for it, the messages of its answer (serving/engine.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..sequences import Step
from ..wire.events import Event

__all__ = ["Accepted", "Output"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event to answer, with the user's history around it; ``learn`` is false for a redelivery."""

    event: Event
    before: list[Step]  # history before the event (what the model learns to predict it from)
    after: list[Step]  # history including the event (what the next recommendation is made from)
    learn: bool = True
    source: str = ""  # "topic:partition" it was read from
    next_offset: int = 0  # the offset after its message
    seen: Sequence[str] = ()  # with exclude_seen: the user's distinct items, this one included (never recommended)
    served: Sequence[str] = ()  # the list last published for the user before this batch


@dataclass(frozen=True, slots=True)
class Output:
    """The answer to one accepted event: its recommendation message, and its embedding message (None without one)."""

    recommendation: dict[str, Any]
    embedding: dict[str, Any] | None
