"""Checkpoints of the online learner: weights, optimizer state, vocabulary and the offsets learned up to.

One file per checkpoint, in the safetensors format: the tensors (model weights, optimizer state, the torch
generator) are raw arrays, the transition counts JSON bytes (a Python loop over their pairs would hold up
serving), and everything else (settings, vocabulary, optimizer hyper-parameters, counters, the consumed offsets)
is JSON in the file's header. Loading parses arrays and JSON
only: nothing is unpickled, so a checkpoint from elsewhere cannot run code. A file is written beside its final
name, flushed to disk and renamed over it, so a crash leaves the previous checkpoint or the new one, never half
of one. Its header carries a SHA-256 digest of every tensor's bytes and every header field, verified on load, so
a damaged file (truncated, emptied, a changed byte anywhere) is a :class:`CheckpointError`, never a silently
wrong model; :func:`load_newest` then moves it aside and takes the next newest.

What is saved is the learner's :meth:`~stream_rec.learning.learner.OnlineLearner.state_dict`: the drift detector comes
back as it was (river's ADWIN window, as the bytes of its own serialisation, and the steps left at a raised
learning rate), and so does the replay buffer (its examples' steps as columns, replay.py), so a restored learner
goes on learning exactly as the original would have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import orjson
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError, SettingsMismatch
from ..settings import ModelSettings
from .learner import OnlineLearner
from .replay import ReplayBuffer

__all__ = [
    "FORMAT", "SHAPING", "Snapshot", "candidates", "check_settings", "latest", "load", "load_newest", "save",
    "snapshot", "write",
]  # fmt: skip

log = logging.getLogger(__name__)

# 2: the popularity prior; 3: item feature tokens, the repeat slope; 4: digest; 5: transition counts as JSON;
# 6: the explore scale, and the mixture head's own learning rate; 7: the head of two modes and the evidence of
# counting (model/head.py, evidence.py), whose weights and counts earlier formats do not have; 8: the offered
# mode, a third gate and its scale
FORMAT = "stream-rec-checkpoint/8"
_READS = {FORMAT}
_PREFIX, _SUFFIX = "checkpoint-", ".safetensors"
_NAME = re.compile(r"checkpoint-(\d{1,18})\.safetensors")
# The model settings that shape the learner's state (its tensors, their optimizer state, its counts): a checkpoint
# made with other values is refused. Every other model setting (learning rates, exclude_seen, replay, ...) is taken
# from the configuration when a checkpoint is loaded, so that the learner, the serving side and the agent read one.
SHAPING = (
    "encoder", "fusion", "dim", "max_len", "capacity", "optimizer", "scoring", "repeat", "evidence", "groups",
    "popularity",
)  # fmt: skip
DAMAGED = ".damaged"  # a damaged checkpoint is renamed to <name>.damaged, kept for a look but never read again


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A learner's state at one moment, copied out of it: it can be written while the learner learns on."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    replay: ReplayBuffer  # packed into columns by ``write``: the slow part, so not done while the learner waits


def save(learner: OnlineLearner, path: str | Path, *, offsets: dict[str, int] | None = None) -> Path:
    """Write ``learner`` (and ``offsets``, e.g. ``{"events:0": 1234}``: next offset per topic:partition) atomically."""
    return write(snapshot(learner, offsets=offsets), path)


def snapshot(learner: OnlineLearner, *, offsets: dict[str, int] | None = None) -> Snapshot:
    """Copies of everything a checkpoint holds (tens of milliseconds at 100,000 items: no packing, no disk)."""
    state = learner.state_dict()
    tensors = dict(state["tensors"])
    if state["drift"] is not None:
        tensors["drift.adwin"] = torch.frombuffer(bytearray(state["drift"]), dtype=torch.uint8)
    tensors["transitions.json"] = torch.frombuffer(bytearray(state["transitions"]), dtype=torch.uint8)
    metadata = {
        "format": FORMAT,
        "settings": state["settings"].model_dump_json(),
        "vocab": orjson.dumps(state["vocab"]).decode(),  # json's own encoder holds the interpreter's lock longer
        "optimizers": json.dumps(state["optimizers"]),
        "learner": json.dumps(state["counters"]),
        "offsets": json.dumps(offsets or {}),
    }
    replay = ReplayBuffer(learner.settings.replay_size)
    replay.examples = state["replay"]
    return Snapshot(tensors, metadata, replay)


def write(state: Snapshot, path: str | Path) -> Path:
    """Write a snapshot to ``path`` atomically: beside it, flushed to disk, then renamed over it."""
    path = Path(path)
    tensors = {**state.tensors, **state.replay.to_tensors()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    metadata = {**state.metadata, "digest": _digest(tensors, state.metadata)}
    save_file(tensors, str(tmp), metadata=metadata)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(path: str | Path, settings: ModelSettings | None = None) -> tuple[OnlineLearner, dict[str, int]]:
    """The learner a checkpoint holds, and its offsets, with ``settings`` where given (by default the checkpoint's
    own). A checkpoint made with other values of the :data:`SHAPING` settings is a :class:`SettingsMismatch`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    found = metadata.get("format", "")
    if found.startswith("stream-rec-checkpoint/") and found not in _READS:
        raise CheckpointError(
            f"{path} is an older checkpoint ({found}); this version reads {' and '.join(sorted(_READS))}: move it "
            "away to start afresh"
        )
    if found not in _READS:
        raise CheckpointError(f"{path} is not a stream-rec checkpoint ({FORMAT})")
    fields = {key: value for key, value in metadata.items() if key != "digest"}
    if metadata.get("digest") != _digest(tensors, fields):
        raise CheckpointError(f"{path} is damaged: its contents do not match the digest it was written with")
    try:
        saved = ModelSettings.model_validate_json(metadata["settings"])
        if settings is not None:
            _refuse_other_shapes(Path(path), saved, settings)
        learner = OnlineLearner(settings or saved)
        replay = ReplayBuffer.from_tensors(tensors, learner.settings.replay_size, path)
        window = tensors.pop("drift.adwin", None)
        vocab = json.loads(metadata["vocab"])
        counts = bytes(tensors.pop("transitions.json").numpy())
        optimizers = json.loads(metadata["optimizers"])
        state = {
            "tensors": tensors, "optimizers": optimizers, "vocab": vocab,
            "counters": json.loads(metadata["learner"]), "drift": None if window is None else bytes(window.numpy()),
            "replay": replay.examples, "transitions": counts,
        }  # fmt: skip
        learner.load_state_dict(state)
        offsets = {str(k): int(v) for k, v in json.loads(metadata["offsets"]).items()}
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        # The digest matched, so the file is as written: a file of another model or a bug, not damage.
        raise CheckpointError(f"{path} cannot be restored: {exc}") from None
    return learner, offsets


