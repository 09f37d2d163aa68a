"""The row-indexed sparse Adagrad: torch's Adagrad update on the touched rows, from a chosen starting sum."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stream_rec.learning.learner import OnlineLearner
from stream_rec.learning.optim import SparseAdagrad
from stream_rec.settings import ModelSettings


@pytest.mark.parametrize("start", [0.0, 0.1])
def test_matches_torch_adagrad_on_the_rows_a_step_touches(start: float) -> None:
    torch.manual_seed(0)
    ours, theirs = nn.Embedding(10, 4, sparse=True), nn.Embedding(10, 4, sparse=True)
    theirs.weight.data.copy_(ours.weight.data)
    opt_ours = SparseAdagrad(ours.parameters(), lr=0.1, initial_accumulator_value=start)
    opt_theirs = torch.optim.Adagrad(theirs.parameters(), lr=0.1, initial_accumulator_value=start, eps=1e-10)
    untouched = ours.weight.data[9].clone()
    for rows in ([1, 2, 2], [2, 5], [1]):
        for module, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            (module(torch.tensor(rows)) ** 2).sum().backward()
            opt.step()
    assert torch.allclose(ours.weight, theirs.weight, atol=1e-6)
    assert torch.equal(ours.weight.data[9], untouched)


def test_a_starting_sum_damps_a_rows_first_step() -> None:
    steps = []
    for start in (0.0, 1.0):
        table = nn.Embedding(3, 2, sparse=True)
        before = table.weight.data[1].clone()
        opt = SparseAdagrad(table.parameters(), lr=0.1, initial_accumulator_value=start)
        (table(torch.tensor([1])).sum() * 0.01).backward()  # a small gradient
        opt.step()
        steps.append((table.weight.data[1] - before).abs().max().item())
    assert steps[0] == pytest.approx(0.1) and steps[1] < 0.01  # from 0 the full learning rate, whatever the size


def test_rows_the_tables_grow_by_and_evicted_rows_start_from_the_starting_sum() -> None:
    learner = OnlineLearner(ModelSettings(dim=8, accumulator_init=0.5, capacity=5000))
    learner.tables.grow_to(3000)
    sums = learner.updater.optimizers[0].state[learner.model.item_emb.weight]["sum"]
    assert sums.shape[0] == 3000 and torch.all(sums[2000:] == 0.5)
    sums[7] = 9.0
    learner.tables.reset_rows([7])
    assert torch.all(learner.updater.optimizers[0].state[learner.model.item_emb.weight]["sum"][7] == 0.5)
