"""The online learner: a step learns, a non-finite loss is skipped, tables grow, sampled softmax learns."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from stream_rec.items import evidence
from stream_rec.items.features import NO_REPEATS, encode_histories
from stream_rec.items.transitions import GROUP, TOGETHER, together
from stream_rec.learning import sampling
from stream_rec.learning.learner import Example, OnlineLearner
from stream_rec.learning.losses import seen_mask
from stream_rec.learning.optim import sparse_tables
from stream_rec.model.head import MODES
from stream_rec.sequences import Step
from stream_rec.serving.inputs import modes
from stream_rec.settings import ModelSettings
from tests.unit.streams import planted

T0 = 1.6e9


def chain(prefix: str, n: int) -> list[Example]:
    """Examples ``prefix0 -> prefix1 -> ...``: n + 1 items, each example one step."""
    return [([Step(f"{prefix}{k}", "view", T0 + k)], Step(f"{prefix}{k + 1}", "view", T0 + k + 1)) for k in range(n)]


def snapshot(learner: OnlineLearner) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in learner.model.named_parameters()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].nan_to_num(7.0), b[k].nan_to_num(7.0)) for k in a)


def top1(learner: OnlineLearner, history: Sequence[Step]) -> str | None:
    scorer = learner.snapshot()
    user, _ = scorer.encode([history])
    return scorer.vocab.item(int(scorer.scores(user).argmax(dim=1)))


def small(**kw: Any) -> ModelSettings:
    return ModelSettings(dim=16, **kw)


def test_one_step_changes_weights_and_lowers_the_loss_on_a_repeated_batch() -> None:
    learner = OnlineLearner(small(batch=64, replay=0.0))
    batch = planted()[:60]
    before = snapshot(learner)
    learner.learn(batch)
    assert (learner.steps, learner.skipped_steps, learner.examples) == (1, 0, 60)
    first = learner.last_loss
    after = snapshot(learner)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert {"item_emb.weight", "item_bias.weight", "fuse.weight"} <= changed
    unused = learner.vocab.rows + 10  # a row no item holds: a sparse step never touches it
    assert torch.equal(before["item_emb.weight"][unused], after["item_emb.weight"][unused])
    assert torch.equal(before["item_emb.weight"][0], after["item_emb.weight"][0])  # padding stays put
    for _ in range(3):
        learner.learn(batch)
    assert learner.steps == 4
    assert learner.last_loss < first


def test_examples_without_history_or_a_known_item_teach_nothing() -> None:
    learner = OnlineLearner(small(min_count=2))
    learner.learn([([], Step("a", "view", T0)), ([Step("a", "view", T0)], Step("b", "view", T0 + 1))])
    assert learner.steps == 0 and learner.examples == 2  # b has been seen once: no row yet


def test_a_non_finite_loss_is_skipped_and_changes_nothing() -> None:
    learner = OnlineLearner(small(batch=64))
    data = planted()[:60]
    learner.learn(data)
    assert learner.steps == 1
    loss = learner.last_loss
    with torch.no_grad():
        learner.model.fuse.weight[0, 0] = float("nan")  # every user vector, and so the loss, becomes NaN
    before = snapshot(learner)
    state = [
        {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for s in learner.updater.optimizers[0].state.values()
    ]
    learner.learn(data)
    assert (learner.steps, learner.skipped_steps) == (1, 1)
    assert learner.last_loss == loss
    assert same(before, snapshot(learner))
    after = [{k: v for k, v in s.items() if torch.is_tensor(v)} for s in learner.updater.optimizers[0].state.values()]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(state, after, strict=True) for k in a)
    with torch.no_grad():
        learner.model.fuse.weight[0, 0] = 0.0
    learner.learn(data)
    assert (learner.steps, learner.skipped_steps) == (2, 1)


@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_growth_past_1024_items_keeps_earlier_rows(optimizer: str) -> None:
    learner = OnlineLearner(small(batch=128, optimizer=optimizer))
    learner.learn(chain("x", 900))  # first sightings: no step
    learner.learn(chain("x", 900))
    assert learner.model.item_emb.num_embeddings == 1024
    rows = learner.vocab.rows
    emb, bias = snapshot(learner)["item_emb.weight"][:rows], snapshot(learner)["item_bias.weight"][:rows]
    opt_state = {
        id(p): {
            k: v.clone() for k, v in learner.updater.optimizers[0].state[p].items() if torch.is_tensor(v) and v.dim()
        }
        for p in sparse_tables(learner.model)[:2]  # the item tables
        if p in learner.updater.optimizers[0].state
    }
    # Events without history are counted but teach nothing: the tables grow, no step moves a weight.
    learner.learn([([], Step(f"y{k}", "view", T0)) for k in range(600)])
    assert learner.vocab.rows == rows + 600
    assert learner.model.item_emb.num_embeddings == learner.model.item_bias.num_embeddings == 2048
    assert torch.equal(learner.model.item_emb.weight[:rows].detach(), emb)
    assert torch.equal(learner.model.item_bias.weight[:rows].detach(), bias)
    grown = learner.model.item_emb.weight[rows:].detach()
    assert grown.abs().max() < 1.0 and grown.std() > 0  # fresh rows: small random
    # The optimizers follow the new tables, with their state kept for the old rows.
    sparse = [learner.model.item_emb.weight, learner.model.item_bias.weight]
    assert sparse_tables(learner.model)[0] is sparse[0] and sparse_tables(learner.model)[1] is sparse[1]
    params = [p for opt in learner.updater.optimizers for g in opt.param_groups for p in g["params"]]
    assert all(any(p is q for q in params) for p in sparse)
    assert len(opt_state) == 2
    for old, new in zip(opt_state.values(), sparse, strict=True):
        for key, value in old.items():
            grown_state = learner.updater.optimizers[0].state[new][key]
            assert grown_state.shape[0] == 2048
            assert torch.equal(grown_state[: value.shape[0]], value)
    # And learning goes on over old and new items.
    steps = learner.steps
    learner.learn(chain("y", 300) + chain("x", 50))
    assert learner.steps > steps
    scorer = learner.snapshot()
    user, _ = scorer.encode([[Step("y5", "view", T0)]])
    assert scorer.scores(user).shape == (1, learner.vocab.rows)


def test_tables_start_at_capacity_when_it_is_small() -> None:
    learner = OnlineLearner(small(capacity=100))
    assert learner.model.item_emb.num_embeddings == 101
    learner.learn(chain("y", 60) * 3)  # items that recur: steps
    learner.learn(chain("x", 300))  # evicts as it goes; never grows past capacity
    assert learner.model.item_emb.num_embeddings == 101
    assert learner.vocab.evicted > 0 and learner.steps > 0


def test_sampled_softmax_is_used_above_the_threshold() -> None:
    learner = OnlineLearner(small(full_softmax_below=50, negatives=8))
    gen = torch.Generator().manual_seed(0)
    learner.learn(chain("x", 40))
    targets = torch.tensor([learner.vocab.index("x1"), learner.vocab.index("x2")])
    s = learner.settings
    candidates, labels, _ = sampling.candidates(learner.vocab, targets, s.negatives, s.full_softmax_below, gen)
    assert len(candidates) == len(learner.vocab)  # full softmax while the vocabulary is small
    learner.learn(chain("z", 200))
    candidates, labels, log_q = sampling.candidates(learner.vocab, targets, s.negatives, s.full_softmax_below, gen)
    assert len(candidates) <= 8 + 2 < len(learner.vocab)
    assert torch.equal(candidates[labels], targets)
    assert len(log_q) == len(candidates) and bool(torch.isfinite(log_q).all())


@pytest.mark.parametrize("scoring", ["dot", "cosine", "sigmoid"])
def test_sampled_softmax_learns_a_planted_transition(scoring: str) -> None:
    learner = OnlineLearner(small(batch=32, full_softmax_below=5, negatives=8, scoring=scoring, evidence=False))
    data = planted()
    for _ in range(10):
        learner.learn(data)
    assert len(learner.vocab) > learner.settings.full_softmax_below
    scorer = learner.snapshot()
    user, _ = scorer.encode([[Step("a", "view", T0)]])
    scores = scorer.scores(user)[0]
    scores[scorer.vocab.index("a")] = float("-inf")  # a itself comes 30% of the time: popular, not a transition
    assert scorer.vocab.item(int(scores.argmax())) == "b"


def test_a_sample_covering_the_vocabulary_is_the_full_softmax() -> None:
    data = planted()[:200]
    full = OnlineLearner(small(batch=256, replay=0.0))
    sampled = OnlineLearner(small(batch=256, replay=0.0, full_softmax_below=2, negatives=100_000))
    full.learn(data)
    sampled.learn(data)
    assert sampled.last_loss == pytest.approx(full.last_loss, rel=1e-4)


def test_same_seed_same_learner() -> None:
    data = planted()[:100]
    a, b = OnlineLearner(small(seed=3)), OnlineLearner(small(seed=3))
    a.learn(data)
    b.learn(data)
    assert same(snapshot(a), snapshot(b)) and a.last_loss == b.last_loss
    c = OnlineLearner(small(seed=4))
    assert not same(snapshot(OnlineLearner(small(seed=3))), snapshot(c))


def test_seen_items_leave_the_training_softmax_when_they_are_never_ranked() -> None:
    learner = OnlineLearner(small(exclude_seen=True))
    learner.learn(chain("c", 6))  # items c0..c6 get rows
    rows = {item: learner.vocab.index(item) for item in ("c0", "c1", "c2", "c3")}
    view = [Step(item, "view", T0) for item in ("c0", "c1", "c2")]
    examples: list[Example] = [(view, Step("c2", "view", T0)), (view[:1], Step("c3", "view", T0))]
    candidates = torch.tensor(sorted(rows.values()))
    labels = torch.searchsorted(candidates, torch.tensor([rows["c2"], rows["c3"]]))
    batch = encode_histories([h for h, _ in examples], learner.vocab, learner.settings.max_len)
    mask = seen_mask(examples, learner.vocab, batch, candidates, labels)
    masked = [{item for item, row in rows.items() if mask[b, int((candidates == row).nonzero())]} for b in (0, 1)]
    assert masked == [{"c0", "c1"}, {"c0"}]  # the history, but never the target, even a repeated one


@pytest.mark.parametrize("encoder", ["lstm", "gru", "transformer", "graph"])
def test_histories_encode_alike_alone_or_in_a_batch_of_longer_ones(encoder: str) -> None:
    learner = OnlineLearner(small(encoder=encoder))
    learner.learn(chain("c", 30))
    short = [Step("c1", "view", T0), Step("c2", "view", T0 + 60)]
    long = [Step(f"c{k}", "view", T0 + 60 * k) for k in range(25)]
    alone, _ = learner.snapshot().encode([short])
    batched, _ = learner.snapshot().encode([long, short])
    assert torch.allclose(alone[0], batched[1], atol=1e-5)


def test_repeats_encode_distinct_items_newest_first() -> None:
    from stream_rec.items.features import encode_repeats

    learner = OnlineLearner(small())
    learner.learn(chain("c", 4))
    history = [Step("c1", "view", T0), Step("c2", "add_to_cart", T0), Step("c1", "view", T0), Step("new", "view", T0)]
    r = encode_repeats([[], history], learner.vocab, max_len=50)
    rows = [learner.vocab.item(int(row)) for row in r.rows]
    assert rows == ["c1", "c2"] and r.batch.tolist() == [1, 1]  # "new" has no row; the empty history nothing
    assert r.positions.tolist() == [1, 2] and r.counts.tolist() == [2, 1]


def test_repeats_read_from_the_encoded_batch_equal_those_from_the_histories() -> None:
    from stream_rec.items.features import encode_histories, encode_repeats, repeats_of

    learner = OnlineLearner(small(max_len=8))
    learner.learn(chain("c", 12))
    rng = __import__("random").Random(0)
    kinds = ("view", "add_to_cart", "purchase")
    histories = [[Step(f"c{rng.randrange(16)}", rng.choice(kinds), T0 + t) for t in range(n)] for n in (0, 3, 8, 20, 1)]
    a = encode_repeats(histories, learner.vocab, max_len=8)
    b = repeats_of(encode_histories(histories, learner.vocab, max_len=8))
    for field in ("batch", "rows", "positions", "events", "counts"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert len(a.rows) > 5


def test_the_repeat_head_learns_which_own_item_users_come_back_to() -> None:
    """Users keep coming back to one favourite between one-off items: the favourite must outrank the newest."""
    examples: list[Example] = []
    n = 0
    for round_ in range(20):
        for u in range(20):
            history: list[Step] = []
            for k in range(6):
                item = f"fav{u}" if k % 2 == 0 else f"once-{round_}-{u}-{k}"
                step = Step(item, "view", T0 + n)
                n += 1
                if history:
                    examples.append((list(history), step))
                history.append(step)
    learner = OnlineLearner(small(batch=16, replay=0.0))
    probe = [Step("fav3", "view", T0), Step("once-0-3-1", "view", T0), Step("fav3", "view", T0),
             Step("once-0-3-3", "view", T0)]  # fmt: skip
    learner.learn(examples)
    scorer = learner.snapshot()
    user, _ = scorer.encode([probe])
    assert scorer.vocab.item(int(scorer.scores(user, [probe]).argmax())) == "fav3"
    off = OnlineLearner(small(batch=16, replay=0.0, repeat=False, evidence=False))
    off.learn(examples)
    scorer = off.snapshot()
    user, _ = scorer.encode([probe])
    assert scorer.vocab.item(int(scorer.scores(user, [probe]).argmax())) != "fav3"  # a next-new-item model misses it


def test_the_offered_gate_learns_whether_counting_points_to_the_next_item() -> None:
    """Where every next item follows the last as it did before, the offered mode's gate rises above the new mode's;
    where next items are random among thousands, counting's offers rarely hold and the gate stays lower."""

    def stream(follows: bool, seed: int) -> list[Example]:
        rng = random.Random(seed)
        examples: list[Example] = []
        for u in range(150):
            at = rng.randrange(40)
            history: list[Step] = []
            for k in range(8):
                item = f"i{(at + k) % 40}" if follows else f"i{rng.randrange(3000)}"
                step = Step(item, "view", T0 + 100 * u + k, user=f"u{u}")
                if history:
                    examples.append((list(history), step))
                history.append(step)
        return examples

    def offered_gate(follows: bool) -> float:
        learner = OnlineLearner(small(batch=32, repeat=False))
        data = stream(follows, seed=1)
        for at in range(0, len(data), 32):  # as a stream comes: the counts grow between the steps
            learner.learn(data[at : at + 32])
        scorer = learner.snapshot()
        histories = [h for h, _ in data[-400:]]
        offered = scorer.evidence(histories)
        user, _ = scorer.encode(histories)
        log_gates, _ = modes(scorer.model, user, NO_REPEATS, offered)
        has = torch.from_numpy(offered.batch).unique()
        return float(log_gates[has, MODES.index("offered")].detach().exp().mean())

    hold, miss = offered_gate(follows=True), offered_gate(follows=False)
    assert hold > 0.5 and hold > miss + 0.2, (hold, miss)