def check_settings(folder: str | Path, settings: ModelSettings) -> None:
    """Raise :class:`SettingsMismatch` where the newest checkpoint of ``folder`` was made with other values of the
    :data:`SHAPING` settings; its header only is read (a file that cannot be read is :func:`load_newest`'s)."""
    for path in candidates(folder)[:1]:
        try:
            with safe_open(str(path), framework="pt") as f:
                saved = ModelSettings.model_validate_json((f.metadata() or {})["settings"])
        except (OSError, SafetensorError, ValueError, RuntimeError, KeyError):
            return
        _refuse_other_shapes(path, saved, settings)


def _refuse_other_shapes(path: Path, saved: ModelSettings, configured: ModelSettings) -> None:
    differ = [name for name in SHAPING if getattr(saved, name) != getattr(configured, name)]
    if differ:
        said = ", ".join(f"STREAM_REC_MODEL__{name.upper()}={getattr(saved, name)}" for name in differ)
        configured_as = ", ".join(f"{name} {getattr(configured, name)}" for name in differ)
        raise SettingsMismatch(
            f"the checkpoint {path} was made with {said}, but {configured_as} is configured: set "
            f"{'it' if len(differ) == 1 else 'them'} back, or move the checkpoints of {path.parent} away to start "
            "afresh"
        )


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
    """The newest checkpoint of ``folder`` that loads, with its offsets and path (None where none does), with
    ``settings`` applied as :func:`load` does (a :class:`SettingsMismatch` is raised, not skipped).

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
