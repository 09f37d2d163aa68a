"""The model-backed recommender: the online learner's sequence model behind the common interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from ..learner import OnlineLearner
from ..sequences import Step
from ..settings import ModelSettings
from .base import Example, Ranking, Recommender

__all__ = ["Recommendation", "SequenceRecommender"]


class Recommendation(NamedTuple):
    ranking: Ranking
    explain: list[tuple[str, float]]  # the history items that weighed most, with their weights
    embedding: list[float] | None  # the user vector


class SequenceRecommender(Recommender):
    """Top-k from the sequence model, learned online; explains with the history steps' weights."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.learner = OnlineLearner(settings)
        self.name = self.learner.settings.encoder

    @classmethod
    def from_learner(cls, learner: OnlineLearner) -> SequenceRecommender:
        """A recommender around an existing learner (one loaded from a checkpoint)."""
        rec = cls.__new__(cls)
        rec.learner = learner
        rec.name = learner.settings.encoder
        return rec

    @property
    def version(self) -> str:
        s = self.learner.settings
        return f"{s.encoder}-{s.fusion}@{self.learner.steps}"

    def learn_many(self, examples: Sequence[Example]) -> None:
        self.learner.learn(examples)

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        return [rec.ranking for rec in self.recommend(histories, k, exclude_seen, n_explain=0)]

    def recommend(
        self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False, n_explain: int = 3
    ) -> list[Recommendation]:
        """Rankings with, for each, the history items that weighed most and the user vector."""
        out = [Recommendation([], [], None) for _ in histories]
        todo = [i for i, h in enumerate(histories) if h]
        if not todo or not len(self.learner.vocab):
            return out
        learner = self.learner
        todo_histories = [histories[i] for i in todo]
        # Without exclusion, the user's items seen since the last learn call get rows: they can be ranked too.
        batch, user, weights = learner.encode_batch(todo_histories, reserve=not exclude_seen)  # _, [B, D], [B, L]
        rows, values = learner.top_k(user, todo_histories, k, exclude_seen, batch)  # [B, k] each, best first
        embeddings = user.numpy().round(5).tolist()
        for row, i in enumerate(todo):
            ranking: Ranking = [
                (learner.vocab.item(r), float(v))  # type: ignore[misc]
                for r, v in zip(rows[row].tolist(), values[row].tolist(), strict=True)
                if v != float("-inf")
            ]
            explain = self._explain(histories[i], weights[row], user[row], n_explain) if n_explain else []
            out[i] = Recommendation(ranking, explain, embeddings[row])
        return out

    def _explain(
        self, history: Sequence[Step], weights: torch.Tensor, user: torch.Tensor, n: int
    ) -> list[tuple[str, float]]:
        recent = history[-self.learner.settings.max_len :]
        w = weights[: len(recent)]  # [l]: right-padded, the history's steps are the first columns
        if not bool(w.any()):
            # Fusions without attention: attribute by each history item's affinity with the user vector.
            rows = torch.tensor([self.learner.vocab.index(s.item) for s in recent])
            affinity = self.learner.model.item_emb.weight[rows] @ user  # [l]
            w = torch.softmax(affinity.masked_fill(rows == 0, float("-inf")), dim=0).nan_to_num(0.0)
        merged: dict[str, float] = {}
        for step, weight in zip(recent, w.tolist(), strict=True):
            merged[step.item] = merged.get(step.item, 0.0) + weight
        best = sorted(merged.items(), key=lambda kv: -kv[1])[:n]
        return [(item, round(weight, 4)) for item, weight in best if weight > 0]

    def explain(self, history: Sequence[Step], ranking: Ranking) -> list[tuple[str, float]]:
        return self.recommend([history], 1)[0].explain