def test_one_step_of_the_gates_stays_small_whatever_the_user_vectors_length() -> None:
    """Adagrad's step moves each weight by up to the learning rate whatever the gradient: on the user vector as it
    is (lengths of 10-17 were measured), one step could swing a gate's logit by 10 and hand every user to one
    mode until the next step. The gates read the vector's direction."""
    from stream_rec.model.head import Head

    torch.manual_seed(0)
    head = Head(dim=64, max_len=50)
    opt = torch.optim.Adagrad(head.parameters(), lr=0.1, initial_accumulator_value=3e-4)
    user = 17.0 * torch.nn.functional.normalize(torch.randn(32, 64), dim=1)
    available, amounts = torch.ones(32, len(MODES), dtype=torch.bool), torch.zeros(32, 2)
    empty = torch.zeros(0, dtype=torch.long)

    def log_gates(u: torch.Tensor) -> torch.Tensor:
        return head(u, available, amounts, empty, empty, torch.ones(0))[0]

    assert torch.allclose(log_gates(user), log_gates(user / 17.0), atol=1e-6)  # the length does not count
    before = log_gates(user).detach()
    (-log_gates(user)[:, MODES.index("new")].mean()).backward()  # every user to the new mode
    opt.step()
    assert (log_gates(user).detach() - before).abs().max() < 1.5


