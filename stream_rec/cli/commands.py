"""The commands of ``stream-rec``, one function each: ``cmd_<name>(args, settings)`` returns the exit code."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ..errors import BrokerUnreachable, StreamRecError
from ..settings import Settings
from ..wire.events import Event

__all__ = [
    "EXIT_ERROR", "EXIT_NO_BROKER", "cmd_bench", "cmd_consume", "cmd_demo", "cmd_evaluate", "cmd_forget", "cmd_kafka",
    "cmd_produce", "cmd_topics", "cmd_trainer", "cmd_tune", "cmd_worker", "need_broker",
]  # fmt: skip

EXIT_ERROR, EXIT_NO_BROKER = 2, 3


def need_broker(settings: Settings) -> None:
    """Fail in seconds, in one line, where no broker answers (rather than the clients' 30 s of retries)."""
    from ..ops.probe import PROBE_TIMEOUT, is_up

    if not is_up(settings.bootstrap, timeout=PROBE_TIMEOUT, security=settings.security):
        raise BrokerUnreachable(settings.bootstrap)


def _events(args: argparse.Namespace) -> Iterable[Event]:
    from .. import datasets
    from ..datasets import synthetic

    if args.dataset:
        return datasets.load(args.dataset, args.format, limit=args.limit, columns=args.columns)
    n = args.synthetic or args.limit or 10_000
    return synthetic.synthetic_events(n, users=args.users, items=args.items, seed=args.seed)


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from ..ops import kafka_local

    if args.action == "install":
        print(f"Kafka {settings.kafka_version} jars in {kafka_local.install(settings)}")
    elif args.action == "start":
        print(kafka_local.start(settings).describe())
    elif args.action == "stop":
        print("broker stopped" if kafka_local.stop(settings) else "no broker of ours was running")
    else:
        st = kafka_local.status(settings)
        print(st.describe())
        return 0 if st.running else 3
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from ..ops.topics import create_topics, load_specs, specs_for

    specs = specs_for(settings, load_specs(Path(args.topics_dir) if args.topics_dir else None))
    need_broker(settings)
    for name, outcome in create_topics(settings, specs).items():
        print(f"{name}: {outcome}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ..ops.processes import hold_data_dir

    with hold_data_dir(settings):  # before the heavy imports: a second worker on the folder is told at once
        import torch
        from faust.worker import Worker

        from ..logs import configure_logging, throttle_client_logs
        from ..ops.probe import PROBE_TIMEOUT, is_up
        from ..worker.app import create_app

        torch.set_num_threads(settings.model.torch_threads(beside=2))  # serving and learning run side by side
        configure_logging(settings)
        if not is_up(settings.bootstrap, timeout=PROBE_TIMEOUT, security=settings.security):
            logging.getLogger("stream_rec.worker").warning(
                "waiting for the Kafka broker at %s (start the local one with `stream-rec kafka start`, or point "
                "STREAM_REC_BROKER at yours)", settings.bootstrap,
            )  # fmt: skip
            while not is_up(settings.bootstrap, timeout=PROBE_TIMEOUT, security=settings.security):
                time.sleep(2.0)
            logging.getLogger("stream_rec.worker").info("the broker at %s answers", settings.bootstrap)
        if settings.learn_in == "kafka":
            from ..ops.processes import trainer_beside
            from ..ops.topics import create_role_topics

            create_role_topics(settings)
            if not args.no_trainer:  # one command still does it all: the trainer beside, joined by the topics
                trainer = trainer_beside(settings)
                logging.getLogger("stream_rec.worker").info("started the trainer beside (pid %d)", trainer.pid)
        app = create_app(settings)
        throttle_client_logs()  # a lost broker: its complaints once every few seconds, not thousands a second
        Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return 0


def cmd_trainer(args: argparse.Namespace, settings: Settings) -> int:
    from ..ops.processes import hold_data_dir

    need_broker(settings)
    with hold_data_dir(settings):
        import signal

        import torch

        from ..learning.remote import RemoteTrainer
        from ..logs import configure_logging, throttle_client_logs
        from ..ops.topics import create_role_topics

        torch.set_num_threads(settings.model.torch_threads())
        configure_logging(settings)
        throttle_client_logs()
        create_role_topics(settings)
        trainer = RemoteTrainer(settings)
        trainer.serve_stats(settings.web_port)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: trainer.stop())
        logging.getLogger("stream_rec.trainer").info(
            "trainer: learning from %s, publishing to %s", settings.topic_examples, settings.topic_updates
        )
        trainer.run()
    return 0


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from ..ops.clients import forget

    need_broker(settings)
    print(f"asked the workers to forget user {args.user_id!r} (topic {settings.topic_control})")
    if args.wait <= 0:
        return 0
    if forget(settings, args.user_id, wait=args.wait):
        print(f"done: the user's sequence is gone and their embedding tombstoned on {settings.topic_embeddings}")
        return 0
    print(f"not confirmed within {args.wait:g} s: a worker carries it out when it runs", file=sys.stderr)
    return 4


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import Progress

    from ..ops.clients import produce

    need_broker(settings)
    events = _events(args)
    with Progress(transient=True) as progress:
        task = progress.add_task("producing", total=args.limit)
        n = produce(settings, events, rate=args.rate, limit=args.limit, on_sent=lambda _: progress.advance(task))
    print(f"{n} events written to {settings.topic_events} on {settings.bootstrap}")
    return 0


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    from ..ops.clients import consume

    need_broker(settings)
    topic = args.topic or settings.topic_recommendations
    n = 0
    for key, value in consume(
        settings, topic, from_beginning=args.from_beginning, limit=args.limit, timeout=args.timeout
    ):
        sys.stdout.write(f"{key}\t{orjson.dumps(value).decode()}\n")
        sys.stdout.flush()
        n += 1
    if n == 0 and args.timeout:
        where = "from its beginning" if args.from_beginning else "new"
        print(f"no {where} messages on {topic} within {args.timeout:g} s", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from .. import datasets
    from ..evaluation.prequential import evaluate, make_recommender

    events = datasets.load(args.dataset, args.format, limit=args.limit, columns=args.columns)
    if args.no_item_features:
        events = datasets.without_item_features(events)
    ks = tuple(int(k) for k in str(args.k or settings.k).split(","))
    import torch

    torch.set_num_threads(settings.model.torch_threads())
    model = settings.model.replaced(
        seed=settings.model.seed if args.seed is None else args.seed,
        exclude_seen=args.exclude_seen or settings.model.exclude_seen,
    )
    settings = settings.model_copy(update={"model": model})  # the flags, as settings: models and protocol agree
    models = {name: make_recommender(name, settings.model, refresh_events=args.refresh_events)
              for name in args.models.split(",")}  # fmt: skip
    with Progress(transient=True) as progress:
        task = progress.add_task("replaying", total=len(events))
        report = evaluate(
            events, models, settings, ks=ks, dataset=str(args.dataset),
            progress=lambda done, total: progress.update(task, completed=done),
        )  # fmt: skip
    console = Console()
    table = Table(title=f"{args.dataset}: {report['events']} events, {report['scored']} scored (prequential)")
    table.add_column("model")
    columns = [f"{metric}@{k}" for k in ks for metric in ("HR", "NDCG", "MRR")]
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("events/s", justify="right")
    for name, m in report["models"].items():
        table.add_row(name, *(f"{m[c]:.4f}" for c in columns), f"{m['events_per_s']:.0f}")
    console.print(table)
    n_last = min((m["last_n"] for m in report["models"].values()), default=0)
    table = Table(title=f"last-event view: each user's last event ({n_last}), the user's earlier items masked")
    table.add_column("model")
    columns = [f"last_{metric}@{k}" for k in ks for metric in ("HR", "NDCG")]
    for column in columns:
        table.add_column(column, justify="right")
    for name, m in report["models"].items():
        table.add_row(name, *(f"{m[c]:.4f}" for c in columns))
    console.print(table)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if args.plot:
        from ..evaluation.plots import plot_rolling

        print(f"rolling hit rate plotted to {plot_rolling(report, args.plot)}")
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.table import Table

    from .. import datasets
    from ..datasets import synthetic
    from ..ops import kafka_local
    from ..ops.bench import run_bench

    console = Console()
    timed = args.synthetic or args.limit or 10_000
    path = Path(args.dataset) if args.dataset else None if args.synthetic else datasets.default_dataset()
    if path is not None:
        events = datasets.load(path, args.format, limit=timed + args.warmup, columns=args.columns)
    else:
        events = list(synthetic.synthetic_events(timed + args.warmup, users=args.users, items=args.items,
                                                 seed=args.seed))  # fmt: skip
    if args.prefill:
        # One first sighting of each of the catalogue's items ("i<k>", as the synthetic stream names them) before
        # the warm-up, so that the worker ranks over a vocabulary of that many items while it is timed.
        t0 = events[0].ts - args.prefill
        tour = [Event(f"tour{k % 1000}", f"i{k}", "view", t0 + k, f"tour-{k}") for k in range(args.prefill)]
        events = tour + events
        args.warmup += len(tour)
    console.print(f"Data: {path or 'synthetic stream'}, {len(events)} events ({args.warmup} of them warm-up)")
    folder = tempfile.TemporaryDirectory(prefix="stream-rec-catalogue-")
    if path is None:
        # The synthetic stream's whole catalogue ("i0" .. ), known to the worker's model as it starts: loaded into
        # it, not replayed through it (a million items would take most of an hour as events).
        catalogue = Path(folder.name) / "catalogue.txt"
        catalogue.write_text("".join(f"i{k}\n" for k in range(args.items)))
        capacity = max(settings.model.capacity, args.items, args.prefill)
        settings = settings.model_copy(
            update={"catalogue": catalogue, "model": settings.model.replaced(capacity=capacity)}
        )
        console.print(f"Catalogue: {args.items} items")
    started = False
    if settings.broker is None:
        status = kafka_local.start(settings)
        started = not status.already_running
        console.print(status.describe())
        settings = settings.model_copy(update={"broker": settings.bootstrap})
    else:
        need_broker(settings)
    try:
        report = run_bench(settings, events, rate=args.rate, warmup=args.warmup, ceiling=not args.no_ceiling,
                           say=console.print)  # fmt: skip
    finally:
        folder.cleanup()
        if started:
            kafka_local.stop(settings)
    table = Table(title=f"{report['events']} events through {settings.bootstrap}, rate {args.rate:g}/s (0 = max)")
    for column in ("run", "events/s", "p50 ms", "p99 ms", "max ms", "CPU s", "CPU %", "peak RSS MB"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, prefix in (("worker", ""), ("ceiling", "ceiling_")):
        if f"{prefix}events_per_s" in report:
            table.add_row(name, *(str(report[f"{prefix}{key}"]) for key in (
                "events_per_s", "p50_ms", "p99_ms", "max_ms", "cpu_s", "cpu_percent", "peak_rss_mb")))  # fmt: skip
    console.print(table)
    console.print(
        f"worker model freshness (arrival to a published snapshot that learned it, last minute): p50 "
        f"{report['freshness_p50_ms']} ms, p99 {report['freshness_p99_ms']} ms; examples shed unlearned: "
        f"{report['learn_dropped']}; in the engine, a batch read to its rankings: p50 {report['serve_p50_ms']} ms, "
        f"p99 {report['serve_p99_ms']} ms; produced to published: p50 {report['published_p50_ms']} ms, p99 "
        f"{report['published_p99_ms']} ms; published to read back: p50 {report['delivered_p50_ms']} ms, p99 "
        f"{report['delivered_p99_ms']} ms; hit rate as served {report['hit_rate']}"
        + (f"; the trainer's CPU {report['trainer_cpu_s']} s" if report.get("trainer_cpu_s") is not None else "")
    )
    if "ratio" in report:
        console.print(f"worker / ceiling throughput: {report['ratio']:.3f}")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


def _tune_dataset(
    spec: str, fmt: str, columns: dict[str, str] | None, limit: int | None, exclude_all: bool, no_features: bool
) -> Any:
    """A ``stream-rec tune`` dataset from ``PATH``, with options after it: ``PATH@exclude-seen``,
    ``PATH@no-item-features``, or both (``PATH@exclude-seen@no-item-features``)."""
    from .. import datasets
    from ..evaluation.tune import Dataset

    path, *flags = spec.split("@")
    for flag in flags:
        if flag not in _TUNE_OPTIONS:
            raise StreamRecError(
                f"unknown dataset option @{flag} in {spec!r}; the ones there are: @{', @'.join(_TUNE_OPTIONS)}"
            )
    events = datasets.load(path, fmt, limit=limit, columns=columns)
    if no_features or "no-item-features" in flags:
        events = datasets.without_item_features(events)
    name = Path(path).name + "".join(f"@{flag}" for flag in flags if flag == "no-item-features")
    return Dataset(name, events, exclude_seen=exclude_all or "exclude-seen" in flags)


_TUNE_OPTIONS = ("exclude-seen", "no-item-features")


def cmd_tune(args: argparse.Namespace, settings: Settings) -> int:
    import torch

    from ..evaluation.tune import parse_space, tune, write_settings

    torch.set_num_threads(settings.model.torch_threads())
    space = parse_space(args.params)
    data = [_tune_dataset(spec, args.format, args.columns, args.limit, args.exclude_seen, args.no_item_features)
            for spec in args.datasets]  # fmt: skip
    print(f"tuning {', '.join(space)} on {', '.join(f'{d.name} ({len(d.events)} events)' for d in data)}: "
          f"{args.trials} trials on the first {args.prefix:.0%} of each, then the best {args.finalists} and the "
          f"defaults on the rest with {args.seeds} seeds", flush=True)  # fmt: skip
    result = tune(
        data, settings, trials=args.trials, prefix=args.prefix, seeds=args.seeds, finalists=args.finalists,
        space=space, k=args.k, log=lambda line: print(line, flush=True),
    )  # fmt: skip
    if not result.best:
        print("the defaults did best on the held-out parts: nothing to change")
    specs = " ".join(args.datasets) + (f" --limit {args.limit}" if args.limit else "")
    chosen = "the winner's settings" if result.best else "the defaults won: nothing is set"
    comment = (
        f"stream-rec tune {specs}: {result.trials} trials ({result.pruned} pruned) on the first {args.prefix:.0%} of "
        f"each stream,\nthe best {args.finalists} and the defaults scored on the rest with {args.seeds} seeds; "
        f"{chosen}.\n"
        "Read by every command: stream-rec --settings THIS_FILE ..., or "
        "STREAM_REC_SETTINGS_FILE=THIS_FILE"
    )
    written = write_settings(args.out, result.best, comment)
    print(f"settings written to {written}: stream-rec --settings {written} worker")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from ..ops.demo import run_demo

    return run_demo(
        settings, dataset=args.dataset, fmt=args.format, columns=args.columns, rate=args.rate, limit=args.limit
    )
