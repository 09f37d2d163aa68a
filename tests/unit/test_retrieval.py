"""Approximate retrieval (retrieval.py, ranking.top_k_among): it ranks as exact ranking does over what it is given,
finds the exact top items of a planted catalogue, and a snapshot's index is attached whole, before it is served."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_rec.errors import StreamRecError
from stream_rec.learning.learner import OnlineLearner
from stream_rec.learning.local import Learning
from stream_rec.sequences import Step
from stream_rec.serving.ranking import top_k, top_k_among
from stream_rec.serving.retrieval import Indexer, build_index
from stream_rec.serving.scoring import Scorer
from stream_rec.settings import ModelSettings, Retrieval, Settings
from tests.unit.test_ranking import check

NONE = np.zeros(0, dtype=np.int64)


def _case(rows: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    b, d = 6, 16
    bias = rng.normal(size=rows).astype(np.float32)
    bias[rng.choice(rows, rows // 5, replace=False)] = -np.inf
    n = 5
    return {
        "user": rng.normal(size=(b, d)).astype(np.float32),
        "weight": rng.normal(size=(rows, d)).astype(np.float32),
        "bias": bias,
        "log_explore": np.log(rng.uniform(0.1, 1.0, size=b)).astype(np.float32),
        "extra": (
            np.repeat(np.arange(b), n),
            np.concatenate([rng.choice(rows, n, replace=False) for _ in range(b)]),
            (rng.normal(size=b * n) * 3).astype(np.float32),
            np.where(np.arange(b * n) % 2, rng.normal(size=b * n) - 1, -np.inf).astype(np.float32),
        ),
        "exclude": (np.arange(b), rng.integers(0, rows, size=b)),
    }


@pytest.mark.parametrize("split", [0, 300, 1000])
@pytest.mark.parametrize("normalised", [True, False])
def test_top_k_among_every_row_is_exact(split: int, normalised: bool) -> None:
    """Every row given (the first ``split`` as each user's candidates, the rest shared): the exact ranking, and
    the normaliser exact too (nothing is left to estimate)."""
    rows = 1000
    case = _case(rows, seed=split + normalised)
    user, weight, bias = case.pop("user"), case.pop("weight"), case.pop("bias")
    if not normalised:
        del case["log_explore"]
    b = len(user)
    candidates = np.broadcast_to(np.arange(split), (b, split)).copy()
    candidates[:, ::7] = -1  # no candidate there: an index's short answer
    shared = np.concatenate([np.arange(split, rows), np.arange(0, split, 7)])
    got_rows, got = top_k_among(user, weight, bias, 10, candidates, shared, **case)
    check(user, weight, bias, 10, b, rows, got_rows, got, **case)


def test_the_estimated_normaliser_is_close() -> None:
    """Only each user's 200 best rows ranked, the normaliser estimated from a sample of 300: the same top-10,
    scores within a few hundredths."""
    rows = 5000
    case = _case(rows, seed=9)
    user, weight, bias = case.pop("user"), case.pop("weight"), case.pop("bias")
    want_rows, want = top_k(user, weight, bias, 10, **case)
    best = np.argsort(-(user @ weight.T + bias), axis=1)[:, :200]
    sample = np.random.default_rng(0).choice(rows, 300, replace=False)
    got_rows, got = top_k_among(user, weight, bias, 10, best, NONE, sample=sample, population=rows, **case)
    assert (got_rows == want_rows).mean() >= 0.9
    np.testing.assert_allclose(got, want, atol=0.1)


def test_a_planted_catalogue_ranks_as_exactly() -> None:
    """20,000 items around 200 planted centres, users near some of them: the index's candidates, rescored, hold
    the exact top-10 (recall@10 of at least 0.95), and every user's best item."""
    rng = np.random.default_rng(5)
    rows, d, centres = 20_000, 32, 200
    centre = rng.normal(size=(centres, d)).astype(np.float32)
    weight = (centre[rng.integers(0, centres, rows)] + 0.3 * rng.normal(size=(rows, d))).astype(np.float32)
    bias = (0.5 * rng.normal(size=rows)).astype(np.float32)
    bias[0] = -np.inf  # the padding row
    user = (2 * centre[rng.integers(0, centres, 64)] + 0.5 * rng.normal(size=(64, d))).astype(np.float32)
    settings = Retrieval(mode="index", probe=16, candidates=100)
    index = build_index(weight, bias, clock=0, version="planted", settings=settings)
    assert index.population == rows - 1
    want, _ = top_k(user, weight, bias, 10)
    candidates = index.search(user, settings.candidates, settings.probe)
    assert (candidates != 0).all(), "the padding row is never indexed"
    got, _ = top_k_among(user, weight, bias, 10, candidates, NONE)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got.tolist(), want.tolist(), strict=True)])
    assert recall >= 0.95
    assert (got[:, 0] == want[:, 0]).all()


def _learned(items: int = 400, seed: int = 0) -> OnlineLearner:
    """A learner that learned sessions over ``items`` items walking their order (transitions to learn)."""
    rng = np.random.default_rng(seed)
    learner = OnlineLearner(ModelSettings(dim=16, batch=32, negatives=64, seed=seed))
    examples: list[tuple[list[Step], Step]] = []
    for u in range(120):
        history: list[Step] = []
        at = int(rng.integers(items))
        for t in range(8):
            step = Step(f"i{(at + t) % items}", "view", 1.6e9 + 100 * u + t, user=f"u{u}")
            examples.append((list(history), step))
            history.append(step)
    learner.learn(examples)
    return learner


