"""Approximate retrieval measured against exact ranking (BENCHMARKS.md "Large catalogues").

    python scripts/retrieval.py quality ../shared/data/taobao-userbehavior/UserBehavior_timeslice_20171126.csv
    python scripts/retrieval.py cost --items 100000
    python scripts/retrieval.py cost --items 1000000

``quality`` replays a dataset through the model as a worker at 200 events/s would see it: a serving snapshot every
``--refresh`` events (one second's), an index built from the newest snapshot every ``--rebuild`` events (a minute's)
and forced on from the first event; every event is ranked before it is learned by the same snapshot twice, from
every item (exact) and from the index's candidates, and the script prints HR@10 of each, their relative
difference, and recall@10 (the share of the exact top-10 the index's top-10 holds).

``cost`` gives a model a synthetic catalogue of ``--items`` items (loaded directly, as ``STREAM_REC_CATALOGUE`` does),
teaches it ``--events`` events of the synthetic stream over them, and times ranking (encoding plus top-10, per
event, in batches of the sizes a worker serves) exactly and from an index; with the index's build time, its
memory, the process's peak memory and recall@10 against exact on the next events' histories.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict, deque

import numpy as np
import torch
from rich.console import Console

from stream_rec import datasets
from stream_rec.datasets import synthetic
from stream_rec.learning.learner import OnlineLearner
from stream_rec.sequences import Step, step_of
from stream_rec.serving import ranking
from stream_rec.serving.retrieval import Indexer
from stream_rec.serving.scoring import Scorer
from stream_rec.settings import Settings

console = Console()


def ranked(scorer: Scorer, histories: list[list[Step]], k: int, exact: bool) -> list[list[str]]:
    """The top-``k`` item ids for each history, from every item or from ``scorer``'s index."""
    index, retrieval = scorer.index, scorer.retrieval
    if exact:
        scorer.index = None
    try:
        return [[item for item, _ in r.ranking] for r in scorer.recommend(histories, k, n_explain=0)]
    finally:
        scorer.index, scorer.retrieval = index, retrieval


def recall(got: list[list[str]], want: list[list[str]]) -> float:
    pairs = [(set(g), set(w)) for g, w in zip(got, want, strict=True) if w]
    return float(np.mean([len(g & w) / len(w) for g, w in pairs])) if pairs else 1.0


def parts(scorer: Scorer, histories: list[list[Step]], k: int = 10) -> dict[str, float]:
    """Seconds each part of ranking ``histories`` takes, as Scorer.top_k does it: encoding them, the evidence and
    mixture terms, and the top-k itself, exactly and from the index."""
    assert scorer.index is not None and scorer.retrieval is not None
    with scorer.lock, torch.no_grad():
        t0 = time.perf_counter()
        batch, user, _ = scorer.encode_batch(histories, reserve=True)
        t1 = time.perf_counter()
        u, weight, bias = scorer._score_tables(user)
        log_new, extra = scorer._extra(user, histories, batch)
        t2 = time.perf_counter()
        ranking.top_k(u, weight, bias, k, log_explore=log_new, extra=extra)
        t3 = time.perf_counter()
        unknown = scorer._unknown_rows()
        assert unknown is not None
        candidates = scorer.index.search(u, max(k, scorer.retrieval.candidates), scorer.retrieval.probe)
        candidates[np.isin(candidates, unknown)] = -1
        ranking.top_k_among(u, weight, bias, k, candidates, unknown, log_explore=log_new, extra=extra,
                            sample=scorer.index.sample, population=scorer.index.population)  # fmt: skip
        t4 = time.perf_counter()
    return {"encode": t1 - t0, "evidence": t2 - t1, "exact": t3 - t2, "index": t4 - t3}


def quality(args: argparse.Namespace) -> None:
    settings = Settings.load()
    events = datasets.load(args.dataset, limit=args.limit)
    retrieval = settings.retrieval.model_copy(update={"mode": "index"})
    learner = OnlineLearner(settings.model)
    indexer = Indexer(retrieval, background=False)
    histories: dict[str, deque[Step]] = defaultdict(lambda: deque(maxlen=settings.seq_len))
    hits = {"exact": 0, "index": 0}
    recalls, times, scored = [], {"exact": 0.0, "index": 0.0}, 0
    scorer, built_at, refreshed_at = None, -args.rebuild, -args.refresh
    started = time.perf_counter()
    for at in range(0, len(events), args.batch):
        batch = events[at : at + args.batch]
        if scorer is None or at - refreshed_at >= args.refresh:
            scorer, refreshed_at = learner.snapshot().prepare(), at
            if at - built_at >= args.rebuild and len(scorer.vocab) > 0:
                indexer.build_now(scorer)
                built_at = at
            elif indexer.newest is not None:
                scorer.use_index(indexer.newest, retrieval)
        before = [list(histories[e.user_id]) for e in batch]
        known = [i for i, h in enumerate(before) if h]
        if known and scorer.index is not None:
            asked = [before[i] for i in known]
            lists = {}
            for how in ("exact", "index"):
                t0 = time.perf_counter()
                lists[how] = ranked(scorer, asked, args.k, exact=how == "exact")
                times[how] += time.perf_counter() - t0
            for j, i in enumerate(known):
                for how in ("exact", "index"):
                    hits[how] += batch[i].item_id in lists[how][j]
            recalls.append(recall(lists["index"], lists["exact"]) * len(known))
            scored += len(known)
        examples = []
        for e, history in zip(batch, before, strict=True):
            step = step_of(e)
            examples.append((history, step))
            histories[e.user_id].append(step)
        learner.learn(examples)
    hr = {how: hits[how] / max(scored, 1) for how in hits}
    console.print(
        f"{args.dataset}: {len(events)} events, {len(learner.vocab)} items, {scored} ranked with an index "
        f"({indexer.builds} builds, {time.perf_counter() - started:.0f} s)"
    )
    console.print(f"HR@{args.k} exact {hr['exact']:.4f}, index {hr['index']:.4f} "
                  f"({100 * (hr['index'] / hr['exact'] - 1):+.2f}% relative)")  # fmt: skip
    console.print(f"recall@{args.k} of the index's lists against exact: {sum(recalls) / max(scored, 1):.4f}")
    console.print(
        f"ranking per event: exact {1e6 * times['exact'] / max(scored, 1):.0f} us, "
        f"index {1e6 * times['index'] / max(scored, 1):.0f} us ({len(learner.vocab)} items)"
    )


