"""What the web view's inspector reads from a serving snapshot: the mixture's modes behind each item, which add
up to the probability the ranking is by, and an item's nearest neighbours."""

from __future__ import annotations

import torch

from stream_rec.learner import OnlineLearner
from stream_rec.sequences import Step
from stream_rec.settings import ModelSettings
from tests.unit.streams import T0, planted


def learned(**kw: object) -> OnlineLearner:
    learner = OnlineLearner(ModelSettings(dim=16, batch=16, **kw))  # type: ignore[arg-type]
    learner.learn(planted(users=30, seed=1))
    return learner


def test_the_modes_parts_add_up_to_the_probability_the_ranking_is_by() -> None:
    snapshot = learned(transitions=True).snapshot()
    history = [Step("i3", "view", T0), Step("a", "view", T0 + 60)]
    own, follow, explore = snapshot.mode_probabilities(history)
    user, _ = snapshot.encode([history])
    want = snapshot.scores(user, [history])[0].double().exp()
    assert torch.allclose(own + follow + explore, want, atol=1e-6)
    assert abs(float((own + follow + explore).sum()) - 1.0) < 1e-6
    assert own[snapshot.vocab.index("i3")] > 0 and follow[snapshot.vocab.index("b")] > 0, "own items, a follower"


def test_the_explore_mode_is_ranked_at_the_heads_scale() -> None:
    learner = learned(transitions=True)
    history = [Step("i3", "view", T0), Step("a", "view", T0 + 60)]
    with torch.no_grad():
        learner.model.repeat.log_explore_scale.zero_()
    user, _ = learner.snapshot().encode([history])
    raw = learner.snapshot().scores(user)[0].double()  # the explore mode's logits, unscaled
    with torch.no_grad():
        learner.model.repeat.log_explore_scale.fill_(-1.0)
    snapshot = learner.snapshot()
    _, _, explore = snapshot.mode_probabilities(history)
    gate = explore.sum()  # the explore mode's gate: its part sums to it
    assert torch.allclose(explore, gate * torch.softmax(raw * torch.e**-1.0, dim=0), atol=1e-6)
    assert not torch.allclose(explore, gate * torch.softmax(raw, dim=0), atol=1e-4)
    rows, _ = snapshot.top_k(user, [history], 5)  # the ranking is by the same scaled mixture
    assert rows[0].tolist() == snapshot.scores(user, [history])[0].topk(5).indices.tolist()


def test_shares_name_the_mode_behind_each_item() -> None:
    snapshot = learned(transitions=True, transition_window=1).snapshot()  # first-order: some items unrelated
    history = [Step("i3", "view", T0), Step("a", "view", T0 + 60)]
    unrelated = next(
        item for item in (f"i{k}" for k in range(20)) if item not in snapshot.transitions.merged(["a", "i3"], 50)
        and item != "i3"
    )  # fmt: skip
    shares = snapshot.mode_shares(history, ["i3", "b", unrelated, "never-seen"])
    assert set(shares) == {"i3", "b", unrelated}, "an item the snapshot does not know has no shares"
    for parts in shares.values():
        assert abs(sum(parts.values()) - 1.0) < 1e-3
    assert shares["i3"]["own"] > 0 and shares["b"]["transitions"] > 0
    assert shares[unrelated] == {"own": 0.0, "transitions": 0.0, "explore": 1.0}


def test_without_the_mixture_every_item_is_explore() -> None:
    snapshot = learned(repeat=False, transitions=False).snapshot()
    shares = snapshot.mode_shares([Step("a", "view", T0)], ["a", "b"])
    assert shares == {item: {"own": 0.0, "transitions": 0.0, "explore": 1.0} for item in ("a", "b")}


def test_nearest_items_by_their_vectors() -> None:
    snapshot = learned().snapshot()
    near = snapshot.similar("a", n=5)
    assert len(near) == 5 and "a" not in [item for item, _ in near]
    assert [c for _, c in near] == sorted((c for _, c in near), reverse=True)
    rows = torch.tensor([snapshot.vocab.index("a"), snapshot.vocab.index(near[0][0])])
    vectors = torch.nn.functional.normalize(snapshot.model.item_vectors(rows).detach(), dim=1)
    assert abs(float(vectors[0] @ vectors[1]) - near[0][1]) < 1e-3
    assert snapshot.similar("never-seen") == []
