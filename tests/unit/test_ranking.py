"""Blocked exact top-k (ranking.py) against the plain computation, and the learner's top-k against its scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from stream_rec.learning.learner import OnlineLearner
from stream_rec.sequences import Step
from stream_rec.serving.ranking import top_k
from stream_rec.settings import ModelSettings
from tests.unit.streams import planted


def plain(user: np.ndarray, weight: np.ndarray, bias: np.ndarray, k: int, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """The whole score matrix, then a sort: what top_k must agree with."""
    s = (user @ weight.T + bias).astype(np.float64)
    if kw.get("extra") is not None:
        batch, rows, add, share = kw["extra"]
        s[batch, rows] += add
    if kw.get("exclude") is not None:  # never ranked: no part of the normaliser either
        s[kw["exclude"]] = -np.inf
    if kw.get("log_explore") is not None:
        s = kw["log_explore"][:, None] + s - torch.logsumexp(torch.from_numpy(s), dim=1, keepdim=True).numpy()
    if kw.get("extra") is not None:
        s[batch, rows] = np.logaddexp(s[batch, rows], share)
    if kw.get("exclude") is not None:
        s[kw["exclude"]] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


@pytest.mark.parametrize("rows", [3, 37, 1000, 9000])
@pytest.mark.parametrize(
    "variant", ["plain", "normalised", "boosted", "boosted+excluded", "excluded", "added", "added+normalised"]
)
def test_top_k_is_exact(rows: int, variant: str) -> None:
    rng = np.random.default_rng(rows)
    b, d, k = 6, 16, 10
    user = rng.normal(size=(b, d)).astype(np.float32)
    weight = rng.normal(size=(rows, d)).astype(np.float32)
    bias = rng.normal(size=rows).astype(np.float32)
    bias[rng.choice(rows, rows // 5, replace=False)] = -np.inf  # rows holding no item
    n = min(rows, 5)
    kw: dict[str, Any] = {}
    if variant not in ("plain", "excluded", "added"):
        kw["log_explore"] = np.log(rng.uniform(0.1, 1.0, size=b)).astype(np.float32)
    if variant.startswith(("boosted", "added")):
        batch = np.repeat(np.arange(b), n)
        special = np.concatenate([rng.choice(rows, n, replace=False) for _ in range(b)])
        add = rng.normal(size=len(batch)) * 3 if variant.startswith("added") else np.zeros(len(batch))
        # Added terms only; or shares too, some none (-inf), as an offered item that is not the user's own has.
        share = rng.normal(size=len(batch)) - 1.0
        if variant.startswith("added"):
            share[::2] = -np.inf
        kw["extra"] = (batch, special, add.astype(np.float32), share.astype(np.float32))
    if variant.endswith("excluded"):
        kw["exclude"] = (np.arange(b), rng.integers(0, rows, size=b))
    got_rows, got = top_k(user, weight, bias, k, block=64, **kw)  # small blocks: many of them
    check(user, weight, bias, k, b, rows, got_rows, got, **kw)


def check(
    user: Any, weight: Any, bias: Any, k: int, b: int, rows: int, got_rows: Any, got: Any, atol: float = 1e-4, **kw: Any
) -> None:
    want_rows, want = plain(user, weight, bias, k, **kw)
    kk = min(k, rows)
    assert got.shape == (b, kk)
    np.testing.assert_allclose(got, want, atol=atol)
    finite = np.isfinite(want)
    assert (got_rows[finite] == want_rows[finite]).all()


@pytest.mark.parametrize("rows", [37, 1000, 9000])
@pytest.mark.parametrize("variant", ["excluded", "boosted", "both"])
def test_top_k_is_exact_where_the_special_items_are_each_rows_best(rows: int, variant: str) -> None:
    """Each row's best items excluded or boosted, more of them than k: the slices holding them are the slices
    with the highest plain maxima, and the k best of the other items must still be found."""
    rng = np.random.default_rng(rows + 1)
    b, d, k = 6, 16, 10
    user = rng.normal(size=(b, d)).astype(np.float32)
    weight = rng.normal(size=(rows, d)).astype(np.float32)
    bias = rng.normal(size=rows).astype(np.float32)
    best = np.argsort(-(user @ weight.T + bias), axis=1)[:, : min(rows - k, 3 * k)]  # [B, n]
    batch = np.repeat(np.arange(b), best.shape[1])
    kw: dict[str, Any] = {"log_explore": np.log(rng.uniform(0.1, 1.0, size=b)).astype(np.float32)}
    if variant in ("excluded", "both"):
        kw["exclude"] = (batch, best.ravel())
    if variant in ("boosted", "both"):
        half = best[:, : best.shape[1] // 2]
        kw["extra"] = (
            np.repeat(np.arange(b), half.shape[1]),
            half.ravel(),
            np.zeros(half.size),
            np.full(half.size, -30.0),
        )
    got_rows, got = top_k(user, weight, bias, k, block=64, **kw)
    check(user, weight, bias, k, b, rows, got_rows, got, **kw)


@pytest.mark.parametrize("rows", [37, 9000])
def test_the_normaliser_is_exact_for_extreme_scores(rows: int) -> None:
    """Rows whose best score is far from 0 (huge, or all very negative) leave the fast unshifted sum of exp(s)
    for the careful log-sum-exp; in the last two the best item is boosted, so only its own score shows how big
    the row gets."""
    rng = np.random.default_rng(rows + 2)
    b, d, k = 6, 16, 10
    user = rng.normal(size=(b, d)).astype(np.float32)
    user[1] *= 40  # best scores in the hundreds: exp overflows float32
    user[4:] *= 20
    weight = rng.normal(size=(rows, d)).astype(np.float32)
    bias = rng.normal(size=rows).astype(np.float32)
    bias[: rows // 2] -= 300  # row 2 below: every score under -250, exp underflows
    user[2] = 0.01
    scores = user @ weight.T + bias
    best = scores.argmax(axis=1)
    kw: dict[str, Any] = {
        "log_explore": np.log(rng.uniform(0.1, 1.0, size=b)).astype(np.float32),
        "extra": (np.array([4, 5]), best[4:], np.zeros(2), np.array([-2.0, -3.0])),
    }
    got_rows, got = top_k(user, weight, bias, k, block=64, **kw)
    assert np.isfinite(got).all()
    check(user, weight, bias, k, b, rows, got_rows, got, atol=1e-3, **kw)  # scores in the hundreds: float32


@pytest.mark.parametrize("repeat", [True, False])
def test_the_learners_top_k_ranks_as_its_scores_do(repeat: bool) -> None:
    learner = OnlineLearner(ModelSettings(dim=16, batch=16, evidence=True, repeat=repeat))
    learner.learn(planted(seed=3))
    assert len(learner.transitions) > 0, "the evidence has counts to offer"
    histories = [[Step("a", "view", 1.6e9)], [Step("b", "purchase", 1.6e9), Step("c", "view", 1.6e9 + 5)]]
    scorer = learner.snapshot()
    user, _ = scorer.encode(histories)
    scores = scorer.scores(user, histories)
    want = scores.topk(5, dim=1)
    rows, values = scorer.top_k(user, histories, 5)
    assert rows.tolist() == want.indices.tolist()
    np.testing.assert_allclose(values, want.values.numpy(), atol=1e-5)
    rows, _ = scorer.top_k(user, histories, 5, exclude_seen=True)
    seen = [{learner.vocab.index(s.item) for s in h} for h in histories]
    assert all(not (set(r) & s) for r, s in zip(rows.tolist(), seen, strict=True))
    scores[0, list(seen[0])] = float("-inf")
    scores[1, list(seen[1])] = float("-inf")
    assert rows.tolist() == scores.topk(5, dim=1).indices.tolist()
