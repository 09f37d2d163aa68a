"""A serving snapshot as it travels between processes: raw arrays (the weights and the prepared item tables) and
what changed in the vocabulary and the transition counts since the last one packed (all of it, for the first), so
that a snapshot of 100,000 items does not cross whole each time. Over the pipe to a learning process
(learning/process.py), and as bytes over the model-updates topic between a trainer and its serving workers
(:func:`to_bytes`, :func:`from_bytes`: a JSON header and the arrays' raw bytes, never unpickled; :func:`parts` cuts
them to fit the broker's messages)."""

from __future__ import annotations

import copy
import struct
from typing import Any

import numpy as np
import orjson
import torch

from ..items.evidence import GROUP_ITEMS, LIMIT
from ..items.transitions import Transitions
from ..items.vocab import Vocabulary
from ..model import SequenceModel
from ..serving.scoring import Scorer
from ..settings import ModelSettings

__all__ = ["PART_BYTES", "Packer", "Unpacker", "from_bytes", "parts", "to_bytes", "warm_up"]

ROW_DIFF_FROM = 512  # rows from which a table goes as its changed rows (see Packer)
PART_BYTES = 512 * 1024  # under a broker's default largest message (1 MB), with room for the headers
_DTYPES = frozenset({"float32", "float64", "int64", "int32", "int8", "uint8", "bool"})  # what the arrays are


