"""The one small interface every recommender implements, the sequence model and the baselines alike.

Recommenders keep no per-user state of their own: the caller owns users' histories (the worker keeps them in
its table, ``stream-rec evaluate`` in memory) and passes them in. That keeps one code path for both, and lets
a recommender be learned from examples in any order the caller chooses (prequential: rank first, learn second).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ..sequences import Example, Step

__all__ = ["Example", "Ranking", "Recommender"]

Ranking = list[tuple[str, float]]  # (item_id, score), best first


class Recommender(ABC):
    """Learns from (history, event) examples; ranks items for histories."""

    name: str = "recommender"

    @abstractmethod
    def learn_many(self, examples: Sequence[Example]) -> None:
        """Learn from examples, each the user's history before an event and the event."""

    @abstractmethod
    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        """The top ``k`` known items for each history (distinct, best first); fewer if fewer items are known."""

    def learn_one(self, history: Sequence[Step], event: Step) -> None:
        self.learn_many([(history, event)])

    def rank(self, history: Sequence[Step], k: int, exclude_seen: bool = False) -> Ranking:
        return self.rank_many([history], k, exclude_seen)[0]

    def explain(self, history: Sequence[Step], ranking: Ranking) -> list[tuple[str, float]]:
        """Which history items drove a ranking, with weights; empty where the recommender cannot say."""
        return []

    @property
    def version(self) -> str:
        return self.name