def test_item_features_reach_the_model() -> None:
    """Two histories alike but for their items' category encode differently."""
    learner = OnlineLearner(small())
    learner.learn(chain("c", 3))
    plain = [Step("c1", "view", T0)]
    shoes = [Step("c1", "view", T0, features={"category": "shoes"})]
    a, _ = learner.snapshot().encode([plain])
    b, _ = learner.snapshot().encode([shoes])
    assert not torch.allclose(a, b)


def test_a_rise_of_the_loss_raises_the_learning_rate_for_a_while() -> None:
    learner = OnlineLearner(small(batch=16, replay=0.0, drift_steps=5, drift_boost=4.0))
    for _ in range(6):
        learner.learn(planted(seed=1))  # a stable stream: the loss falls
    assert learner.updater.drifts == 0
    rng = __import__("random").Random(2)
    shifted = [([Step(f"new{rng.randrange(100)}", "view", T0)], Step(f"new{rng.randrange(100)}", "view", T0))
               for _ in range(1200)]  # fmt: skip
    learner.learn(shifted)  # a new catalogue, no pattern: the loss jumps
    assert learner.updater.drifts >= 1
    base = learner.settings.lr
    learner.updater.boost_left = 2
    learner.learn(chain("q", 16))  # first sightings: no step
    learner.learn(chain("q", 16))  # one step of 16: boosted
    assert learner.updater.optimizers[0].param_groups[0]["lr"] == pytest.approx(4.0 * base)
    assert learner.updater.optimizers[1].param_groups[1]["lr"] == pytest.approx(4.0 * learner.settings.head_lr), (
        "the head"
    )
    learner.updater.boost_left = 0
    learner.learn(chain("q", 16))
    assert learner.updater.optimizers[0].param_groups[0]["lr"] == pytest.approx(base)


