"""A serving snapshot over the pipe between the worker and its learning process (process.py): raw arrays (the
weights and the prepared item tables) and what changed in the vocabulary and the transition counts since the last
one, so that a snapshot of 100,000 items does not cross whole each time."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from ..items.evidence import GROUP_ITEMS, LIMIT
from ..items.transitions import Transitions
from ..items.vocab import Vocabulary
from ..model import SequenceModel
from ..serving.scoring import Scorer
from ..settings import ModelSettings

__all__ = ["Packer", "Unpacker"]


class Packer:
    """The child's side: a snapshot as arrays, and what changed since the last one packed."""

    def __init__(self) -> None:
        self._vocab: Vocabulary | None = None
        self._transitions: Transitions | None = None

    def pack(self, scorer: Scorer) -> tuple[dict[str, Any], list[np.ndarray]]:
        weight, bias = scorer.prepared()
        vocab = scorer.vocab
        arrays = {name: value.detach().numpy() for name, value in scorer.model.state_dict().items()}
        arrays |= {"tables.weight": weight, "tables.bias": bias, "vocab.counts": vocab.counts,
                   "vocab.last_seen": vocab.last_seen}  # fmt: skip
        header = {
            "settings": scorer.settings.model_dump(mode="json"),  # the learner's: a resumed one keeps its own
            "steps": scorer.steps, "ts": scorer.ts,
            "arrays": [(name, str(a.dtype), a.shape) for name, a in arrays.items()],
            "sizes": [a.nbytes for a in arrays.values()],
            "vocab": vocab.changes_since(self._vocab),
            "transitions": scorer.transitions.changes_since(self._transitions),
        }  # fmt: skip
        self._vocab, self._transitions = vocab, scorer.transitions
        return header, [np.ascontiguousarray(a) for a in arrays.values()]


class Unpacker:
    """The worker's side: the vocabulary and transition counts kept in step with the child's, and scorers."""

    def __init__(self) -> None:
        self.vocab = Vocabulary()
        self.transitions = Transitions(LIMIT, GROUP_ITEMS)
        self.settings: ModelSettings | None = None  # the learner's, as its snapshots say
        self._settings_seen: dict[str, Any] | None = None
        self._skeleton: SequenceModel | None = None  # the model's modules, on the meta device

    def unpack(self, header: dict[str, Any], buffers: list[bytearray]) -> Scorer:
        arrays = {
            name: np.frombuffer(buffer, dtype=dtype).reshape(shape)
            for (name, dtype, shape), buffer in zip(header["arrays"], buffers, strict=True)
        }
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
