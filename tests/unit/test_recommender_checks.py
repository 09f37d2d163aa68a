"""The recommender checks that ship with the package: every registered recommender passes them, and a recommender
that breaks a promise fails the check for it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from stream_rec.evaluation.prequential import RECOMMENDERS, make_recommender
from stream_rec.recommenders import Popularity
from stream_rec.recommenders.base import Ranking
from stream_rec.recommenders.checks import (
    check_deterministic,
    check_inputs_unchanged,
    check_learns,
    check_rankings,
    check_recommender,
    check_round_trip,
)
from stream_rec.sequences import Example, Step
from stream_rec.settings import ModelSettings

SMALL = ModelSettings(dim=8, batch=16)  # the sequence models small enough to check in seconds


@pytest.mark.parametrize("name", RECOMMENDERS)
def test_every_registered_recommender_passes_the_checks(name: str) -> None:
    check_recommender(lambda: make_recommender(name, SMALL))


class Mutating(Popularity):
    def learn_many(self, examples: Sequence[Example]) -> None:
        super().learn_many(examples)
        for history, _ in examples:
            if isinstance(history, list) and history:
                history.pop()


class Unseeded(Popularity):
    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        rankings = super().rank_many(histories, 3 * k, exclude_seen)
        return [random.sample(ranking, min(k, len(ranking))) for ranking in rankings]


class Ignores(Popularity):
    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        return super().rank_many(histories, k)  # exclude_seen ignored


class Forgetful(Popularity):
    def learn_many(self, examples: Sequence[Example]) -> None:
        pass


class Unpicklable(Popularity):
    def __init__(self) -> None:
        super().__init__()
        self.hook = lambda: None


@pytest.mark.parametrize(
    ("broken", "check", "says"),
    [
        (Mutating, check_inputs_unchanged, "changed the examples"),
        (Unseeded, check_deterministic, "other rankings"),
        (Ignores, check_rankings, "exclude_seen, yet"),
        (Forgetful, check_learns, "did not learn"),
        (Unpicklable, check_round_trip, "cannot be pickled"),
    ],
)
def test_a_broken_promise_fails_its_check(
    broken: Callable[[], Popularity], check: Callable[[Callable[[], Popularity]], None], says: str
) -> None:
    with pytest.raises(AssertionError, match=says):
        check(broken)
    with pytest.raises(AssertionError, match=rf"^{check.__name__}: "):
        check_recommender(broken)