def test_the_evidence_offers_what_followed_the_last_item() -> None:
    learner = OnlineLearner(small(batch=16, evidence=True))
    learner.learn(planted(seed=3))
    assert len(learner.transitions), "the learner keeps the counts behind the evidence"
    scorer = learner.snapshot()
    user, _ = scorer.encode([[Step("a", "view", T0)]])
    top = scorer.scores(user, [[Step("a", "view", T0)]]).topk(2).indices[0].tolist()
    assert scorer.vocab.index("b") in top  # "a" is always followed by "b"


def offered(learner: OnlineLearner, history: list[Step], **kw: Any) -> dict[str, list[float]]:
    """The learner's evidence for one history: item -> its features."""
    found = evidence.gather([history], learner.vocab, learner.transitions, **kw)
    return {learner.vocab.item(r) or "": v for r, v in zip(found.rows.tolist(), found.values.tolist(), strict=True)}


def test_the_evidence_offers_the_popular_items_of_the_last_items_category() -> None:
    shoes, hats = {"category": "shoes"}, {"category": "hats", "price": 12.5}  # (a number makes no group)
    bought = ["s0"] * 6 + ["s1"] * 3 + ["s2", "h0"] * 8
    examples = [
        ([], Step(item, "view", T0 + k, features=shoes if item[0] == "s" else hats)) for k, item in enumerate(bought)
    ]
    history = [Step("h0", "view", T0), Step("s2", "view", T0 + 1, features=shoes)]
    for groups in (True, False):
        learner = OnlineLearner(small(evidence=True, groups=groups))
        learner.learn(examples)
        named = offered(learner, history, groups=groups)
        if groups:
            # Its category's items (its own too) by count, as log1p(count) and a 1: not the other category's.
            group = evidence.FEATURES.index("group")
            got = {item: [round(x, 5) for x in v[group : group + 2]] for item, v in named.items()}
            want = {"s0": math.log1p(6), "s1": math.log1p(3), "s2": math.log1p(8)}
            assert got == {item: [round(x, 5), 1.0] for item, x in want.items()}
        else:
            assert named == {} and not any(key.startswith(GROUP) for key, *_ in learner.transitions.triples())


