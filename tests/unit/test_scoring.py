"""What a serving snapshot ranks by, and what the web view's inspector reads from it: the parts behind each item
(the repeat mode, the evidence, the sequence model), which add up to the probability the ranking is by, and an
item's nearest neighbours."""

from __future__ import annotations

import pytest
import torch

from stream_rec.items.features import repeats_of
from stream_rec.learning.learner import OnlineLearner
from stream_rec.sequences import Step
from stream_rec.serving.inputs import modes
from stream_rec.serving.inspector import mode_probabilities, mode_shares, similar
from stream_rec.settings import ModelSettings
from tests.unit.streams import T0, planted


def learned(items: int = 20, **kw: object) -> OnlineLearner:
    learner = OnlineLearner(ModelSettings(dim=16, batch=16, **kw))  # type: ignore[arg-type]
    learner.learn(planted(users=30, items=items, seed=1))
    return learner


@pytest.mark.parametrize("repeat", [True, False])
def test_the_modes_parts_add_up_to_the_probability_the_ranking_is_by(repeat: bool) -> None:
    snapshot = learned(repeat=repeat).snapshot()
    history = [Step("i3", "view", T0), Step("a", "view", T0 + 60)]
    own, follow, explore = mode_probabilities(snapshot, history)
    user, _ = snapshot.encode([history])
    scores = snapshot.scores(user, [history])[0].double()
    want = scores.exp() if repeat else torch.softmax(scores, dim=0)
    assert torch.allclose(own + follow + explore, want, atol=1e-6)
    assert abs(float((own + follow + explore).sum()) - 1.0) < 1e-6
    assert follow[snapshot.vocab.index("b")] > 0, "b followed a: the evidence brings it"
    assert (own[snapshot.vocab.index("i3")] > 0) == repeat, "own items have a repeat part where the mode is on"


def test_the_sequence_model_is_ranked_at_the_heads_scale_plus_the_evidence() -> None:
    learner = learned(evidence=True)
    history = [Step("i3", "view", T0), Step("a", "view", T0 + 60)]
    with torch.no_grad():
        learner.model.head.log_explore_scale.zero_()
    user, _ = learner.snapshot().encode([history])
    raw = learner.snapshot().scores(user)[0].double()  # the sequence model's logits, unscaled
    with torch.no_grad():
        learner.model.head.log_explore_scale.fill_(-1.0)
    snapshot = learner.snapshot()
    offered = snapshot.evidence([history])
    add = snapshot.model.head.evidence_scores(user, torch.from_numpy(offered.batch), torch.from_numpy(offered.values))
    rows = torch.from_numpy(offered.rows)
    logits = raw * torch.e**-1.0
    logits[rows] += add.double()
    chosen = torch.zeros_like(raw)  # the offered mode: the offered items alone, the logits at a scale of their own
    chosen[rows] = torch.softmax(raw[rows] * snapshot.model.head.offered_scale().double() + add.double(), dim=0)
    batch, _, _ = snapshot.encode_batch([history])
    gates = modes(snapshot.model, user, repeats_of(batch), offered)[0][0].double().exp()  # repeat, offered, new
    _own, follow, explore = mode_probabilities(snapshot, history)
    want = gates[1] * chosen + gates[2] * torch.softmax(logits, dim=0)
    assert torch.allclose(follow + explore, want.detach(), atol=1e-6)
    rows, _ = snapshot.top_k(user, [history], 5)  # the ranking is by the same mixture
    assert rows[0].tolist() == snapshot.scores(user, [history])[0].topk(5).indices.tolist()


def test_evidence_weights_move_an_offered_items_score_and_no_other() -> None:
    learner = learned(repeat=False)
    history = [Step("a", "view", T0)]
    snapshot = learner.snapshot()
    user, _ = snapshot.encode([history])
    before = snapshot.scores(user, [history])[0]
    offered = set(snapshot.evidence([history]).rows.tolist())
    with torch.no_grad():
        learner.model.head.evidence += 1.0
    after = learner.snapshot().scores(user, [history])[0]
    # Scores are the mixture's log-probabilities: the new mode's normaliser moves every item alike, and the
    # offered items besides.
    shift = after - before
    others = [row for row in range(len(before)) if row not in offered and torch.isfinite(before[row])]
    assert offered and others
    usual = shift[others]
    assert float(usual.max() - usual.min()) < 1e-5, "every other item moves alike"
    assert all(abs(float(shift[row] - usual[0])) > 1e-5 for row in offered)


def test_shares_name_the_mode_behind_each_item() -> None:
    snapshot = learned(items=300).snapshot()  # a catalogue the evidence does not cover
    known = [snapshot.vocab.item(row) or "" for row in snapshot.vocab.active_rows().tolist()]
    mine = next(item for item in known if item not in ("a", "b"))
    history = [Step(mine, "view", T0), Step("a", "view", T0 + 60)]
    offered = {snapshot.vocab.item(row) for row in snapshot.evidence([history]).rows.tolist()}
    unrelated = next(item for item in known if item not in offered and item != mine)
    shares = mode_shares(snapshot, history, [mine, "b", unrelated, "never-seen"])
    assert set(shares) == {mine, "b", unrelated}, "an item the snapshot does not know has no shares"
    for parts in shares.values():
        assert abs(sum(parts.values()) - 1.0) < 1e-3
    assert shares[mine]["own"] > 0 and shares["b"]["transitions"] > 0
    assert shares[unrelated] == {"own": 0.0, "transitions": 0.0, "explore": 1.0}


def test_without_the_repeat_mode_and_the_evidence_every_item_is_explore() -> None:
    snapshot = learned(repeat=False, evidence=False).snapshot()
    shares = mode_shares(snapshot, [Step("a", "view", T0)], ["a", "b"])
    assert shares == {item: {"own": 0.0, "transitions": 0.0, "explore": 1.0} for item in ("a", "b")}


def test_nearest_items_by_their_vectors() -> None:
    snapshot = learned().snapshot()
    near = similar(snapshot, "a", n=5)
    assert len(near) == 5 and "a" not in [item for item, _ in near]
    assert [c for _, c in near] == sorted((c for _, c in near), reverse=True)
    rows = torch.tensor([snapshot.vocab.index("a"), snapshot.vocab.index(near[0][0])])
    vectors = torch.nn.functional.normalize(snapshot.model.item_vectors(rows).detach(), dim=1)
    assert abs(float(vectors[0] @ vectors[1]) - near[0][1]) < 1e-3
    assert similar(snapshot, "never-seen") == []
