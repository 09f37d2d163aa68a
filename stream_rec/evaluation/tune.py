"""Hyperparameter search by replay (``stream-rec tune``): settings searched on the start of each stream, chosen by
the rest of it, never by the events they were searched on.

1. Each dataset's events (in time order) are cut at ``prefix`` (a fraction): the first part is the search's, the
   rest the choice's.
2. Optuna's TPE sampler proposes model settings; each trial replays every dataset's first part through the
   prequential harness (prequential.py) and scores the geometric mean over the datasets of its HR@k relative to the
   default settings' HR@k on the same events, so that no dataset counts more for having larger figures. A trial
   far behind the others after its first datasets is pruned (Optuna's median rule).
3. The ``finalists`` best trials and the defaults are then replayed over each whole stream, scored on the rest
   only (the first part warms the model up, as a worker has learned its past), with every seed of ``seeds``: the
   finalist with the best mean there wins, reported with its spread over seeds beside the defaults'.
4. The winner is written as a settings file (``STREAM_REC_MODEL__...=...`` lines) that every command reads with
   ``--settings FILE`` or ``STREAM_REC_SETTINGS_FILE``.

Nothing here knows Kafka: it is replay, as ``stream-rec evaluate`` is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StreamRecError
from ..settings import ModelSettings, Settings
from ..wire.events import Event
from .prequential import evaluate, make_recommender

__all__ = ["SPACE", "Dataset", "Result", "parse_space", "tune", "write_settings"]

# What can be searched: name -> (kind, low, high) for numbers (log: searched on a log scale), or the choices.
SPACE: dict[str, tuple[Any, ...]] = {
    "lr": ("log", 0.01, 0.2),
    "head_lr": ("log", 0.02, 0.5),
    "replay": ("float", 0.0, 2.0),
    "batch": ("choice", 32, 64, 128),
    "dim": ("choice", 32, 64, 128),
    "evidence_window": ("int", 2, 20),
    "encoder": ("choice", "lstm", "gru", "transformer"),
}
DEFAULT_PARAMS = ("lr", "head_lr", "replay", "batch", "evidence_window")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Dataset:
    """One stream to tune on: its events in time order, and whether seen items are excluded there."""

    name: str
    events: Sequence[Event]
    exclude_seen: bool = False

    def cut(self, prefix: float) -> int:
        """Where the search's part ends: the first event after the ``prefix`` fraction."""
        return max(1, min(len(self.events) - 1, round(len(self.events) * prefix)))


@dataclass
class Result:
    """What the search found: the winner's settings, and each finalist's HR@k on the held-out parts."""

    best: dict[str, Any]
    trials: int
    pruned: int
    # settings (as a tuple of items) -> dataset -> HR@k per seed, on the held-out part; "defaults" is {}
    held_out: list[tuple[dict[str, Any], dict[str, list[float]]]] = field(default_factory=list)


def parse_space(names: str | None) -> dict[str, tuple[Any, ...]]:
    """The searched parameters by name (comma-separated; None: the default ones)."""
    wanted = DEFAULT_PARAMS if not names else tuple(n.strip() for n in names.split(",") if n.strip())
    unknown = [n for n in wanted if n not in SPACE]
    if unknown:
        raise StreamRecError(f"cannot tune {', '.join(unknown)}; choose among {', '.join(SPACE)}")
    return {name: SPACE[name] for name in wanted}


def tune(
    datasets: Sequence[Dataset],
    base: Settings,
    *,
    trials: int = 20,
    prefix: float = 0.5,
    seeds: int = 3,
    finalists: int = 3,
    space: dict[str, tuple[Any, ...]] | None = None,
    k: int | None = None,
    log: Log = print,
) -> Result:
    """Search ``space`` around ``base.model`` (module docstring), replayed as ``base`` says (``seq_len``,
    ``evaluate_batch``; ``k`` defaults to ``base.k``); ``log`` is told each trial's and finalist's figures."""
    import optuna

    if not 0 < prefix < 1:
        raise StreamRecError(f"the prefix is a fraction of each stream between 0 and 1, got {prefix}")
    if not datasets:
        raise StreamRecError("tune needs at least one dataset")
    space = space if space is not None else parse_space(None)
    k = k or base.k
    metric = f"HR@{k}"

    def score(params: dict[str, Any], data: Dataset, seed: int, held_out: bool) -> float:
        update = {**params, "seed": seed, "exclude_seen": data.exclude_seen}
        settings = ModelSettings.model_validate({**base.model.model_dump(), **update})  # (validated as any settings)
        cut = data.cut(prefix)
        events = data.events if held_out else data.events[:cut]
        protocol = base.model_copy(update={"model": settings})
        models = {"model": make_recommender(settings.encoder, settings)}
        report = evaluate(events, models, protocol, ks=(k,), score_from=cut if held_out else 0)
        return float(report["models"]["model"][metric])

    reference = {data.name: score({}, data, base.model.seed, held_out=False) for data in datasets}
    log("defaults on the search parts: " + ", ".join(f"{n} {metric} {v:.4f}" for n, v in reference.items()))

    def objective(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
        logs = []
        for step, data in enumerate(datasets):
            value = score(params, data, base.model.seed, held_out=False)
            logs.append(math.log(max(value, 1e-6) / max(reference[data.name], 1e-6)))
            trial.report(math.exp(statistics.fmean(logs)), step)
            if trial.should_prune():
                log(f"trial {trial.number}: pruned after {data.name} ({_show(params)})")
                raise optuna.TrialPruned()
        relative = math.exp(statistics.fmean(logs))
        log(f"trial {trial.number}: {relative:.4f} x the defaults ({_show(params)})")
        return relative

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.model.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
    )
    study.optimize(objective, n_trials=trials)
    done = sorted(
        (t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
        key=lambda t: t.value if t.value is not None else -math.inf,
        reverse=True,
    )
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    candidates: list[dict[str, Any]] = [{}] + [dict(t.params) for t in done[:finalists]]
    result = Result(best={}, trials=len(study.trials), pruned=pruned)
    best, best_value = {}, -math.inf
    for params in candidates:
        figures = {
            data.name: [score(params, data, base.model.seed + s, held_out=True) for s in range(seeds)]
            for data in datasets
        }
        result.held_out.append((params, figures))
        logs = [math.log(max(statistics.fmean(v), 1e-6)) for v in figures.values()]
        value = statistics.fmean(logs)
        log(f"held out: {_show(params) or 'the defaults'}: " + "; ".join(
            f"{n} {metric} {statistics.fmean(v):.4f} +- {statistics.pstdev(v):.4f}" for n, v in figures.items()
        ))  # fmt: skip
        if value > best_value:
            best, best_value = params, value
    result.best = best
    return result


def write_settings(path: str | Path, params: dict[str, Any], comment: str) -> Path:
    """``params`` as a settings file: one ``STREAM_REC_MODEL__<NAME>=<value>`` line each, after ``comment``."""
    path = Path(path)
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"STREAM_REC_MODEL__{name.upper()}={_value(value)}" for name, value in sorted(params.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _suggest(trial: Any, name: str, spec: tuple[Any, ...]) -> Any:
    kind, *rest = spec
    if kind == "log":
        return trial.suggest_float(name, rest[0], rest[1], log=True)
    if kind == "float":
        return trial.suggest_float(name, rest[0], rest[1])
    if kind == "int":
        return trial.suggest_int(name, rest[0], rest[1])
    return trial.suggest_categorical(name, list(rest))


def _value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _show(params: dict[str, Any]) -> str:
    return ", ".join(f"{name}={_value(value)}" for name, value in params.items())
