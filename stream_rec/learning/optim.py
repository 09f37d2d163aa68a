"""Adagrad for tables with sparse gradients, applied to the rows a step touched and nothing else.

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

import torch

__all__ = ["SparseAdagrad"]


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
