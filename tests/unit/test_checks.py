"""One check suite, run against every recommender by name (baselines and the sequence models alike).

In the manner of river's ``checks``: whatever a recommender does inside, it must not change its inputs, must give
the same output for the same seed, must rank ``k`` distinct known items best first, and must learn a planted
preference from a toy stream. The model-backed ones must also come back from a checkpoint ranking and learning
alike (the baselines keep no state worth a checkpoint beyond counts; they are rebuilt from the stream).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from stream_rec.evaluation.prequential import RECOMMENDERS, make_recommender
from stream_rec.learning.learner import Example
from stream_rec.recommenders.base import Recommender
from stream_rec.sequences import Step
from stream_rec.settings import ModelSettings
from tests.unit.streams import T0, planted

SMALL = ModelSettings(dim=16, batch=32, seed=7)


def fresh(name: str) -> Recommender:
    return make_recommender(name, SMALL)


@pytest.fixture(scope="module")
def stream() -> list[Example]:
    return planted(users=30, items=20, length=12, seed=1)


@pytest.fixture(scope="module", params=RECOMMENDERS)
def trained(request: pytest.FixtureRequest, stream: list[Example]) -> tuple[str, Recommender]:
    rec = fresh(request.param)
    rec.learn_many(stream)
    return request.param, rec


def probe(*items: str, user: str = "u3") -> list[Step]:
    return [Step(item, "view", T0 + 60 * k, user=user) for k, item in enumerate(items)]


@pytest.mark.parametrize("name", RECOMMENDERS)
def test_inputs_are_not_changed(name: str, stream: list[Example]) -> None:
    rec = fresh(name)
    examples = copy.deepcopy(stream)
    rec.learn_many(examples)
    assert examples == stream
    histories = [probe("a", "i1"), probe("i2"), []]
    before = copy.deepcopy(histories)
    rec.rank_many(histories, k=5, exclude_seen=True)
    assert histories == before


@pytest.mark.parametrize("name", RECOMMENDERS)
def test_same_seed_same_output(name: str, stream: list[Example]) -> None:
    one, two = fresh(name), fresh(name)
    one.learn_many(stream)
    two.learn_many(stream)
    histories = [probe("a"), probe("i3", "i4"), probe("never-seen")]
    assert one.rank_many(histories, k=10) == two.rank_many(histories, k=10)


def test_rank_gives_k_distinct_known_items_best_first(trained: tuple[str, Recommender]) -> None:
    name, rec = trained
    known = {f"i{k}" for k in range(20)} | {"a", "b"}
    for history in (probe("a"), probe("i3", "i4", "i3"), probe("never-seen")):
        for exclude_seen in (False, True):
            ranking = rec.rank(history, k=10, exclude_seen=exclude_seen)
            items = [item for item, _ in ranking]
            assert len(items) == 10 == len(set(items)), (name, ranking)
            assert set(items) <= known | {s.item for s in history}, name  # a user's own items are known too
            scores = [score for _, score in ranking]
            assert scores == sorted(scores, reverse=True), name
            if exclude_seen:
                assert not set(items) & {s.item for s in history}, name


def test_rank_many_is_rank_for_each(trained: tuple[str, Recommender]) -> None:
    name, rec = trained
    histories = [probe("a"), probe("i1", "i2", "i3", "i4", "i5", "i6"), probe("b")]
    assert [[i for i, _ in r] for r in rec.rank_many(histories, k=5)] == [
        [i for i, _ in rec.rank(h, k=5)] for h in histories
    ], name


def test_the_planted_preference_is_learned(trained: tuple[str, Recommender]) -> None:
    """``a`` is frequent and always followed by ``b``: after an ``a``, every recommender must offer ``b``."""
    name, rec = trained
    top = [item for item, _ in rec.rank(probe("i5", "a"), k=3, exclude_seen=True)]
    assert "b" in top, (name, top)


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer", "graph"])
def test_a_checkpoint_round_trip_ranks_and_learns_alike(name: str, stream: list[Example], tmp_path: Path) -> None:
    from stream_rec.learning import checkpoint
    from stream_rec.learning.recommender import SequenceRecommender

    # Replay, drift detection and the transition memory on: a checkpoint keeps them all.
    rec = make_recommender(name, SMALL.model_copy(update={"replay": 1.0, "drift": True, "transitions": True}))
    assert isinstance(rec, SequenceRecommender)
    rec.learn_many(stream[:200])
    path = checkpoint.save(rec.learner, tmp_path / "c.safetensors", offsets={"events:0": 200})
    restored = SequenceRecommender.from_learner(checkpoint.load(path)[0])
    assert checkpoint.load(path)[1] == {"events:0": 200}
    histories = [probe("a"), probe("i1", "i2", "i3"), probe("b", "a")]
    assert restored.rank_many(histories, k=10) == rec.rank_many(histories, k=10)
    rec.learn_many(stream[200:])  # the optimizer state and generators came back too: learning goes on alike
    restored.learn_many(stream[200:])
    assert restored.rank_many(histories, k=10) == rec.rank_many(histories, k=10)