def test_an_items_side_features_share_the_category_offers_between_them() -> None:
    features = {"category": "shoes", "brand": "acme", "colour": "red"}
    learner = OnlineLearner(small(evidence=True))
    for name, value in features.items():  # each feature's own items
        learner.learn(
            [([], Step(f"{name}{k}", "view", T0 + k, features={name: value})) for k in range(evidence.FOLLOWERS)]
        )
    history = [Step("new", "view", T0, features=features)]
    assert evidence.FOLLOWERS // 2 < len(offered(learner, history, groups=True)) <= evidence.FOLLOWERS


def test_each_source_offers_log1p_of_its_weight_and_a_one() -> None:
    """Hand-counted: a then b then c, by one user; a then c by another. From [a, b]: c followed b at gap 1 (next),
    a at gap 2 and gap 1 (next2: 1/2 + 1); b went with a at distance 1 and with c at distance 1 (together, b's
    weight 1), a with b at 1 and with c at 2 and 1 (together, a's weight 4/5)."""
    learner = OnlineLearner(small(evidence=True, groups=False))
    a, b, c = (Step(x, "view", T0 + n) for n, x in enumerate("abc"))
    learner.learn([([], a), ([a], b), ([a, b], c), ([], a), ([a], c)])
    got = offered(learner, [a, b], groups=False)
    q = evidence.QUERY
    want_c = [1.0, 1.0, 1.5, 1.0, 1.0 + (q - 1) / q * 1.5, 1.0, 0.0, 0.0]  # raw weights, then log1p below
    want_a = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]  # a went with b (distance 1): b's neighbour
    want_b = [0.0, 0.0, 1.0, 1.0, (q - 1) / q * 1.0, 1.0, 0.0, 0.0]  # b followed a (next2), went with a
    for item, raw in (("c", want_c), ("a", want_a), ("b", want_b)):
        expected = [math.log1p(v) if j % 2 == 0 else v for j, v in enumerate(raw)]
        assert got[item] == pytest.approx(expected, abs=1e-6), item


