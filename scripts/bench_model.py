"""Micro-benchmark of the model's own cost per event: one learn step and one top-k ranking, big vocabulary.

    python scripts/bench_model.py                      # 100,000 items, batch 256, histories of 50
    python scripts/bench_model.py --items 20000 --repeats 20
    STREAM_REC_MODEL__ENCODER=gru python scripts/bench_model.py
    python scripts/bench_model.py --repeats 4 --profile 25   # where the time goes: cProfile, top 25 by own time
    python scripts/bench_model.py --floor                    # the exact ranking's own floor, no model at all

Model settings come from STREAM_REC_MODEL__* as everywhere else. Prints microseconds per event for learning
(the learner's steps on a batch, replay included), for ranking (encode + exact top-k over the whole vocabulary)
and both; issue 4's target is <= 300 us per event on 2 cores with 100,000 items.

--floor times only what any exact top-k over the vocabulary pays per event, whatever the model: the bare
``[batch, dim] x [dim, items]`` product, and ``ranking.top_k`` (the project's exact top-k) on random vectors,
with and without the softmax normaliser the mixture needs.
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import random
import statistics
import time

import numpy as np
import torch

from stream_rec.learning.recommender import SequenceRecommender
from stream_rec.sequences import Example, Step
from stream_rec.serving.ranking import top_k
from stream_rec.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="vocabulary size (default 100,000)")
    parser.add_argument("--batch", type=int, default=256, help="events per learn/rank call (default 256)")
    parser.add_argument("--history", type=int, default=50, help="history length of each event (default 50)")
    parser.add_argument("--repeats", type=int, default=10, help="timed batches (default 10)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile the timed batches: the N costliest functions"
    )
    parser.add_argument("--floor", action="store_true", help="time the exact ranking alone (see above)")
    args = parser.parse_args()
    if args.floor:
        floor(args)
        return

    settings = Settings().model.model_copy(update={"capacity": max(args.items, 16)})
    rec = SequenceRecommender(settings)
    rng = random.Random(0)
    items = [f"i{n}" for n in range(args.items)]
    rec.learner.vocab.observe(items)  # the whole vocabulary known up front
    rec.learner._observe([])  # grow the tables to it
    rec.learner.model.item_count[1:] = 1.0  # ... and seen before as targets: a first sighting teaches nothing

    def batch() -> list[Example]:
        out: list[Example] = []
        for _ in range(args.batch):
            picks = rng.sample(items, args.history + 1)
            steps = [Step(item, "view", 1.6e9 + 60 * t) for t, item in enumerate(picks)]
            out.append((steps[:-1], steps[-1]))
        return out

    for _ in range(2):  # warm-up: allocator, optimizer state, replay buffer
        warm = batch()
        rec.learn_many(warm)
        rec.rank_many([h for h, _ in warm], args.k)
    learn_us, rank_us = [], []
    batches = [batch() for _ in range(args.repeats)]  # made before: neither timed nor profiled
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    for examples in batches:
        began = time.perf_counter()
        rec.learn_many(examples)
        learned = time.perf_counter()
        rec.rank_many([h for h, _ in examples], args.k)
        ranked = time.perf_counter()
        learn_us.append((learned - began) / args.batch * 1e6)
        rank_us.append((ranked - learned) / args.batch * 1e6)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
    learn, rank = statistics.median(learn_us), statistics.median(rank_us)
    s = settings
    print(f"{s.encoder}/{s.fusion}, dim {s.dim}, batch {s.batch}, replay {s.replay}, {args.items:,} items, "
          f"histories of {args.history}, {s.torch_threads()} threads")  # fmt: skip
    total = learn + rank
    print(f"learn {learn:.0f} us/event, rank {rank:.0f} us/event, total {total:.0f} us/event "
          f"(median of {args.repeats})")  # fmt: skip


def floor(args: argparse.Namespace) -> None:
    """Microseconds per event of the exact ranking's parts alone, on random vectors of the model's dim."""
    settings = Settings().model
    torch.set_num_threads(settings.torch_threads())
    rng = np.random.default_rng(0)
    user = rng.standard_normal((args.batch, settings.dim), dtype=np.float32) * 0.3
    weight = rng.standard_normal((args.items, settings.dim), dtype=np.float32) * 0.3
    bias = np.zeros(args.items, dtype=np.float32)
    log_explore = np.full(args.batch, math.log(0.5), dtype=np.float32)
    scores = torch.empty(args.batch, args.items)
    u, w = torch.from_numpy(user), torch.from_numpy(weight)
    runs = {
        "product": lambda: torch.mm(u, w.t(), out=scores),
        "top_k": lambda: top_k(user, weight, bias, args.k),
        "top_k + normaliser": lambda: top_k(user, weight, bias, args.k, log_explore=log_explore),
    }
    print(f"dim {settings.dim}, {args.items:,} items, batches of {args.batch}, {settings.torch_threads()} threads")
    for name, run in runs.items():
        run()  # warm-up
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            run()
            times.append((time.perf_counter() - began) / args.batch * 1e6)
        us = statistics.median(times)
        flops = 2 * settings.dim * args.items / (us * 1e-6) / 1e9
        print(f"{name}: {us:.0f} us/event ({flops:.0f} GFLOP/s of product)")


if __name__ == "__main__":
    main()
