"""``stream-rec``: the command line. Every option also has a STREAM_REC_* environment variable (settings.py)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from . import __version__
from .errors import BrokerUnreachable, StreamRecError
from .settings import Settings
from .wire.events import Event

__all__ = ["main"]

EXIT_ERROR, EXIT_NO_BROKER = 2, 3

EPILOG = """examples:
  stream-rec demo                                   # broker, topics, worker, MovieLens replay, live hit rate
  stream-rec kafka start                            # the local broker on 127.0.0.1:9092
  stream-rec topics create
  stream-rec worker
  stream-rec produce ../shared/data/ml-100k/u.data --rate 500 --limit 10000
  stream-rec produce --synthetic 5000
  stream-rec consume --limit 5 --from-beginning
  stream-rec evaluate ../shared/data/ml-100k/u.data --exclude-seen --models popularity,markov,lstm
  stream-rec tune ../shared/data/ml-100k/u.data@exclude-seen --trials 10 --out tuned.env
  stream-rec --settings tuned.env worker               # the worker with the tuned settings
  stream-rec bench --limit 5000 --json bench.json  # end-to-end events/s, latency, ratio to a bare-Faust ceiling
  stream-rec forget 42                              # remove user 42's history everywhere the workers keep it
exit codes: 0 done; 2 an error it names (bad input, a missing file, a worker already on the data folder); 3 no
  Kafka broker answers (or `kafka status`: not running); 4 `forget --wait` not confirmed in time; 75 the worker
  stopped without committing after a failed send (restart it); 130 interrupted
settings: STREAM_REC_BROKER, STREAM_REC_K, STREAM_REC_SEQ_LEN, STREAM_REC_DATA_DIR, STREAM_REC_HOME,
  STREAM_REC_TOPIC_EVENTS, ... (see the README); model: STREAM_REC_MODEL__DIM, STREAM_REC_MODEL__LR, ...
