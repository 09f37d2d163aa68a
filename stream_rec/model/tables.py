"""The item tables kept in step with the vocabulary: rows for new items, fresh rows for evicted ones.

The vocabulary (vocab.py) decides which item has which row; :class:`ItemTables` makes the model's per-item tables
(embeddings, biases, counts, side-feature tokens) and the optimizers' per-row state follow: grown by doubling up
to the capacity, an evicted row reset for the item that takes it. The learner's tables have optimizers; a
serving snapshot's have none (it only gives rows to the items of the histories it ranks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..items.features import Batch, encode_histories, item_tokens
from ..items.vocab import Vocabulary
from ..sequences import Step
from . import SequenceModel

__all__ = ["ItemTables"]


class ItemTables:
    """``model``'s item tables (and ``optimizers``' state for them) in step with ``vocab``."""

    def __init__(
        self,
        model: SequenceModel,
        vocab: Vocabulary,
        capacity: int,
        generator: torch.Generator,
        optimizers: Sequence[torch.optim.Optimizer] = (),
    ) -> None:
        self.model, self.vocab, self.capacity = model, vocab, capacity
        self.generator, self.optimizers = generator, list(optimizers)

    def observe(self, steps: Sequence[Step]) -> list[str]:
        """Count a sighting of each step's item, make room and note side features; return the items evicted."""
        self.make_room(self.vocab.observe([step.item for step in steps]))
        self.record_features(steps)
        return self.vocab.take_gone()

    def reserve(self, histories: Sequence[Sequence[Step]], batch: Batch, max_len: int) -> tuple[Batch, list[int]]:
        """Give rows to the items of ``histories`` that the vocabulary has not admitted yet (a user's events since
        the last learn call), so that they are encoded and can be ranked (the repeat mode needs only the row).
        ``batch`` encodes ``histories``: only its unknown steps are looked up again; returned with their rows, and
        the rows whose item or side features changed."""
        items = batch.items.numpy()
        b, col = np.nonzero((items == 0) & batch.real_steps())
        length = items.shape[1]
        unknown = [histories[i][-length:][j].item for i, j in zip(b.tolist(), col.tolist(), strict=True)]
        evicted = self.vocab.reserve(unknown) if unknown else []
        self.make_room(evicted)
        newest = [h[-1] for h in histories if h]
        self.record_features(newest)
        changed = [*evicted, *self.vocab.rows_of(unknown), *self.vocab.rows_of(s.item for s in newest if s.features)]
        if evicted:  # rows of items the batch holds were handed on: look every step up again
            return encode_histories(histories, self.vocab, max_len), changed
        if unknown:
            items[b, col] = self.vocab.rows_of(unknown)  # (the batch's tensor shares this memory)
        return batch, changed

    def record_features(self, steps: Sequence[Step]) -> None:
        """Note the side-feature tokens of the items of ``steps`` (the newest features an item came with)."""
        described = [s for s in steps if s.features]
        if described:
            rows = torch.tensor(self.vocab.rows_of([s.item for s in described]))
            tokens = torch.tensor([item_tokens(s) for s in described])
            known = rows != 0
            self.model.item_tokens[rows[known]] = tokens[known]

    def make_room(self, evicted: list[int]) -> None:
        """Grow the tables to the vocabulary's rows; give evicted rows a fresh start."""
        if self.vocab.rows > self.model.item_emb.num_embeddings:
            old = self.model.item_emb.num_embeddings
            self.grow_to(min(max(2 * old, self.vocab.rows), self.capacity + 1))
        if evicted:
            self.reset_rows(evicted)

    def grow_to(self, new: int) -> None:
        """Make the item tables ``new`` rows long (no shorter than now), keeping weights and optimizer state."""
        model = self.model
        old = model.item_emb.num_embeddings
        if new <= old:
            return
        for module, std in ((model.item_emb, 0.05), (model.item_bias, 0.0)):
            w_old = module.weight
            w_new = nn.Parameter(torch.randn(new, w_old.shape[1], generator=self.generator) * std)
            w_new.data[:old] = w_old.data
            module.weight = w_new
            module.num_embeddings = new
            for opt in self.optimizers:
                for group in opt.param_groups:
                    group["params"] = [w_new if p is w_old else p for p in group["params"]]
                state = opt.state.pop(w_old, None)
                if state is not None:
                    for key, value in state.items():
                        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == old:
                            grown = torch.full((new, *value.shape[1:]), _fresh(opt, key), dtype=value.dtype)
                            grown[:old] = value
                            state[key] = grown
                    opt.state[w_new] = state
        model.item_count = torch.cat([model.item_count, torch.zeros(new - old)])
        tokens = model.item_tokens
        model.item_tokens = torch.cat([tokens, torch.zeros((new - old, tokens.shape[1]), dtype=tokens.dtype)])

    def reset_rows(self, rows: list[int]) -> None:
        """Give evicted rows a fresh start for the items that will take them."""
        model, index = self.model, torch.tensor(rows)
        with torch.no_grad():
            dim = model.item_emb.weight.shape[1]
            model.item_emb.weight[index] = torch.randn(len(rows), dim, generator=self.generator) * 0.05
            model.item_bias.weight[index] = 0.0
            model.item_count[index] = 0.0
            model.item_tokens[index] = 0
        for opt in self.optimizers:
            for param in (model.item_emb.weight, model.item_bias.weight):
                for key, value in opt.state.get(param, {}).items():
                    if torch.is_tensor(value) and value.dim() > 0:
                        value[index] = _fresh(opt, key)


def _fresh(optimizer: torch.optim.Optimizer, key: str) -> float:
    """The value a new row starts with in an optimizer's per-row state ``key`` (Adagrad's ``sum`` may not be 0)."""
    return float(optimizer.defaults.get("initial_accumulator_value", 0.0)) if key == "sum" else 0.0