def test_a_groups_ranking_follows_its_counts_and_a_snapshot_keeps_its_own() -> None:
    from stream_rec.items.transitions import Transitions

    live, key = Transitions(), GROUP + "category=shoes"
    for item in "aab":
        live.add(key, item)
    assert live.ranked(key) == [("a", 2), ("b", 1)]
    frozen = live.snapshot()
    for item in "bbcccc":
        live.add(key, item)
    assert live.ranked(key) == [("c", 4), ("b", 3), ("a", 2)] and frozen.ranked(key) == [("a", 2), ("b", 1)]
    live.forget(["c"])
    assert live.ranked(key) == [("b", 3), ("a", 2)] and live.ranked(GROUP + "never") == []


def test_a_group_keeps_more_counts_than_an_item_and_keeps_them_through_a_checkpoint() -> None:
    from stream_rec.items.transitions import Transitions

    live, key = Transitions(limit=2, group_limit=5), GROUP + "category=shoes"
    for k in range(12):  # 12 items, item k seen k + 1 times: more than 4 x 2 but fewer than 4 x 5
        for _ in range(k + 1):
            live.add("a", f"i{k}")
            live.add(key, f"i{k}")
    assert len(live.get("a") or {}) <= 8 and len(live.ranked(key)) == 12
    assert live.ranked(key)[0] == ("i11", 12)  # never pruned, so no count was lost
    assert live.snapshot().group_limit == 5
    grown = Transitions.from_json(live.to_json(), {"a", *(f"i{k}" for k in range(30))}, 2, 5)  # a checkpoint
    for k in range(12, 30):
        grown.add(key, f"i{k}")
    ranked = grown.ranked(key)
    assert len(ranked) <= 20 and ranked[0] == ("i11", 12)  # pruned at 4 x 5 to the 5 most frequent, then grown


def test_an_items_first_sighting_teaches_nothing_its_next_one_does() -> None:
    learner = OnlineLearner(small(batch=16, replay=0.0))
    learner.learn([([Step("a", "view", T0)], Step("b", "view", T0 + 1))])
    assert learner.steps == 0  # b was unknown: no ranking could have held it
    learner.learn([([Step("a", "view", T0)], Step("b", "view", T0 + 1))])
    assert learner.steps == 1
    # Within one call too: the second "c" teaches, the first does not.
    learner.learn([([Step("a", "view", T0)], Step("c", "view", T0 + 1))] * 2)
    assert learner.steps == 2 and learner.examples == 4


def test_the_popularity_prior_counts_targets_and_learns_a_positive_weight() -> None:
    rng = __import__("random").Random(0)
    items = [f"p{k}" for k in range(40)]
    weights = [1.0 / (k + 1) for k in range(40)]  # Zipf-like: p0 is the most popular
    stream = [([Step(rng.choice(items), "view", T0)], Step(rng.choices(items, weights)[0], "view", T0 + 1))
              for _ in range(3000)]  # fmt: skip
    learner = OnlineLearner(small(batch=32, popularity=True))
    for start in range(0, len(stream), 100):  # counts are taken after each call, as the stream goes on
        learner.learn(stream[start : start + 100])
    counts = __import__("collections").Counter(e.item for _, e in stream)
    assert learner.model.item_count[learner.vocab.index("p0")] == counts["p0"]
    assert learner.model.popularity.item() > 0.0  # more seen, more likely: the prior learned its sign
    off = OnlineLearner(small(batch=32, popularity=False))
    for start in range(0, len(stream), 100):
        off.learn(stream[start : start + 100])
    assert off.model.popularity.item() == 0.0  # off: never trained, never used


def test_an_evicted_item_leaves_no_transition_counts_for_its_rows_next_item() -> None:
    learner = OnlineLearner(small(batch=16, capacity=40, evidence=True))
    stream = [([Step("a", "view", T0)], Step("b", "view", T0 + 1))] * 3
    for k, example in enumerate(chain("z", 60)):  # past capacity: stale rows (b's) are taken by z items
        stream += [example, ([Step("a", "view", T0 + k)], Step("a", "view", T0 + k))]  # a stays fresh
    for start in range(0, len(stream), 4):
        learner.learn(stream[start : start + 4])
    assert "b" not in learner.vocab and learner.vocab.evicted > 0
    occurred = {(h[-1].item, e.item) for h, e in stream}
    occurred |= {(nxt, prev) for prev, nxt in occurred}  # items that went together are counted both ways round
    counted = {(prev.removeprefix(TOGETHER), nxt) for prev, nxt, _ in learner.transitions.triples()}
    assert counted and counted <= occurred  # no count moved to a pair that never happened
    assert all(prev in learner.vocab and nxt in learner.vocab for prev, nxt in counted), "none of evicted items"


