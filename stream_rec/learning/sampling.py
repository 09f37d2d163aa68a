"""Pure: the items a training step's softmax runs over.

While the vocabulary is small, every item (a full softmax); then the batch's targets plus ``negatives`` items
drawn by popularity (counts to the power 0.75, as word2vec draws), with the log-Q correction (:func:`corrected`):
each candidate's log chance of being in the set is subtracted from its logit, so that the sampled softmax
estimates the full one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..items.vocab import Vocabulary

__all__ = ["candidates", "corrected"]


def candidates(
    vocab: Vocabulary,
    targets: torch.Tensor,
    negatives: int,
    full_below: int,
    generator: torch.Generator,
    extra: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidate rows (sorted), each target's position among them, and their log sampling odds; ``extra`` rows
    (the items the evidence offers: the hardest negatives there are) are in the set too.

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
    parts = [targets, drawn] if extra is None else [targets, drawn, extra]
    rows, inverse = torch.unique(torch.cat(parts), return_inverse=True)
    # log-Q correction: the log of each candidate's chance to be in the set (a draw or a batch target).
    p_draw = weights[rows] / weights.sum()
    p_target = counts[rows] / counts.sum()
    miss = (1 - p_draw).pow(negatives) * (1 - p_target).pow(len(targets))
    log_q = torch.log1p(-miss).clamp(min=-30.0)
    return rows, inverse[: len(targets)], log_q


def corrected(
    logits: torch.Tensor,
    log_q: torch.Tensor,
    labels: torch.Tensor,
    certain: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``logits`` ``[B, C]`` over the candidates with the log-Q correction, ``log_q`` ``[C]``, but for each row's
    own target (at ``labels`` ``[B]``) and the ``certain`` pairs ``(rows [N], columns [N])`` (each row's offered
    items): those are in the set for certain. The others' corrections then make the softmax's sum a
    Horvitz-Thompson estimate of the full softmax's, so that the target's probability is not overstated; corrected
    too, a rarely drawn target looked all but certain, and the head (model/head.py) trusted the sequence model far
    more than it earns when ranking over the whole catalogue.

    >>> corrected(torch.zeros(2, 3), torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([0, 2])).tolist()
    [[0.0, 2.0, 3.0], [1.0, 2.0, 0.0]]
    >>> corrected(torch.zeros(1, 3), torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([0]), (torch.tensor([0, 0]),
    ...           torch.tensor([0, 1]))).tolist()
    [[0.0, 0.0, 3.0]]
    """
    if not bool(log_q.any()):
        return logits  # a full softmax: nothing to correct, and three [B, C] copies (and their gradients) saved
    rows = torch.arange(len(labels))
    out = (logits - log_q).index_put((rows, labels), log_q[labels], accumulate=True)
    if certain is not None and len(certain[0]):
        owner, column = certain
        back = torch.where(column == labels[owner], 0.0, log_q[column])  # (a target is put back once)
        out = out.index_put((owner, column), back, accumulate=True)
    return out
