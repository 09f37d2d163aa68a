"""Checkpoints of the online learner: weights, optimizer state, vocabulary and the offsets learned up to.

One file per checkpoint, in the safetensors format: the tensors (model weights, optimizer state, the torch
generator, the transition counts) are raw arrays and everything else (settings, vocabulary, optimizer
hyper-parameters, counters, the consumed offsets) is JSON in the file's header. Loading parses arrays and JSON
only: nothing is unpickled, so a checkpoint from elsewhere cannot run code. A file is written beside its final
name, flushed to disk and renamed over it, so a crash leaves the previous checkpoint or the new one, never half
of one. Its header carries a SHA-256 digest of every tensor's bytes and every header field, verified on load, so
a damaged file (truncated, emptied, a changed byte anywhere) is a :class:`CheckpointError`, never a silently
wrong model; :func:`load_newest` then moves it aside and takes the next newest.

The drift detector comes back as it was (river's ADWIN window, as the bytes of its own serialisation, and the
steps left at a raised learning rate), and so does the replay buffer (its examples' steps as columns), so
a restored learner goes on learning exactly as the original would have.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import CheckpointError
from .learner import Example, OnlineLearner
from .sequences import Step
from .settings import ModelSettings
from .vocab import Vocabulary

__all__ = ["FORMAT", "Snapshot", "candidates", "latest", "load", "load_newest", "save", "snapshot", "write"]

log = logging.getLogger(__name__)

FORMAT = "stream-rec-checkpoint/4"  # 2: the popularity prior; 3: item feature tokens, the repeat slope; 4: digest
_PREFIX, _SUFFIX = "checkpoint-", ".safetensors"
_NAME = re.compile(r"checkpoint-(\d{1,18})\.safetensors")
DAMAGED = ".damaged"  # a damaged checkpoint is renamed to <name>.damaged, kept for a look but never read again


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A learner's state at one moment, copied out of it: it can be written while the learner learns on."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    replay: list[Example]  # packed into columns by ``write``: the slow part, so not done while the learner waits


def save(learner: OnlineLearner, path: str | Path, *, offsets: dict[str, int] | None = None) -> Path:
    """Write ``learner`` (and ``offsets``, e.g. ``{"events:0": 1234}``: next offset per topic:partition) atomically."""
    return write(snapshot(learner, offsets=offsets), path)


def snapshot(learner: OnlineLearner, *, offsets: dict[str, int] | None = None) -> Snapshot:
    """Copies of everything a checkpoint holds (tens of milliseconds at 100,000 items: no packing, no disk)."""
    tensors = {f"model.{name}": _copy(value) for name, value in learner.model.state_dict().items()}
    optimizers = []
    for j, opt in enumerate(learner.optimizers):
        state = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, values in state["state"].items():
            for key, value in values.items():
                if torch.is_tensor(value):
                    tensors[f"opt{j}.{index}.{key}"] = _copy(value)
                else:
                    scalars.setdefault(str(index), {})[key] = value
        optimizers.append({"param_groups": state["param_groups"], "scalars": scalars})
    tensors["rng.torch"] = learner._gen.get_state()
    pairs = [(prev, row, n) for prev, followers in learner.transitions.items() for row, n in followers.items()]
    tensors["transitions"] = torch.tensor(pairs, dtype=torch.long).reshape(-1, 3)  # [P, 3]: prev, next, count
    counters = {
        "steps": learner.steps, "skipped_steps": learner.skipped_steps, "examples": learner.examples,
        "drifts": learner.drifts, "boost_left": learner._boost_left, "last_loss": learner.last_loss,
    }  # fmt: skip
    if learner._drift is not None:
        # river keeps ADWIN's window in Rust; its own serialisation is plain bytes (bincode), read back below.
        tensors["drift.adwin"] = torch.frombuffer(bytearray(learner._drift._helper.__getstate__()), dtype=torch.uint8)
        counters["drift_detected"] = learner._drift.drift_detected
    metadata = {
        "format": FORMAT,
        "settings": learner.settings.model_dump_json(),
        "vocab": json.dumps(learner.vocab.state_dict()),
        "optimizers": json.dumps(optimizers),
        "learner": json.dumps({**counters, "rng": learner._rng.getstate()}),
        "offsets": json.dumps(offsets or {}),
    }
    return Snapshot(tensors, metadata, list(learner.replay))  # examples are never changed once made


def _copy(value: torch.Tensor) -> torch.Tensor:
    return value.detach().clone(memory_format=torch.contiguous_format)


def write(state: Snapshot, path: str | Path) -> Path:
    """Write a snapshot to ``path`` atomically: beside it, flushed to disk, then renamed over it."""
    path = Path(path)
    tensors = {**state.tensors, **_pack_replay(state.replay)} if state.replay else state.tensors
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    metadata = {**state.metadata, "digest": _digest(tensors, state.metadata)}
    save_file(tensors, str(tmp), metadata=metadata)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(path: str | Path, settings: ModelSettings | None = None) -> tuple[OnlineLearner, dict[str, int]]:
    """The learner a checkpoint holds, and its offsets. ``settings`` may change what does not shape the state
    (threads, learning rate, ...); by default the checkpoint's own settings are used."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    found = metadata.get("format", "")
    if found.startswith("stream-rec-checkpoint/") and found != FORMAT:
        raise CheckpointError(
            f"{path} is an older checkpoint ({found}); this version reads {FORMAT}: move it away to start afresh"
        )
    if found != FORMAT:
        raise CheckpointError(f"{path} is not a stream-rec checkpoint ({FORMAT})")
    fields = {key: value for key, value in metadata.items() if key != "digest"}
    if metadata.get("digest") != _digest(tensors, fields):
        raise CheckpointError(f"{path} is damaged: its contents do not match the digest it was written with")
    try:
        return _restore(tensors, metadata, path, settings)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        # The digest matched, so the file is as written: a file of another model or a bug, not damage.
        raise CheckpointError(f"{path} cannot be restored: {exc!r}") from None