"""


def need_broker(settings: Settings) -> None:
    """Fail in a few seconds, in one line, where no broker answers (rather than the clients' 30 s of retries)."""
    from .ops.kafka_local import is_up

    if not is_up(settings.bootstrap, timeout=3.0):
        raise BrokerUnreachable(settings.bootstrap)


def _events(args: argparse.Namespace) -> Iterable[Event]:
    from . import datasets
    from .datasets import synthetic

    if args.dataset:
        return datasets.load(args.dataset, args.format, limit=args.limit, columns=args.columns)
    n = args.synthetic or args.limit or 10_000
    return synthetic.synthetic_events(n, users=args.users, items=args.items, seed=args.seed)


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from .ops import kafka_local

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
    from .ops.topics import create_topics, load_specs, specs_for

    specs = specs_for(settings, load_specs(Path(args.topics_dir) if args.topics_dir else None))
    need_broker(settings)
    for name, outcome in create_topics(settings, specs).items():
        print(f"{name}: {outcome}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from .ops.processes import hold_data_dir

    with hold_data_dir(settings):  # before the heavy imports: a second worker on the folder is told at once
        import torch
        from faust.worker import Worker

        from .logs import configure_logging, throttle_client_logs
        from .ops.kafka_local import is_up
        from .worker.app import create_app

        torch.set_num_threads(settings.model.torch_threads(beside=2))  # serving and learning run side by side
        configure_logging(settings)
        if not is_up(settings.bootstrap, timeout=3.0):
            logging.getLogger("stream_rec.worker").warning(
                "waiting for the Kafka broker at %s (start the local one with `stream-rec kafka start`, or point "
                "STREAM_REC_BROKER at yours)", settings.bootstrap,
            )  # fmt: skip
            while not is_up(settings.bootstrap, timeout=3.0):
                time.sleep(2.0)
            logging.getLogger("stream_rec.worker").info("the broker at %s answers", settings.bootstrap)
        app = create_app(settings)
        throttle_client_logs()  # a lost broker: its complaints once every few seconds, not thousands a second
        Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return 0


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from .ops.clients import forget

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

    from .ops.clients import produce

    need_broker(settings)
    events = _events(args)
    with Progress(transient=True) as progress:
        task = progress.add_task("producing", total=args.limit)
        n = produce(settings, events, rate=args.rate, limit=args.limit, on_sent=lambda _: progress.advance(task))
    print(f"{n} events written to {settings.topic_events} on {settings.bootstrap}")
    return 0


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    from .ops.clients import consume

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

    from . import datasets
    from .evaluation.prequential import evaluate, make_recommender

    events = datasets.load(args.dataset, args.format, limit=args.limit, columns=args.columns)
    if args.no_item_features:
        events = datasets.without_item_features(events)
    ks = tuple(int(k) for k in str(args.k or settings.k).split(","))
    import torch

    torch.set_num_threads(settings.model.torch_threads())
    exclude_seen = args.exclude_seen or settings.model.exclude_seen
    seed = settings.model.seed if args.seed is None else args.seed
    model_settings = settings.model.model_copy(update={"seed": seed, "exclude_seen": exclude_seen})
    models = {name: make_recommender(name, model_settings, refresh_events=args.refresh_events)
              for name in args.models.split(",")}  # fmt: skip
    with Progress(transient=True) as progress:
        task = progress.add_task("replaying", total=len(events))
        report = evaluate(
            events, models, ks=ks, exclude_seen=exclude_seen, dataset=str(args.dataset), seq_len=settings.seq_len,
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
        from .evaluation.plots import plot_rolling

        print(f"rolling hit rate plotted to {plot_rolling(report, args.plot)}")
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.table import Table

    from . import datasets
    from .datasets import synthetic
    from .ops import kafka_local
    from .ops.bench import run_bench

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
    started = False
    if settings.broker is None:
        status = kafka_local.start(settings)
        started = not status.already_running
        console.print(status.describe())
        settings = settings.model_copy(update={"broker": settings.bootstrap})
    try:
        report = run_bench(settings, events, rate=args.rate, warmup=args.warmup, ceiling=not args.no_ceiling,
                           say=console.print)  # fmt: skip
    finally:
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
        f"{report['delivered_p99_ms']} ms"
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
    from . import datasets
    from .evaluation.tune import Dataset

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

    from .evaluation.tune import parse_space, tune, write_settings

    torch.set_num_threads(settings.model.torch_threads())
    space = parse_space(args.params)
    data = [_tune_dataset(spec, args.format, args.columns, args.limit, args.exclude_seen, args.no_item_features)
            for spec in args.datasets]  # fmt: skip
    print(f"tuning {', '.join(space)} on {', '.join(f'{d.name} ({len(d.events)} events)' for d in data)}: "
          f"{args.trials} trials on the first {args.prefix:.0%} of each, then the best {args.finalists} and the "
          f"defaults on the rest with {args.seeds} seeds", flush=True)  # fmt: skip
    result = tune(
        data, settings.model, trials=args.trials, prefix=args.prefix, seeds=args.seeds, finalists=args.finalists,
        space=space, k=args.k or settings.k, seq_len=settings.seq_len, log=lambda line: print(line, flush=True),
    )  # fmt: skip
    if not result.best:
        print("the defaults did best on the held-out parts: nothing to change")
    specs = " ".join(args.datasets) + (f" --limit {args.limit}" if args.limit else "")
    comment = (
        f"stream-rec tune {specs}: {result.trials} trials ({result.pruned} pruned) on the first {args.prefix:.0%} of "
        f"each stream,\nthe best {args.finalists} and the defaults scored on the rest with {args.seeds} seeds; "
        "the winner's settings.\nRead by every command: stream-rec --settings THIS_FILE ..., or "
        "STREAM_REC_SETTINGS_FILE=THIS_FILE"
    )
    written = write_settings(args.out, result.best, comment)
    print(f"settings written to {written}: stream-rec --settings {written} worker")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .ops.demo import run_demo

    return run_demo(
        settings, dataset=args.dataset, fmt=args.format, columns=args.columns, rate=args.rate, limit=args.limit
    )


def _columns(text: str) -> dict[str, str]:
    from .datasets.delimited import parse_columns

    try:
        return parse_columns(text)
    except StreamRecError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--columns: ")) from None


def _format_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        default="auto",
        help="movielens | taobao | diginetica | sequences | events | csv | auto (default: from the file's name and "
        "first line)",
    )
    p.add_argument(
        "--columns",
        type=_columns,
        help="a csv file's columns by role, where the header does not use the usual names: "
        "user=NAME,item=NAME,ts=NAME and optionally event=NAME,category=NAME",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-rec",
        description="A streaming online-learning sequence recommender on Kafka and Faust.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stream-rec {__version__}")
    parser.add_argument("--broker", help="Kafka bootstrap servers (STREAM_REC_BROKER; default 127.0.0.1:9092)")
    parser.add_argument(
        "--settings",
        help="a settings file of STREAM_REC_*=value lines (STREAM_REC_SETTINGS_FILE), e.g. what `tune` wrote; "
        "the environment's STREAM_REC_* variables count over it",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("kafka", help="install, start, stop or check the local Kafka broker")
    p.add_argument("action", choices=["install", "start", "stop", "status"])
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("topics", help="create the topics described in topics/ (idempotent)")
    p.add_argument("action", choices=["create"])
    p.add_argument("--topics-dir", help="folder of topic files (default: the project's topics/)")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("worker", help="run the Faust worker (events -> recommendations)")
    p.add_argument("--web-port", type=int, help="port of the web view (STREAM_REC_WEB_PORT, default 6066)")
    p.add_argument("--data-dir", help="worker state folder (STREAM_REC_DATA_DIR)")
    p.set_defaults(func=cmd_worker)

    def source(p: argparse.ArgumentParser, rate: float, limit: int | None) -> None:
        p.add_argument("dataset", nargs="?", help="dataset file or folder (MovieLens u.data, Taobao CSV, JSON lines)")
        _format_flags(p)
        p.add_argument("--rate", type=float, default=rate, help=f"events per second, 0 = max (default {rate:g})")
        p.add_argument("--limit", type=int, default=limit, help="at most this many events")
        p.add_argument("--synthetic", type=int, help="without a dataset: this many synthetic events")
        p.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream")
        p.add_argument("--users", type=int, default=500, help="users of the synthetic stream (default 500)")
        p.add_argument(
            "--items", type=int, default=2000, help="items of the synthetic stream's catalogue (default 2,000)"
        )

    p = sub.add_parser("produce", help="write events to the events topic, from a dataset or synthetic")
    source(p, 0.0, None)
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("consume", help="print what arrives on a topic (default: recommendations)")
    p.add_argument("--topic", help="topic to read (default: the recommendations topic)")
    p.add_argument("--limit", type=int, help="stop after this many messages")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    p.add_argument("--timeout", type=float, help="stop after this many idle seconds")
    p.set_defaults(func=cmd_consume)

    p = sub.add_parser(
        "forget",
        help="remove a user's sequence, served lists, replay examples and embedding (through the control topic)",
        description="Writes a forget command for USER_ID to the control topic; the worker that owns the user "
        "removes their sequence and served lists (a changelog tombstone), drops their examples from the replay "
        "buffer, writes a tombstone on the embeddings topic and a checkpoint that replaces every older one. "
        "Exit codes: 0 done (or not waited for), 4 not confirmed within --wait seconds.",
    )
    p.add_argument("user_id", help="the user to forget")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the confirmation (0 = do not wait)")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("evaluate", help="prequential (test-then-train) replay of a dataset through the models")
    p.add_argument("dataset", help="dataset file or folder (MovieLens u.data, Taobao CSV, JSON lines, ...)")
    _format_flags(p)
    p.add_argument(
        "--no-item-features",
        action="store_true",
        help="drop the events' item side features (categories, attributes): the data as a set without them",
    )
    p.add_argument(
        "--models",
        default="popularity,decayed-popularity,markov,recent-markov,lstm",
        help="comma-separated: popularity, decayed-popularity, markov, recent-markov, sknn, vsknn, sr, "
        "recent-sknn, recent-vsknn, recent-sr, category, recent-category, rule (the fixed rule of the model's "
        "modes), river-biasedmf, river-funkmf, lstm, gru, transformer, graph",
    )
    p.add_argument("--k", help="list length(s), e.g. 10 or 5,10,20 (default STREAM_REC_K, 10)")
    p.add_argument(
        "--exclude-seen",
        action="store_true",
        help="never rank a user's seen items (data without repeats; STREAM_REC_MODEL__EXCLUDE_SEEN)",
    )
    p.add_argument("--limit", type=int, help="only the first N events in time order")
    p.add_argument("--seed", type=int, help="seed of the models (default STREAM_REC_MODEL__SEED, 0)")
    p.add_argument(
        "--refresh-events",
        type=int,
        default=0,
        help="the sequence models rank with a snapshot taken again only once this many events were learned since "
        "the last, as a worker's serving snapshot lags its trainer (default 0: after every 128-event chunk)",
    )
    p.add_argument("--json", help="write every figure to this JSON file")
    p.add_argument("--plot", help="draw each model's rolling hit rate over the stream to this PNG (or SVG, PDF)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "tune",
        help="search the model's settings by replay: on the start of each stream, chosen by the rest",
        description="Optuna's TPE search over the model's settings: each trial replays the first --prefix of "
        "every dataset (prequential, as evaluate) and scores the geometric mean of its HR@k relative to the "
        "defaults'; the best --finalists trials and the defaults are then scored on the rest of each stream (the "
        "first part learned, not scored) with --seeds seeds, and the best mean wins. It is written to --out as a "
        "settings file every command reads (--settings FILE, or STREAM_REC_SETTINGS_FILE). Other settings "
        "(STREAM_REC_MODEL__*) are the starting point.",
    )
    p.add_argument(
        "datasets",
        nargs="+",
        metavar="DATASET",
        help="dataset files or folders; PATH@exclude-seen excludes seen items on that one (data without repeats), "
        "PATH@no-item-features drops its item side features (both: PATH@exclude-seen@no-item-features)",
    )
    _format_flags(p)
    p.add_argument("--exclude-seen", action="store_true", help="exclude seen items on every dataset")
    p.add_argument("--no-item-features", action="store_true", help="drop the events' item side features")
    p.add_argument("--limit", type=int, help="only the first N events of each dataset, in time order")
    p.add_argument("--trials", type=int, default=20, help="settings tried on the search parts (default 20)")
    p.add_argument("--prefix", type=float, default=0.5, help="the fraction of each stream searched on (default 0.5)")
    p.add_argument("--finalists", type=int, default=3, help="best trials scored on the rest (default 3)")
    p.add_argument("--seeds", type=int, default=3, help="seeds each finalist is scored with (default 3)")
    p.add_argument(
        "--params",
        help="comma-separated settings to search (default lr,head_lr,replay,batch,evidence_window; also dim, encoder)",
    )
    p.add_argument("--k", type=int, help="the list length scored (default STREAM_REC_K, 10)")
    p.add_argument("--out", default="tuned.env", help="the settings file to write (default tuned.env)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "bench",
        help="end-to-end events/s and latency through the broker and a worker, against a bare-Faust ceiling",
        description="Times N events (after --warmup untimed ones) from producer to recommendation through a "
        "real broker and a worker process, and the same through a bare Faust agent that only decodes and "
        "forwards (the ceiling). Data: the dataset given, --synthetic N, or MovieLens 100K where found.",
    )
    source(p, 0.0, 10_000)
    p.add_argument("--warmup", type=int, default=200, help="untimed events first (default 200)")
    p.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="before the warm-up, one event for each of the items i0 .. i<N-1> (untimed), so that the worker ranks "
        "over a vocabulary of N items, e.g. --synthetic 5000 --items 100000 --prefill 100000",
    )
    p.add_argument("--no-ceiling", action="store_true", help="time the worker only")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="everything at once: broker, topics, worker, replay, live hit rate")
    source(p, 1000.0, 20_000)
    p.set_defaults(func=cmd_demo)
    for command in sub.choices.values():  # --broker before or after the command alike
        command.add_argument("--broker", default=argparse.SUPPRESS, help="Kafka bootstrap servers (STREAM_REC_BROKER)")
    return parser


def _first_error(exc: ValidationError) -> str:
    """A pydantic error in one line: which setting, and what is wrong with it."""
    error = exc.errors()[0]
    where = "STREAM_REC_" + "__".join(str(part).upper() for part in error["loc"]) if error["loc"] else "settings"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {error['msg']}{more}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {}
    for name in ("broker", "web_port", "data_dir"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        try:
            settings = Settings.load(args.settings, **overrides)
        except ValidationError as exc:
            raise StreamRecError(f"invalid settings: {_first_error(exc)}") from None
        return int(args.func(args, settings))
    except BrokerUnreachable as exc:
        print(f"stream-rec: error: {exc}", file=sys.stderr)
        return EXIT_NO_BROKER
    except StreamRecError as exc:
        print(f"stream-rec: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