def test_a_learned_snapshot_ranks_from_its_index_as_exactly() -> None:
    """A learned model's snapshot given an index: its lists match the exact ones; an item first seen after the
    build is scored beside the index's candidates (it is among the rows the index does not know)."""
    learner = _learned()
    scorer = learner.snapshot()
    histories = [[Step(f"i{k}", "view", 1.7e9), Step(f"i{k + 1}", "view", 1.7e9 + 5)] for k in range(0, 300, 10)]
    exact = [r.ranking for r in scorer.recommend(histories, 10, n_explain=0)]
    indexer = Indexer(Retrieval(mode="index", candidates=50), background=False)
    indexer.build_now(scorer)
    assert scorer.ranks_from_index
    approx = [r.ranking for r in scorer.recommend(histories, 10, n_explain=0)]
    same = np.mean([len({i for i, _ in a} & {i for i, _ in e}) / 10 for a, e in zip(approx, exact, strict=True)])
    assert same >= 0.95
    # The best item too, but for near ties (the normaliser's estimate moves new items against own ones a little).
    assert np.mean([a[0][0] == e[0][0] for a, e in zip(approx, exact, strict=True)]) >= 0.9
    learner.learn([([], Step("newcomer", "view", 1.8e9, user="u-new"))])
    later = indexer.attach(learner.snapshot())
    assert later.index is indexer.newest, "a snapshot published after the build ranks from it"
    row = later.vocab.index("newcomer")
    assert row and row in later._unknown_rows().tolist()  # type: ignore[union-attr]
    ranked = later.recommend([[Step("newcomer", "view", 1.8e9 + 1)]], 10, n_explain=0)[0].ranking
    assert "newcomer" in {item for item, _ in ranked}, "the user's own newest item, known to no index, is ranked"


def test_exact_below_the_size_and_when_told() -> None:
    scorer = _learned().snapshot()
    assert not Indexer(Retrieval(mode="auto", index_from=10_000), background=False).attach(scorer).ranks_from_index
    assert not Indexer(Retrieval(mode="exact"), background=False).attach(scorer).ranks_from_index
    assert Indexer(Retrieval(mode="auto", index_from=100), background=False).attach(scorer).ranks_from_index


def test_an_index_reaches_the_serving_snapshot_whole() -> None:
    """Builds run beside serving. The snapshot serving when a build ends gets it then (a model that learns
    nothing publishes no new snapshot to carry it), a superseded one keeps what it had, and while builds end and
    swap in, every ranking of the serving snapshot reads one index whole (here all built from the same table:
    the same lists every time)."""
    learner = _learned(items=2000)
    indexer = Indexer(Retrieval(mode="index", rebuild_every=0.01, candidates=50))
    deadline = time.monotonic() + 60

    def built(n: int) -> None:
        while indexer.builds < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert indexer.builds >= n and indexer.newest is not None

    first = indexer.attach(learner.snapshot())  # starts the first build
    built(1)
    assert first.index is indexer.newest, "given to the serving snapshot as the build ended"
    kept = first.index
    time.sleep(0.02)
    second = indexer.attach(learner.snapshot())  # with the first index; a second build starts
    built(2)
    assert second.index is indexer.newest is not kept and first.index is kept, "the superseded one keeps its own"
    histories = [[Step(f"i{k}", "view", 1.7e9)] for k in range(0, 2000, 40)]
    want = [r.ranking for r in second.recommend(histories, 10, n_explain=0)]
    seen: list[bool] = []
    swapped: set[int] = set()

    def rank() -> None:  # while builds of the serving snapshot end and swap in
        while (len(swapped) < 3 or len(seen) < 5) and time.monotonic() < deadline:
            got = [r.ranking for r in second.recommend(histories, 10, n_explain=0)]
            seen.append(got == want)
            swapped.add(id(second.index))

    ranking = threading.Thread(target=rank)
    ranking.start()
    while ranking.is_alive():
        indexer.attach(second)  # the same snapshot again: a build of it starts where none runs
        time.sleep(0.005)
    ranking.join()
    assert len(swapped) >= 3, "rankings ran across several swaps"
    assert len(seen) >= 5 and all(seen)


def test_a_catalogue_file_gives_its_items_rows_before_their_first_event(tmp_path: Path) -> None:
    catalogue = tmp_path / "items.txt"
    catalogue.write_text("".join(f"sku-{k}\n" for k in range(3000)) + "\n  sku-7  \n")  # blank lines, spaces
    settings = Settings(home=tmp_path, checkpoint_every=0, catalogue=catalogue)
    published: list[Scorer] = []
    Learning(settings, published.append, [])
    vocab = published[-1].vocab
    assert len(vocab) == 3000 and "sku-0" in vocab and "sku-2999" in vocab
    assert float(vocab.counts[vocab.index("sku-7")]) == 0.0, "no sighting counted"
    ranked = published[-1].recommend([[Step("sku-5", "view", 1.7e9)]], 10, n_explain=0)[0].ranking
    assert len(ranked) == 10 and all(item.startswith("sku-") for item, _ in ranked)


def test_a_catalogue_larger_than_the_capacity_is_one_line(tmp_path: Path) -> None:
    catalogue = tmp_path / "items.txt"
    catalogue.write_text("".join(f"sku-{k}\n" for k in range(40)))
    settings = Settings(home=tmp_path, checkpoint_every=0, catalogue=catalogue, model=ModelSettings(capacity=32))
    with pytest.raises(StreamRecError, match=r"holds 40 items, more than the model's capacity of 32; raise "
                                             r"STREAM_REC_MODEL__CAPACITY"):  # fmt: skip
        Learning(settings, [].append, [])
    with pytest.raises(StreamRecError, match=r"cannot read the catalogue"):
        Learning(Settings(home=tmp_path, checkpoint_every=0, catalogue=tmp_path / "missing.txt"), [].append, [])
