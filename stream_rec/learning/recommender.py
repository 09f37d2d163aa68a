"""The model-backed recommender: the online learner's sequence model behind the common interface.

It learns on the learner and ranks with a serving snapshot of it (scoring.py), taken again once
``refresh_events`` events have been learned since the last one (0: after every learn call), as a worker's
snapshot lags its learner: ``stream-rec evaluate --refresh-events N`` measures what that lag costs.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..recommenders.base import Ranking, Recommender
from ..sequences import Example, Step
from ..serving.scoring import Recommendation, Scorer
from ..settings import ModelSettings
from .learner import OnlineLearner

__all__ = ["Recommendation", "SequenceRecommender"]


class SequenceRecommender(Recommender):
    """Top-k from the sequence model, learned online; explains with the history steps' weights."""

    def __init__(self, settings: ModelSettings | None = None, *, refresh_events: int = 0) -> None:
        self.learner = OnlineLearner(settings)
        self.name = self.learner.settings.encoder
        self.refresh_events = refresh_events
        self._scorer: Scorer | None = None
        self._unseen = 0  # events learned since the scorer was taken

    @classmethod
    def from_learner(cls, learner: OnlineLearner, *, refresh_events: int = 0) -> SequenceRecommender:
        """A recommender around an existing learner (one loaded from a checkpoint)."""
        rec = cls.__new__(cls)
        rec.learner, rec.name, rec.refresh_events = learner, learner.settings.encoder, refresh_events
        rec._scorer, rec._unseen = None, 0
        return rec

    @property
    def scorer(self) -> Scorer:
        """The snapshot rankings come from, taken again when it lags ``refresh_events`` events or more."""
        if self._scorer is None or (self._unseen and self._unseen >= self.refresh_events):
            self._scorer, self._unseen = self.learner.snapshot(), 0
        return self._scorer

    @property
    def version(self) -> str:
        return self.scorer.version

    def learn_many(self, examples: Sequence[Example]) -> None:
        self.learner.learn(examples)
        self._unseen += len(examples)

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        return [rec.ranking for rec in self.recommend(histories, k, exclude_seen, n_explain=0)]

    def recommend(
        self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False, n_explain: int = 3
    ) -> list[Recommendation]:
        """Rankings with, for each, the history items that weighed most and the user vector."""
        return self.scorer.recommend(histories, k, exclude_seen, n_explain)

    def explain(self, history: Sequence[Step], ranking: Ranking) -> list[tuple[str, float]]:
        return self.recommend([history], 1)[0].explain
