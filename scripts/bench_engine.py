"""The worker's engine alone (no broker, no Faust): events/s of learning and ranking as the worker does them.

    python scripts/bench_engine.py                       # MovieLens 100K, 8,000 events, batches of 100
    python scripts/bench_engine.py --events 20000 --batch 200
    STREAM_REC_MODEL__EXCLUDE_SEEN=true python scripts/bench_engine.py
    python scripts/bench_engine.py --events 30000 --checkpoint   # then time writing and reading a checkpoint
    python scripts/bench_engine.py --events 30000 --gc           # and Python's garbage collections meanwhile

Feeds the dataset's events, in batches, through ``Engine.serve`` and then its trainer (stepped here, in one
thread: learning and ranking one after the other) with the users' histories kept as the worker keeps them
(``admission.append``), after ``--warmup`` untimed events. Settings come from STREAM_REC_* as for the
worker; checkpoints are off and the state lives in a temporary folder. Compare with ``stream-rec bench``'s worker
figure to see what the broker and Faust add.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import torch

from stream_rec.datasets import default_dataset, load
from stream_rec.learning import checkpoint, open_side
from stream_rec.learning.local import Learning
from stream_rec.serving.accepted import Accepted
from stream_rec.serving.engine import Engine
from stream_rec.settings import Settings
from stream_rec.wire.events import Event
from stream_rec.worker.admission import State, append, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", help="dataset file or folder (default: MovieLens 100K where found)")
    parser.add_argument("--events", type=int, default=8000, help="events in all, warm-up included (default 8,000)")
    parser.add_argument("--warmup", type=int, default=1000, help="untimed events first (default 1,000)")
    parser.add_argument("--batch", type=int, default=100, help="events per engine call (default 100)")
    parser.add_argument("--gc", action="store_true", help="count Python's garbage collections and their time")
    parser.add_argument(
        "--checkpoint", action="store_true", help="then write the model's checkpoint as the worker does, and read it"
    )
    args = parser.parse_args()
    dataset = args.dataset or default_dataset()
    if dataset is None:
        parser.error("no dataset given and MovieLens 100K not found")
    events = load(dataset, limit=args.events)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), checkpoint_every=0, learn_in="thread")  # stepped here, in turn
        torch.set_num_threads(settings.model.torch_threads())  # one thread of work here: serving, then learning
        engine = Engine(settings, open_side)
        learning = engine.learning
        assert isinstance(learning, Learning)
        states: dict[str, State] = {}

        def feed(batch: list[Event]) -> None:
            accepted = []
            for event in batch:
                before = states.get(event.user_id)
                after = states[event.user_id] = append(before, event, max_len=settings.seq_len)
                accepted.append(Accepted(event, steps(before), steps(after), True, "events:0", len(states)))
            engine.serve(accepted)
            engine.submit(accepted, time.monotonic())
            while learning.trainer.step():  # learning here and now, the trainer's thread not started
                pass

        collections = _count_collections() if args.gc else {}
        feed(events[: args.warmup])
        timed = events[args.warmup :]
        began = time.perf_counter()
        for start in range(0, len(timed), args.batch):
            feed(timed[start : start + args.batch])
        seconds = time.perf_counter() - began
        if args.checkpoint:
            began = time.perf_counter()
            checkpoint.snapshot(learning.learner)  # what the worker waits for; the rest goes on beside it
            copied = time.perf_counter() - began
            began = time.perf_counter()
            path = engine.checkpoint()
            wrote = time.perf_counter() - began
            assert path is not None
            began = time.perf_counter()
            checkpoint.load(path)
            read = time.perf_counter() - began
            size = path.stat().st_size / 1e6
            saved = f"checkpoint: {size:.1f} MB, {len(learning.learner.replay):,} replay examples"
    m = settings.model
    print(f"{m.encoder}/{m.fusion}, exclude_seen={settings.model.exclude_seen}, batches of {args.batch}, {dataset}")
    print(f"engine: {len(timed) / seconds:,.0f} events/s over {len(timed):,} events")
    for generation, (n, total, longest) in collections.items():
        print(f"gc generation {generation}: {n} collections, {total:.2f} s in all, the longest {longest:.3f} s")
    if args.checkpoint:
        print(f"{saved}; copied in {copied:.2f} s (the worker waits), written in {wrote:.2f} s, read in {read:.2f} s")


def _count_collections() -> dict[int, list[float]]:
    """generation -> [collections, seconds in all, longest], kept up to date by a gc callback."""
    counts: dict[int, list[float]] = {g: [0, 0.0, 0.0] for g in range(3)}
    began = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            return
        took, entry = time.perf_counter() - began[0], counts[info["generation"]]
        entry[0], entry[1], entry[2] = entry[0] + 1, entry[1] + took, max(entry[2], took)

    gc.callbacks.append(callback)
    return counts


if __name__ == "__main__":
    main()