class Packer:
    """The sending side: a snapshot as arrays, and what changed since the last one packed. Of a table of at least
    :data:`ROW_DIFF_FROM` rows (the items', the hashed context and feature buckets') only the rows that changed go,
    with their row numbers under ``NAME@rows``; the header's ``rows`` gives each such table's length."""

    def __init__(self) -> None:
        self._vocab: Vocabulary | None = None
        self._transitions: Transitions | None = None
        self._last: dict[str, np.ndarray] = {}  # the tables as last packed

    def pack(self, scorer: Scorer) -> tuple[dict[str, Any], list[np.ndarray]]:
        weight, bias = scorer.prepared()
        vocab = scorer.vocab
        arrays = {name: value.detach().numpy() for name, value in scorer.model.state_dict().items()}
        arrays |= {"tables.weight": weight, "tables.bias": bias, "vocab.counts": vocab.counts,
                   "vocab.last_seen": vocab.last_seen}  # fmt: skip
        arrays, lengths = self._changed_rows(arrays)
        header = {
            "settings": scorer.settings.model_dump(mode="json"),  # the learner's: a resumed one keeps its own
            "steps": scorer.steps, "ts": scorer.ts,
            "arrays": [(name, str(a.dtype), a.shape) for name, a in arrays.items()],
            "sizes": [a.nbytes for a in arrays.values()],
            "vocab": vocab.changes_since(self._vocab),
            "transitions": scorer.transitions.changes_since(self._transitions),
            "rows": lengths,
        }  # fmt: skip
        self._vocab, self._transitions = vocab, scorer.transitions
        return header, [np.ascontiguousarray(a) for a in arrays.values()]

    def _changed_rows(self, arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        out: dict[str, np.ndarray] = {}
        lengths: dict[str, int] = {}
        for name, a in arrays.items():
            if a.ndim == 0 or len(a) < ROW_DIFF_FROM:
                out[name] = a
                continue
            before = self._last.get(name)
            self._last[name] = a.copy()
            if before is None or before.dtype != a.dtype or before.shape[1:] != a.shape[1:]:
                out[name] = a
                continue
            n = min(len(before), len(a))
            changed = np.flatnonzero((before[:n] != a[:n]).reshape(n, -1).any(axis=1))
            rows = np.concatenate([changed, np.arange(n, len(a))]).astype(np.int64)
            out[name], out[f"{name}@rows"], lengths[name] = a[rows], rows, len(a)
        return out, lengths


class Unpacker:
    """The worker's side: the vocabulary and transition counts kept in step with the child's, and scorers."""

    def __init__(self) -> None:
        self.vocab = Vocabulary()
        self.transitions = Transitions(LIMIT, GROUP_ITEMS)
        self.settings: ModelSettings | None = None  # the learner's, as its snapshots say
        self._settings_seen: dict[str, Any] | None = None
        self._skeleton: SequenceModel | None = None  # the model's modules, on the meta device
        self._last: dict[str, np.ndarray] = {}  # the tables as last unpacked (never changed: new ones are made)

    def unpack(self, header: dict[str, Any], buffers: list[bytearray]) -> Scorer:
        arrays = {
            name: np.frombuffer(buffer, dtype=dtype).reshape(shape)
            for (name, dtype, shape), buffer in zip(header["arrays"], buffers, strict=True)
        }
        for name, length in header.get("rows", {}).items():
            before, rows, values = self._last.get(name), arrays.pop(f"{name}@rows"), arrays[name]
            if before is None:
                raise ValueError(f"the changed rows of {name} came without the table they change")
            table = np.empty((length, *before.shape[1:]), dtype=before.dtype)
            n = min(len(before), length)
            table[:n] = before[:n]
            table[rows] = values
            arrays[name] = table
        self._last = {name: a for name, a in arrays.items() if a.ndim and len(a) >= ROW_DIFF_FROM}
        self.vocab.apply(header["vocab"], arrays.pop("vocab.counts"), arrays.pop("vocab.last_seen"))
        self.transitions.apply(header["transitions"])
        tables = arrays.pop("tables.weight"), arrays.pop("tables.bias")
        if self.settings is None or header["settings"] != self._settings_seen:
            self.settings = ModelSettings.model_validate(header["settings"])
            self._settings_seen, self._skeleton = header["settings"], None
        s, rows = self.settings, arrays["item_emb.weight"].shape[0]
        if self._skeleton is None or self._skeleton.item_emb.num_embeddings != rows:
            with torch.device("meta"):  # no weights made only to be replaced
                self._skeleton = SequenceModel(rows, s.dim, s.encoder, s.fusion, s.max_len, s.bptt)
        model = copy.deepcopy(self._skeleton)  # a copy of tensors without data: a fifth of making a new one
        model.load_state_dict({name: torch.from_numpy(a) for name, a in arrays.items()}, assign=True)
        return Scorer(
            s, model, self.vocab.copy(), self.transitions.snapshot(), steps=header["steps"], ts=header["ts"],
            tables=tables,
        )  # fmt: skip


def warm_up(settings: ModelSettings) -> None:
    """Make a model on the meta device once, as :meth:`Unpacker.unpack` does: the first time in a process, torch
    registers what the meta device needs, which holds the interpreter for seconds. Done at start, not while
    serving."""
    with torch.device("meta"):
        SequenceModel(1, settings.dim, settings.encoder, settings.fusion, settings.max_len, settings.bptt)


def to_bytes(header: dict[str, Any], arrays: list[np.ndarray]) -> bytes:
    """One packed snapshot as bytes: the header's length, the header as JSON, the arrays' bytes in order."""
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([struct.pack(">I", len(head)), head, *(a.tobytes() for a in arrays)])


def from_bytes(data: bytes) -> tuple[dict[str, Any], list[bytearray]]:
    """The header and array buffers of :func:`to_bytes`; bytes that are not one raise ``ValueError``."""
    if len(data) < 4:
        raise ValueError("a model update shorter than its header's length")
    (n,) = struct.unpack(">I", data[:4])
    try:
        header = orjson.loads(data[4 : 4 + n])
        shapes, sizes = header["arrays"], header["sizes"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise ValueError(f"a model update's header cannot be read ({exc})") from None
    if not isinstance(header, dict) or len(shapes) != len(sizes) or any(d not in _DTYPES for _, d, _ in shapes):
        raise ValueError("a model update's header does not describe its arrays")
    body, buffers, at = memoryview(data)[4 + n :], [], 0
    if sum(sizes) != len(body):
        raise ValueError(f"a model update holds {len(body)} bytes of arrays where its header says {sum(sizes)}")
    for size in sizes:
        buffers.append(bytearray(body[at : at + size]))
        at += size
    return header, buffers


def parts(data: bytes, size: int = PART_BYTES) -> list[bytes]:
    """``data`` cut into messages of at most ``size`` bytes (one, for nothing)."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]
