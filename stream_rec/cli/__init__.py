"""``stream-rec``: the command line. Every option also has a STREAM_REC_* environment variable (settings.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from .. import __version__
from ..errors import BrokerUnreachable, StreamRecError
from ..logs import quiet_kafka_python
from ..settings import Settings
from .commands import (
    EXIT_ERROR,
    EXIT_NO_BROKER,
    cmd_bench,
    cmd_consume,
    cmd_demo,
    cmd_evaluate,
    cmd_forget,
    cmd_kafka,
    cmd_produce,
    cmd_topics,
    cmd_trainer,
    cmd_tune,
    cmd_worker,
)

__all__ = ["main"]

EPILOG = """examples:
  stream-rec demo                                   # broker, topics, worker, MovieLens replay, live hit rate
  stream-rec kafka start                            # the local broker on 127.0.0.1:9092
  stream-rec topics create
  stream-rec worker
  STREAM_REC_LEARN_IN=kafka stream-rec worker       # serving, and a trainer beside it joined by Kafka topics
  STREAM_REC_LEARN_IN=kafka stream-rec worker --no-trainer   # serving only, a `stream-rec trainer` elsewhere
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


def _columns(text: str) -> dict[str, str]:
    from ..datasets.delimited import parse_columns

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
    p.add_argument(
        "--no-trainer",
        action="store_true",
        help="with STREAM_REC_LEARN_IN=kafka: serve only, a `stream-rec trainer` runs elsewhere (without it, the "
        "worker starts one beside it, its state in <data dir>/trainer)",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "trainer",
        help="run the trainer for workers started with STREAM_REC_LEARN_IN=kafka",
        description="Learns from the examples the serving workers send (the <app id>-training-examples topic) and "
        "publishes the model on <app id>-model-updates, which every such worker applies; checkpoints go to "
        "<data dir>/checkpoints, and a restart resumes from them. Stop it with ^C or SIGTERM.",
    )
    p.add_argument("--data-dir", help="trainer state folder (STREAM_REC_DATA_DIR)")
    p.add_argument("--web-port", type=int, help="port of its view, /stats (STREAM_REC_WEB_PORT, default 6066)")
    p.set_defaults(func=cmd_trainer)

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
        "the last, as a worker's serving snapshot lags its trainer (default 0: after every chunk of "
        "STREAM_REC_EVALUATE_BATCH events)",
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
        help="before the warm-up, one event for each of the items i0 .. i<N-1> (untimed), so that the worker has "
        "seen N items (with --synthetic, the worker is given the --items catalogue as it starts, "
        "STREAM_REC_CATALOGUE: --synthetic 4000 --items 1000000 ranks over a million items)",
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
    quiet_kafka_python()
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
