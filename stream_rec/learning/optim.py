"""The learner's updates: its optimizers, the learning-rate boost after a drift, and Adagrad for sparse tables.

:class:`Updater` holds one optimizer for the item tables (sparse gradients: a step touches only the rows its batch
reads) and one for the dense weights, the head's at its own learning rate; it clips the dense gradient, and raises
every learning rate by ``drift_boost`` for ``drift_steps`` steps when river's ADWIN sees the running loss rise
(the stream changed).

:class:`SparseAdagrad` is Adagrad for tables with sparse gradients, applied to the rows a step touched and nothing
else.

``torch.optim.Adagrad`` takes sparse gradients too, but goes through sparse-tensor arithmetic (masks, coalesced
sums) that costs several times the update itself on a 100k-row table. This is the same update, row-indexed:
``sum[r] += g[r]**2``, ``w[r] -= lr * g[r] / (sqrt(sum[r]) + eps)``; its state (``sum``, ``step``) is
torch's, so checkpoints save and load it alike.

``sum`` starts at ``initial_accumulator_value`` (torch's name; TensorFlow's Adagrad starts it at 0.1). From 0, a
row's first step moves every weight by the full ``lr`` whatever the gradient's size: an item seen once jumps
as far as one seen a thousand times, and its noise outranks what the popular items learned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..model import SequenceModel
from ..settings import ModelSettings

__all__ = ["SparseAdagrad", "Updater", "sparse_tables"]


def sparse_tables(model: SequenceModel) -> list[torch.Tensor]:
    """The tables with sparse gradients: a step touches only the rows its batch reads."""
    return [model.item_emb.weight, model.item_bias.weight, model.context_emb.weight, model.item_feature_emb.weight]


class Updater:
    """Applies a step's gradients to ``model`` as ``settings`` say (module docstring)."""

    def __init__(self, model: SequenceModel, settings: ModelSettings) -> None:
        self.settings = s = settings
        sparse = sparse_tables(model)
        self.dense = [p for p in model.parameters() if all(p is not q for q in sparse)]
        head = list(model.head.parameters())
        groups: list[dict[str, Any]] = [
            {"params": [p for p in self.dense if all(p is not q for q in head)]},
            {"params": head, "lr": s.head_lr},
        ]
        self.optimizers: list[torch.optim.Optimizer]
        if s.optimizer == "adagrad":
            tables = SparseAdagrad(sparse, lr=s.lr, initial_accumulator_value=s.accumulator_init)
            self.optimizers = [tables, torch.optim.Adagrad(groups, lr=s.lr)]
        else:
            self.optimizers = [torch.optim.SparseAdam(sparse, lr=s.lr), torch.optim.Adam(groups, lr=s.lr)]
        self._base_lr = [[group["lr"] for group in opt.param_groups] for opt in self.optimizers]
        # river (with the scipy its other detectors import) loads here, not at import: a serving worker whose
        # trainer is elsewhere never learns, and starts 1.5 s sooner without it.
        from river import drift

        self.detector = drift.ADWIN() if s.drift else None  # on the running loss
        self.boost_left = 0  # steps left at the boosted learning rate
        self.drifts = 0

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def step(self, loss: float) -> None:
        """Update with the gradients of a step whose loss was ``loss`` (finite), then watch the loss for drift."""
        nn.utils.clip_grad_norm_(self.dense, self.settings.clip)
        boost = self.settings.drift_boost if self.boost_left > 0 else 1.0
        for opt, bases in zip(self.optimizers, self._base_lr, strict=True):
            for group, base in zip(opt.param_groups, bases, strict=True):
                group["lr"] = base * boost
            opt.step()
        self.boost_left = max(0, self.boost_left - 1)
        if self.detector is not None:
            before = self.detector.estimation
            self.detector.update(loss)
            if self.detector.drift_detected and self.detector.estimation > before:  # the loss rose
                self.drifts += 1
                self.boost_left = self.settings.drift_steps

    def drift_window(self) -> tuple[bytes, bool] | None:
        """ADWIN's window as river's own bytes (bincode; river keeps it in Rust), and whether it saw a drift."""
        if self.detector is None:
            return None
        return bytes(self.detector._helper.__getstate__()), self.detector.drift_detected

    def restore_drift(self, window: bytes, detected: bool) -> None:
        """Put a saved window back; malformed bytes are a ``ValueError`` (river's Rust code panics on them)."""
        if self.detector is None:
            return
        try:
            self.detector._helper.__setstate__(window)
        except BaseException as exc:  # pyo3's PanicException derives from BaseException
            if type(exc).__name__ != "PanicException":
                raise
            raise ValueError(f"the drift detector's state cannot be read ({exc})") from None
        self.detector._drift_detected = detected


class SparseAdagrad(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 0.01,
        eps: float = 1e-10,
        initial_accumulator_value: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "eps": eps, "initial_accumulator_value": initial_accumulator_value})
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["sum"] = torch.full_like(p, initial_accumulator_value)
                self.state[p]["step"] = torch.tensor(0.0)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise ValueError("SparseAdagrad is for parameters with sparse gradients")
                grad = p.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                state = self.state[p]
                state["step"] += 1
                total = state["sum"].index_select(0, rows).addcmul_(values, values)
                state["sum"].index_copy_(0, rows, total)
                p.index_add_(0, rows, values / total.sqrt_().add_(group["eps"]), alpha=-group["lr"])