def test_an_item_seen_since_the_last_learn_call_can_be_recommended_back() -> None:
    from stream_rec.learning.recommender import SequenceRecommender

    rec = SequenceRecommender(small(batch=16))
    rec.learn_many(planted(seed=4))
    history = [Step("a", "view", T0), Step("just-seen", "view", T0 + 1)]  # not learned from yet
    ranked = [item for item, _ in rec.rank_many([history], k=10)[0]]
    assert "just-seen" in ranked  # the repeat mode offers the user's own newest item
    assert "just-seen" not in rec.learner.vocab, "the serving snapshot gave it a row of its own, not the learner"
    assert rec.scorer.vocab.counts[rec.scorer.vocab.index("just-seen")] == 0  # a row, not a sighting


def test_a_learner_that_has_learned_nothing_yet_recommends_the_users_own_items() -> None:
    from stream_rec.learning.recommender import SequenceRecommender

    rec = SequenceRecommender(small())
    history = [Step("a", "view", T0), Step("b", "view", T0 + 1), Step("a", "add_to_cart", T0 + 2)]
    ranked = [item for item, _ in rec.rank_many([history], k=10)[0]]
    assert sorted(ranked) == ["a", "b"], "a worker's first events get the users' own items, not an empty list"
    assert rec.rank_many([history], k=10, exclude_seen=True) == [[]], "with them excluded there is nothing yet"


def test_a_replayed_example_does_not_find_its_own_counts() -> None:
    learner = OnlineLearner(small(evidence=True))
    shoes = {"category": "shoes"}
    history = [Step("x", "view", T0, features=shoes), Step("a", "view", T0 + 1)]
    event = Step("b", "view", T0 + 2, features=shoes)
    learner.learn([([], history[0]), ([history[0]], history[1])])
    learner.learn([(history, event)])
    assert set(offered(learner, history, groups=True)) >= {"b"}
    left = offered(learner, history, groups=True, left_out=[event])
    assert "b" not in left, "every count b has came from this example: none is left"
    learner.learn([([Step("a", "view", T0)], Step("b", "view", T0 + 1))])  # one more of a -> b, elsewhere
    left = offered(learner, history, groups=True, left_out=[event])
    assert left["b"][:2] == pytest.approx([math.log1p(1.0), 1.0]), "the other example's count stays"


@pytest.mark.parametrize("window", [1, 2, 10])
def test_a_replayed_example_finds_none_of_its_counts_whatever_the_window(window: int) -> None:
    # A window shorter than the items the evidence reads together (evidence.QUERY): what was never counted is
    # not taken out either.
    learner = OnlineLearner(small(evidence=True, evidence_window=window))
    history = [Step(x, "view", T0 + k) for k, x in enumerate("abcdefg")]
    event = Step("z", "view", T0 + 10)
    learner.learn([(history[:k], step) for k, step in enumerate(history)])
    learner.learn([(history, event)])
    assert "z" in offered(learner, history, groups=False, window=window)
    assert "z" not in offered(learner, history, groups=False, left_out=[event], window=window)


def test_only_new_examples_teach_the_head_and_replayed_ones_teach_the_sequence_model() -> None:
    learner = OnlineLearner(small(batch=64, evidence=True))
    examples = planted(seed=5)[:200]
    learner.learn(examples)
    usable = [(h, e) for h, e in examples if h][:64]
    head = {n: p.detach().clone() for n, p in learner.model.head.named_parameters()}
    encoder = {n: p.detach().clone() for n, p in learner.model.encoder.named_parameters()}
    learner._step(usable, n_fresh=0)  # all replayed
    assert all(torch.equal(p, head[n]) for n, p in learner.model.head.named_parameters())
    assert not all(torch.equal(p, encoder[n]) for n, p in learner.model.encoder.named_parameters())
    learner._step(usable, n_fresh=len(usable))
    assert not all(torch.equal(p, head[n]) for n, p in learner.model.head.named_parameters())
    assert learner.model.head.log_explore_scale.item() != 0.0, "the scale learns"
    assert not torch.equal(learner.model.head.evidence, head["evidence"]), "the evidence weights learn"


