"""Pure: the items a training step's softmax runs over.

While the vocabulary is small, every item (a full softmax); then the batch's targets plus ``negatives`` items
drawn by popularity (counts to the power 0.75, as word2vec draws), with the log-Q correction: each candidate's
log chance of being in the set is subtracted from its logit, so that the sampled softmax estimates the full one.
"""

from __future__ import annotations

import numpy as np
import torch

from .vocab import Vocabulary

__all__ = ["candidates"]


def candidates(
    vocab: Vocabulary, targets: torch.Tensor, negatives: int, full_below: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidate rows (sorted), each target's position among them, and their log sampling odds.

    >>> v = Vocabulary()
    >>> _ = v.observe(["a", "b", "b", "c"])
    >>> rows, labels, log_q = candidates(v, torch.tensor([2, 3]), 1024, 20_000, torch.Generator())
    >>> rows.tolist(), labels.tolist(), log_q.tolist()
    ([1, 2, 3], [1, 2], [0.0, 0.0, 0.0])
    """
    if len(vocab) <= full_below or negatives == 0:
        active = torch.from_numpy(np.delete(np.arange(vocab.rows), vocab.inactive_rows()))  # sorted
        return active, torch.searchsorted(active, targets), torch.zeros(len(active))
    counts = torch.from_numpy(vocab.counts[: vocab.rows]).float()
    weights = counts.pow(0.75)
    weights[0] = 0.0
    drawn = torch.multinomial(weights, negatives, replacement=True, generator=generator)
    rows, inverse = torch.unique(torch.cat([targets, drawn]), return_inverse=True)
    # log-Q correction: the log of each candidate's chance to be in the set (a draw or a batch target).
    p_draw = weights[rows] / weights.sum()
    p_target = counts[rows] / counts.sum()
    miss = (1 - p_draw).pow(negatives) * (1 - p_target).pow(len(targets))
    log_q = torch.log1p(-miss).clamp(min=-30.0)
    return rows, inverse[: len(targets)], log_q
