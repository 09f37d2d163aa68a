"""The model-backed recommender: the online learner's sequence model behind the common interface."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..learner import OnlineLearner
from ..sequences import Step
from ..settings import ModelSettings
from .base import Example, Ranking, Recommender

__all__ = ["SequenceRecommender"]


class SequenceRecommender(Recommender):
    """Top-k from the sequence model, learned online; explains with the history steps' weights."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.learner = OnlineLearner(settings)
        self.name = self.learner.settings.encoder

    @property
    def version(self) -> str:
        s = self.learner.settings
        return f"{s.encoder}-{s.fusion}@{self.learner.steps}"

    def learn_many(self, examples: Sequence[Example]) -> None:
        self.learner.learn(examples)

    def rank_many(
        self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False
    ) -> list[Ranking]:
        return [ranking for ranking, _ in self.rank_and_explain(histories, k, exclude_seen)]

    def rank_and_explain(
        self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False, n_explain: int = 3
    ) -> list[tuple[Ranking, list[tuple[str, float]]]]:
        """Rankings and, for each, the history items that weighed most in the user vector."""
        out: list[tuple[Ranking, list[tuple[str, float]]]] = [([], []) for _ in histories]
        todo = [i for i, h in enumerate(histories) if h]
        if not todo or not len(self.learner.vocab):
            return out
        learner = self.learner
        user, weights = learner.encode([histories[i] for i in todo])  # [B, D], [B, L]
        scores = learner.scores(user)  # [B, rows]
        if exclude_seen:
            for row, i in enumerate(todo):
                seen = [learner.vocab.index(s.item) for s in histories[i]]
                scores[row, [r for r in seen if r]] = float("-inf")
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        for row, i in enumerate(todo):
            ranking = [
                (learner.vocab.item(r), float(v))
                for r, v in zip(top.indices[row].tolist(), top.values[row].tolist(), strict=True)
                if v != float("-inf")
            ]
            out[i] = (ranking, self._explain(histories[i], weights[row], user[row], n_explain))  # type: ignore[assignment]
        return out

    def _explain(
        self, history: Sequence[Step], weights: torch.Tensor, user: torch.Tensor, n: int
    ) -> list[tuple[str, float]]:
        recent = history[-self.learner.settings.max_len :]
        w = weights[-len(recent) :]  # [l]: left-padded, the history's steps are the last columns
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
        return self.rank_and_explain([history], 1)[0][1]