def test_a_new_item_inherits_what_its_category_learned() -> None:
    """After "a", users go on to ever new shoes: a shoe never learned from outranks a hat never learned from."""
    rng = __import__("random").Random(0)
    examples: list[Example] = []
    for k in range(600):
        shoe = Step(f"shoe{rng.randrange(150)}", "view", T0 + k, features={"category": "shoes"})
        hat = Step(f"hat{rng.randrange(150)}", "view", T0 + k, features={"category": "hats"})
        examples.append(([Step("a", "view", T0 + k)], shoe))
        examples.append(([Step("b", "view", T0 + k)], hat if k % 3 else shoe))
    learner = OnlineLearner(small(batch=32, evidence=False, popularity=False))
    for start in range(0, len(examples), 100):
        learner.learn(examples[start : start + 100])
    fresh = [([Step("z", "view", T0)], Step(item, "view", T0, features={"category": c}))
             for item, c in (("new-shoe", "shoes"), ("new-hat", "hats"))]  # fmt: skip
    learner._observe(fresh)  # known, never a target
    history = [Step("a", "view", T0)]
    scorer = learner.snapshot()
    user, _ = scorer.encode([history])
    scores = scorer.scores(user)[0]
    assert scores[scorer.vocab.index("new-shoe")] > scores[scorer.vocab.index("new-hat")] + 0.5
    assert bool(learner.model.item_tokens[learner.vocab.index("new-shoe")].any())


def test_a_learner_with_replay_makes_full_garbage_collections_rarer_and_never_more_frequent() -> None:
    import gc

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        OnlineLearner(ModelSettings(dim=8, replay_size=0))
        assert gc.get_threshold() == (700, 10, 10)  # nothing to spare: left alone
        OnlineLearner(ModelSettings(dim=8))
        assert gc.get_threshold() == (700, 10, 100)
        gc.set_threshold(500, 20, 1000)
        OnlineLearner(ModelSettings(dim=8))
        assert gc.get_threshold() == (500, 20, 1000)
    finally:
        gc.set_threshold(*saved)


def test_a_learner_with_replay_leaves_survivors_out_of_full_collections_but_reclaims_dead_cycles() -> None:
    import gc
    import weakref

    from stream_rec.learning import replay as replay_module

    OnlineLearner(ModelSettings(dim=8))
    frozen = []
    for _ in range(replay_module._WALK_ALL_EVERY):
        gc.collect()
        frozen.append(gc.get_freeze_count())
    assert max(frozen) > 1000, "survivors of a full collection are left out of the next ones"
    assert 0 in frozen, "one full collection in so many walks everything"

    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the cyclic collector can reclaim it
    dead = weakref.ref(a)
    gc.freeze()
    del a, b
    for _ in range(replay_module._WALK_ALL_EVERY + 1):
        gc.collect()
    assert dead() is None, "a cycle that died frozen is reclaimed"


def test_the_evidence_window_counts_what_followed_and_what_went_together_both_ways_round() -> None:
    history = [Step(x, "view", T0 + n) for n, x in enumerate("abcb")]
    known = [([], step) for step in history]  # the items get rows first (no history: nothing counted)
    wide = OnlineLearner(small(evidence_window=2))
    wide.learn(known)
    wide.learn([(history, Step("d", "view", T0 + 9))])
    assert sorted(wide.transitions.triples()) == sorted([
        ("b", "d", 1.0), ("c", "d", 0.5),  # d followed b (gap 1) and c (gap 2)
        (together("b"), "d", 1.0), (together("d"), "b", 1.0), (together("c"), "d", 0.5), (together("d"), "c", 0.5),
    ])  # fmt: skip
    first_order = OnlineLearner(small(evidence_window=1))
    first_order.learn(known)
    first_order.learn([(history, Step("d", "view", T0 + 9))])
    assert sorted(first_order.transitions.triples()) == sorted(
        [("b", "d", 1.0), (together("b"), "d", 1.0), (together("d"), "b", 1.0)]
    )


def test_context_tokens_are_cached_by_value_and_type() -> None:
    """True, 1 and 1.0 are equal keys to a cache but different text: each keeps its own token; a value that cannot be
    a key (a list) is hashed all the same."""
    from stream_rec.items.features import context_tokens

    steps = [Step("i", "view", T0, context={"x": value}) for value in (True, 1, 1.0, 1.25, [1, 2])]
    first = [context_tokens(step) for step in steps]
    assert [context_tokens(step) for step in steps] == first
    assert len({tokens[-1] for tokens in first}) == 5
    assert first[0][:3] == context_tokens(Step("i", "view", T0))
