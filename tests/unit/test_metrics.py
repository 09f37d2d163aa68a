"""HR/NDCG/MRR@k and their accumulator, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from stream_rec.metrics import MetricAccumulator, history_bucket, hit, mrr, ndcg

RANKING = ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("target", "k", "want_hit", "want_ndcg", "want_mrr"),
    [
        ("a", 10, 1.0, 1.0, 1.0),
        ("b", 10, 1.0, 1 / math.log2(3), 0.5),
        ("d", 10, 1.0, 1 / math.log2(5), 0.25),
        ("d", 3, 0.0, 0.0, 0.0),  # beyond the cut-off
        ("c", 3, 1.0, 0.5, 1 / 3),  # 1/log2(4) = 0.5
        ("z", 10, 0.0, 0.0, 0.0),  # absent
    ],
)
def test_single_metrics(target: str, k: int, want_hit: float, want_ndcg: float, want_mrr: float) -> None:
    assert hit(RANKING, target, k) == want_hit
    assert ndcg(RANKING, target, k) == pytest.approx(want_ndcg)
    assert mrr(RANKING, target, k) == pytest.approx(want_mrr)


def test_empty_ranking_is_a_miss() -> None:
    assert (hit([], "a", 10), ndcg([], "a", 10), mrr([], "a", 10)) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("n", "bucket"), [(1, "1-4"), (4, "1-4"), (5, "5-19"), (19, "5-19"), (20, "20+"), (500, "20+")]
)
def test_history_buckets(n: int, bucket: str) -> None:
    assert history_bucket(n) == bucket


def test_accumulator_overall_per_event_and_per_history() -> None:
    acc = MetricAccumulator(ks=(1, 3))
    acc.add(RANKING, "a", event="view", n_history=1)  # rank 0
    acc.add(RANKING, "c", event="view", n_history=7)  # rank 2
    acc.add(RANKING, "d", event="purchase", n_history=25)  # rank 3: a miss at both cut-offs
    acc.add(RANKING, None, event="purchase", n_history=25)  # a first-seen item: a miss
    s = acc.summary()
    assert s["n"] == acc.n == 4
    assert s["HR@1"] == pytest.approx(1 / 4)
    assert s["HR@3"] == pytest.approx(2 / 4)
    assert s["NDCG@3"] == pytest.approx((1.0 + 0.5) / 4)
    assert s["MRR@3"] == pytest.approx((1.0 + 1 / 3) / 4)
    assert s["by_event"]["view"] == pytest.approx(
        {"HR@1": 0.5, "NDCG@1": 0.5, "MRR@1": 0.5, "HR@3": 1.0, "NDCG@3": 0.75, "MRR@3": (1 + 1 / 3) / 2, "n": 2}
    )
    assert s["by_event"]["purchase"]["HR@3"] == 0.0
    assert s["by_event"]["purchase"]["n"] == 2
    assert {b: v["n"] for b, v in s["by_history"].items()} == {"1-4": 1, "5-19": 1, "20+": 2}
    assert s["by_history"]["5-19"]["HR@1"] == 0.0
    assert s["by_history"]["5-19"]["HR@3"] == 1.0


def test_empty_accumulator_summarises_to_zeros() -> None:
    s = MetricAccumulator().summary()
    assert (s["HR@10"], s["NDCG@10"], s["MRR@10"], s["n"], s["by_event"]) == (0.0, 0.0, 0.0, 0, {})


@pytest.mark.parametrize("ks", [(), (0,), (10, -1)])
def test_bad_cutoffs_are_refused(ks: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="ks"):
        MetricAccumulator(ks)