def cost(args: argparse.Namespace) -> None:
    settings = Settings.load()
    torch.set_num_threads(settings.model.torch_threads(beside=2))  # as a worker serves, beside its trainer
    model = settings.model.replaced(capacity=max(settings.model.capacity, args.items))
    learner = OnlineLearner(model)
    t0 = time.perf_counter()
    learner.admit([f"i{k}" for k in range(args.items)])
    console.print(f"catalogue of {len(learner.vocab)} items loaded in {time.perf_counter() - t0:.1f} s")
    stream = list(synthetic.synthetic_events(args.events + 2000, users=args.users, items=args.items, seed=1))
    histories: dict[str, deque[Step]] = defaultdict(lambda: deque(maxlen=settings.seq_len))
    t0 = time.perf_counter()
    for at in range(0, args.events, 256):
        examples = []
        for e in stream[at : min(at + 256, args.events)]:
            examples.append((list(histories[e.user_id]), step_of(e)))
            histories[e.user_id].append(step_of(e))
        learner.learn(examples)
    console.print(f"{args.events} synthetic events learned in {time.perf_counter() - t0:.1f} s")
    scorer = learner.snapshot().prepare()
    retrieval = settings.retrieval.model_copy(update={"mode": "index"})
    indexer = Indexer(retrieval, background=False)
    index = indexer.build_now(scorer)
    lists = index.index.nlist
    vectors_mb = index.index.ntotal * (index.index.d * 4 + 8) / 2**20
    console.print(f"index: {index.population} items in {lists} lists, built in {index.seconds:.1f} s, "
                  f"{vectors_mb:.0f} MB of vectors and ids")  # fmt: skip
    asked = []
    for e in stream[args.events :]:
        if histories[e.user_id]:
            asked.append(list(histories[e.user_id]))
        histories[e.user_id].append(step_of(e))
    asked = asked[: args.queries]
    ranked(scorer, asked, 10, exact=True)  # every user's new items get their rows before anything is timed
    exact_lists = ranked(scorer, asked, 10, exact=True)
    found = recall(ranked(scorer, asked, 10, exact=False), exact_lists)
    console.print(f"recall@10 of the index's lists against exact: {found:.4f} ({len(asked)} histories)")
    for size in args.sizes:
        chunks = [asked[i : i + size] for i in range(0, len(asked), size)]
        spent = {"encode": 0.0, "evidence": 0.0, "exact": 0.0, "index": 0.0}
        for chunk in chunks:
            for part, seconds in parts(scorer, chunk).items():
                spent[part] += seconds
        per = {part: 1e6 * seconds / len(asked) for part, seconds in spent.items()}
        console.print(
            f"batch {size:3d}, us per event: encode {per['encode']:.0f}, evidence and modes {per['evidence']:.0f}, "
            f"top-10 exact {per['exact']:.0f}, top-10 from the index {per['index']:.0f}; encode plus top-10 "
            f"exact {per['encode'] + per['exact']:.0f}, from the index {per['encode'] + per['index']:.0f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak memory of this process: {peak:.0f} MB ({args.items} items, dim {model.dim})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality", help="HR@10 and recall@10 of the index against exact, on a dataset")
    q.add_argument("dataset")
    q.add_argument("--limit", type=int, default=None, help="events read (default all)")
    q.add_argument("--batch", type=int, default=16, help="events ranked, then learned, at a time")
    q.add_argument("--refresh", type=int, default=200, help="events between two snapshots (a second at 200/s)")
    q.add_argument("--rebuild", type=int, default=12_000, help="events between two index builds (a minute)")
    q.add_argument("--k", type=int, default=10)
    q.set_defaults(func=quality)
    c = sub.add_parser("cost", help="ranking's cost per event, exact and from an index, over a synthetic catalogue")
    c.add_argument("--items", type=int, default=100_000)
    c.add_argument("--users", type=int, default=5000)
    c.add_argument("--events", type=int, default=20_000, help="synthetic events learned first")
    c.add_argument("--queries", type=int, default=512, help="histories ranked for the timing")
    c.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32], help="batch sizes timed")
    c.set_defaults(func=cost)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
