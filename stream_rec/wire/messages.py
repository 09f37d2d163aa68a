"""Pure: the messages the worker publishes, field for field as topics/*.json describes them.

- ``recommendations`` (key = user id): :func:`recommendation_message`;
- ``user-embeddings`` (compacted, key = user id): :func:`embedding_message`; a tombstone (no value) forgets one;
- ``events-dlq``: deadletter.py's envelope; ``control``: control.py's commands.

Both carry the serving snapshot's ``model_version`` (``<encoder>-<fusion>@<steps>``, or ``popularity@<steps>``
for a cold start) and ``model_ts``, the wall-clock time that snapshot was taken.

>>> from types import SimpleNamespace
>>> from stream_rec.wire.events import Event
>>> snapshot = SimpleNamespace(version="lstm-attention@12", steps=12, ts=1700000000.0)
>>> m = recommendation_message(Event("u1", "a", "view", 1.7e9, "e1"), [("b", 0.91234567)], "model", snapshot, [])
>>> m["items"], m["model_version"], m["model_ts"], sorted(embedding_message("u1", [0.5], m))
([{'item_id': 'b', 'score': 0.912346}], 'lstm-attention@12', 1700000000.0, ['embedding', 'model_ts', \
'model_version', 'ts', 'user_id'])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from .events import Event

__all__ = ["embedding_message", "recommendation_message"]


class Version(Protocol):
    @property
    def version(self) -> str: ...

    steps: int
    ts: float


def recommendation_message(
    event: Event | None,
    ranking: Sequence[tuple[str, float]],
    strategy: str,
    snapshot: Version,
    explain: Sequence[tuple[str, float]],
) -> dict[str, Any]:
    """The top-k list answering ``event`` (None: a list asked for outside the stream, by the web view)."""
    return {
        "user_id": event.user_id if event else None,
        "items": [{"item_id": item, "score": round(score, 6)} for item, score in ranking],
        "event_id": event.event_id if event else None,
        "event_ts": event.ts if event else None,
        "published_ts": time.time(),
        "model_version": snapshot.version if strategy == "model" else f"popularity@{snapshot.steps}",
        "model_ts": snapshot.ts,
        "strategy": strategy,
        "explain": [{"item_id": item, "weight": weight} for item, weight in explain],
    }


def embedding_message(user_id: str, embedding: list[float], recommendation: dict[str, Any]) -> dict[str, Any]:
    """The user's vector, from the snapshot that ranked ``recommendation``."""
    return {
        "user_id": user_id, "embedding": embedding, "model_version": recommendation["model_version"],
        "model_ts": recommendation["model_ts"], "ts": recommendation["published_ts"],
    }  # fmt: skip