def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 over every header field and every tensor (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for key in sorted(metadata):
        h.update(orjson.dumps([key, metadata[key]]))
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(orjson.dumps([name, str(t.dtype), list(t.shape)]))
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def _restore(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: str | Path, settings: ModelSettings | None
) -> tuple[OnlineLearner, dict[str, int]]:
    saved = ModelSettings.model_validate_json(metadata["settings"])
    learner = OnlineLearner(settings or saved)
    learner.vocab = Vocabulary.from_state_dict(json.loads(metadata["vocab"]))
    learner.grow_to(tensors["model.item_emb.weight"].shape[0])
    learner.model.load_state_dict({key[6:]: value for key, value in tensors.items() if key.startswith("model.")})
    for j, (opt, saved_opt) in enumerate(zip(learner.optimizers, json.loads(metadata["optimizers"]), strict=True)):
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(f"opt{j}."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for index, scalars in saved_opt["scalars"].items():
            state.setdefault(int(index), {}).update(scalars)
        opt.load_state_dict({"state": state, "param_groups": saved_opt["param_groups"]})
    learner._gen.set_state(tensors["rng.torch"])
    for prev, row, n in tensors["transitions"].tolist():
        learner.transitions.setdefault(prev, Counter())[row] = n
    counters = json.loads(metadata["learner"])
    learner.steps, learner.skipped_steps, learner.examples = (
        counters["steps"], counters["skipped_steps"], counters["examples"]
    )  # fmt: skip
    learner.drifts = counters.get("drifts", 0)
    learner._boost_left = counters.get("boost_left", 0)
    learner.last_loss = counters.get("last_loss", math.nan)
    if learner._drift is not None and "drift.adwin" in tensors:
        _restore_drift(learner, bytes(tensors["drift.adwin"].numpy()), counters.get("drift_detected", False), path)
    if "replay.json.zlib" in tensors:
        learner.replay = _unpack_replay(tensors, path)[: learner.settings.replay_size]
    version, internal, gauss = counters["rng"]
    learner._rng.setstate((version, tuple(internal), gauss))
    return learner, {str(k): int(v) for k, v in json.loads(metadata["offsets"]).items()}


def _restore_drift(learner: OnlineLearner, window: bytes, detected: bool, path: str | Path) -> None:
    """Put ADWIN's saved window back; malformed bytes are a clear error (river's Rust code panics on them)."""
    assert learner._drift is not None
    try:
        learner._drift._helper.__setstate__(window)
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise CheckpointError(f"{path}: the drift detector's state cannot be read ({exc})") from None
    learner._drift._drift_detected = detected


_REPLAY_MAX_BYTES = 1 << 30  # inflated: a damaged or hostile blob cannot take all memory


def _pack_replay(replay: list[Example]) -> dict[str, torch.Tensor]:
    """The replay buffer as columns: every example's steps, its event last, one after another.

    ``replay.lengths`` holds each example's number of steps, ``replay.ts`` their times, ``replay.codes`` each
    step's event type, context and item features as indices into lists of the distinct ones, which go with the
    item and user ids into one zlib-compressed JSON object (``replay.json.zlib``). Distinct contexts are few, so
    the file stays small and reading it back makes a few dicts, not one per step.
    """
    with _no_gc():
        steps = [step for history, event in replay for step in (*history, event)]
        events, event_codes = _distinct([s.event for s in steps])
        contexts, context_codes = _distinct([_json_or_none(s.context) for s in steps])
        features, feature_codes = _distinct([_json_or_none(s.features) for s in steps])
        strings = {
            "item": [s.item for s in steps], "user": [s.user for s in steps], "event": events,
            "context": contexts, "features": features,
        }  # fmt: skip
    return {
        "replay.lengths": torch.tensor([len(history) + 1 for history, _ in replay], dtype=torch.int32),
        "replay.ts": torch.tensor([s.ts for s in steps], dtype=torch.float64),
        "replay.codes": torch.tensor([event_codes, context_codes, feature_codes], dtype=torch.int32).reshape(3, -1),
        "replay.json.zlib": torch.frombuffer(bytearray(zlib.compress(orjson.dumps(strings), 1)), dtype=torch.uint8),
    }


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    # As text: orjson's bytes keep a larger buffer, and a million of them at once took seconds to allocate.
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Without the cyclic collector, which would rescan the growing heap of a million new tuples many times."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _distinct(values: list[Any]) -> tuple[list[Any], list[int]]:
    """The distinct values in order of appearance, and each value's index among them."""
    index: dict[Any, int] = {}
    codes = [index.setdefault(value, len(index)) for value in values]
    return list(index), codes


def _unpack_replay(tensors: dict[str, torch.Tensor], path: str | Path) -> list[Example]:
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(bytes(tensors["replay.json.zlib"].numpy()), _REPLAY_MAX_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"over {_REPLAY_MAX_BYTES} bytes inflated")
        strings = orjson.loads(data)
        items, users, events = strings["item"], strings["user"], strings["event"]
        contexts = [None if c is None else orjson.loads(c) for c in strings["context"]]
        features = [None if f is None else orjson.loads(f) for f in strings["features"]]
        lengths, ts, codes = tensors["replay.lengths"].tolist(), tensors["replay.ts"].tolist(), tensors["replay.codes"]
        if codes.dtype != torch.int32 or codes.dim() != 2 or codes.shape[0] != 3 or min(lengths, default=1) < 1:
            raise ValueError("its step codes or lengths are malformed")
        if not len(items) == len(users) == len(ts) == codes.shape[1] == sum(lengths):
            raise ValueError("its columns disagree in length")
        if not all(isinstance(value, str) for value in (*items, *events)):
            raise ValueError("item ids and event types must be strings")
        if not all(value is None or isinstance(value, dict) for value in (*contexts, *features)):
            raise ValueError("contexts and item features must be objects")
        sizes = torch.tensor([len(events), len(contexts), len(features)], dtype=torch.int32).unsqueeze(1)
        if bool(((codes < 0) | (codes >= sizes)).any()):
            raise ValueError("a step refers to a value that is not there")
    except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the replay buffer cannot be read ({exc})") from None
    event_codes, context_codes, feature_codes = codes.tolist()
    with _no_gc():
        steps = [
            Step(item, events[e], t, contexts[c], features[f], user)
            for item, e, t, c, f, user in zip(items, event_codes, ts, context_codes, feature_codes, users, strict=True)
        ]
        replay: list[Example] = []
        start = 0
        for n in lengths:
            replay.append((steps[start : start + n - 1], steps[start + n - 1]))
            start += n
    return replay


def candidates(folder: str | Path) -> list[Path]:
    """The checkpoint files in ``folder``, newest (highest step count in the name) first; other files are ignored."""
    found = []
    for path in Path(folder).glob(f"{_PREFIX}*{_SUFFIX}"):
        match = _NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def latest(folder: str | Path) -> Path | None:
    """The newest checkpoint file in ``folder`` (by the step count in its name), if any."""
    found = candidates(folder)
    return found[0] if found else None


def load_newest(
    folder: str | Path, settings: ModelSettings | None = None
) -> tuple[OnlineLearner, dict[str, int], Path] | None:
    """The newest checkpoint of ``folder`` that loads, with its offsets and path (None where none does).

    A damaged one is logged as a warning, renamed to ``<name>.damaged`` (so that it is neither tried again nor
    counted among the checkpoints kept) and the next newest is tried.
    """
    for path in candidates(folder):
        try:
            learner, offsets = load(path, settings)
        except CheckpointError as exc:
            aside = path.with_name(path.name + DAMAGED)
            log.warning("skipped checkpoint %s, moved aside to %s: %s", path.name, aside.name, exc)
            with suppress(OSError):
                os.replace(path, aside)
            continue
        return learner, offsets, path
    return None


def path_for(folder: str | Path, steps: int) -> Path:
    return Path(folder) / f"{_PREFIX}{steps:012d}{_SUFFIX}"
