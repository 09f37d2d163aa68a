"""Ranking through the common interface: the sequence recommender and the popularity baseline."""

from __future__ import annotations

import pytest

from stream_rec.recommenders import Popularity, SequenceRecommender
from stream_rec.sequences import Step
from stream_rec.settings import ModelSettings
from tests.unit.streams import planted

T0 = 1.6e9
ITEMS = 20


def view(*items: str) -> list[Step]:
    return [Step(item, "view", T0 + 60 * k) for k, item in enumerate(items)]


@pytest.fixture(scope="module")
def trained() -> SequenceRecommender:
    rec = SequenceRecommender(ModelSettings(dim=16, batch=32))
    data = planted()
    for _ in range(10):
        rec.learn_many(data)
    return rec


# --- the sequence recommender ------------------------------------------------------------------------------


def test_fewer_items_than_k(trained: SequenceRecommender) -> None:
    assert len(trained.rank(view("a"), k=100)) == len(trained.learner.vocab) == ITEMS + 2


def test_planted_transition_is_top_1(trained: SequenceRecommender) -> None:
    assert trained.rank(view("a"), k=1)[0][0] == "b"
    assert trained.rank(view("i3", "i7", "a"), k=1)[0][0] == "b"


def test_exclude_seen(trained: SequenceRecommender) -> None:
    history = view("i1", "a", "b", "i2")
    ranking = trained.rank(history, k=ITEMS + 2, exclude_seen=True)
    items = {item for item, _ in ranking}
    assert not items & {"i1", "a", "b", "i2"}
    assert len(items) == ITEMS + 2 - 4
    assert trained.rank(view("a"), k=1, exclude_seen=True)[0][0] == "b"  # b is not in that history


def test_empty_history_gives_nothing(trained: SequenceRecommender) -> None:
    assert trained.rank([], k=5) == []
    assert trained.rank_many([[], view("a"), []], k=3)[0::2] == [[], []]


def test_untrained_recommender_ranks_nothing() -> None:
    assert SequenceRecommender(ModelSettings(dim=16)).rank(view("a"), k=5) == []


def test_explain_names_history_items(trained: SequenceRecommender) -> None:
    history = view("i1", "i2", "a")
    explained = trained.explain(history, trained.rank(history, k=3))
    assert explained and {item for item, _ in explained} <= {"i1", "i2", "a"}
    assert all(weight > 0 for _, weight in explained)


def test_version_moves_with_steps(trained: SequenceRecommender) -> None:
    assert trained.version.endswith(f"@{trained.learner.steps}")


# --- popularity ---------------------------------------------------------------------------------------------


def learn_items(rec: Popularity, items: str) -> None:
    rec.learn_many([([], Step(item, "view", T0 + k)) for k, item in enumerate(items)])


def test_popularity_order_and_ties() -> None:
    pop = Popularity()
    learn_items(pop, "cabbcbdd")
    assert pop.rank([], k=10) == [("b", 3.0), ("c", 2.0), ("d", 2.0), ("a", 1.0)]  # tie c/d: c came first
    assert pop.rank(view("x"), k=2) == [("b", 3.0), ("c", 2.0)]


def test_popularity_exclude_seen() -> None:
    pop = Popularity()
    learn_items(pop, "cabbcbdd")
    assert pop.rank(view("b", "d"), k=2, exclude_seen=True) == [("c", 2.0), ("a", 1.0)]
    assert pop.rank(view("b", "d"), k=10, exclude_seen=True) == [("c", 2.0), ("a", 1.0)]
    assert pop.rank(view("b", "d"), k=2) == [("b", 3.0), ("c", 2.0)]


def test_popularity_learn_one_and_empty() -> None:
    pop = Popularity()
    assert pop.rank([], k=3) == []
    pop.learn_one(view("a"), Step("b", "click", T0))
    assert pop.rank(view("a"), k=3) == [("b", 1.0)]
