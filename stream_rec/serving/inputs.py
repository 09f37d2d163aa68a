"""What the model's head reads on a batch, for ranking (scoring.py) and for the learner's training alike: the
evidence counting offers (evidence.py), the mixture's gates, and the known rows of the histories' steps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..items import evidence
from ..items.features import Batch, Repeats
from ..items.transitions import Transitions
from ..items.vocab import Vocabulary
from ..model import SequenceModel
from ..sequences import Step
from ..settings import ModelSettings

__all__ = ["evidence_of", "modes", "seen_rows", "without"]


def evidence_of(
    settings: ModelSettings,
    histories: Sequence[Sequence[Step]],
    vocab: Vocabulary,
    memory: Transitions,
    left_out: Sequence[Step | None] | None = None,
) -> evidence.Evidence:
    """The evidence counting offers for ``histories`` (evidence.py), as ``settings`` say (none where it is off)."""
    if not settings.evidence:
        histories = [[] for _ in histories]
    return evidence.gather(
        histories, vocab, memory, groups=settings.groups, left_out=left_out, window=settings.evidence_window
    )


def modes(
    model: SequenceModel, user: torch.Tensor, repeats: Repeats, offered: evidence.Evidence
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixture's gates on a batch: log gates ``[B, 3]`` (repeat, offered, new) and the own items' repeat scores
    ``[N]``; a user without own items has repeat gate -inf, one without offered items offered gate -inf."""
    n = len(user)
    available = torch.ones(n, 3, dtype=torch.bool)
    available[:, :2] = False
    available[repeats.batch, 0] = True
    available[torch.from_numpy(offered.batch), 1] = True
    # How much each mode has to go on: the user's distinct items, and the items counting offers.
    counts = torch.stack(
        [
            torch.bincount(repeats.batch, minlength=n).float(),
            torch.bincount(torch.from_numpy(offered.batch), minlength=n).float(),
        ],
        dim=1,
    )
    return model.head(user, available, torch.log1p(counts), repeats.positions, repeats.events, repeats.counts)


def seen_rows(
    histories: Sequence[Sequence[Step]], vocab: Vocabulary, batch: Batch | None
) -> tuple[np.ndarray, np.ndarray]:
    """The known rows of every step of ``histories`` with each one's history, ``(owner [N], rows [N])``: read from
    ``batch`` (their encoding) where it holds every step, else looked up in ``vocab``."""
    if batch is None or any(len(h) > batch.items.shape[1] for h in histories):
        rows = np.asarray(vocab.rows_of([s.item for h in histories for s in h]), dtype=np.int64)
        owner = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    else:
        owner, col = np.nonzero(batch.real_steps())
        rows = batch.items.numpy()[owner, col]
    known = rows != 0
    return owner[known], rows[known]


def without(offered: evidence.Evidence, owner: np.ndarray, rows: np.ndarray, n_rows: int) -> evidence.Evidence:
    """``offered`` less the pairs ``(owner [M], rows [M])`` (items never to be ranked for that history)."""
    if not len(owner) or not len(offered.rows):
        return offered
    keep = ~np.isin(offered.batch * n_rows + offered.rows, owner * n_rows + rows)
    return evidence.Evidence(offered.batch[keep], offered.rows[keep], offered.values[keep])
