"""The pieces of a step's loss beyond the softmax: the repeat / new mixture, the seen mask, the item affinity.

learner.py's step puts them together; model/head.py says what the mixture is and how it is served.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..items import evidence
from ..items.features import Batch, repeats_of
from ..items.vocab import Vocabulary
from ..model import SequenceModel
from ..model.head import segment_log_softmax
from ..sequences import Example
from ..serving.inputs import modes, seen_rows
from ..serving.scoring import COSINE_SCALE

__all__ = ["affinity", "mixture", "seen_mask"]


def affinity(scoring: str, user: torch.Tensor, emb: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` scores of items (``emb`` [C, D], ``bias`` [C]) for users (``[B, D]``), per the ``scoring``
    setting (cosine: scaled, as the serving snapshot scores)."""
    if scoring == "cosine":
        return COSINE_SCALE * F.normalize(user, dim=-1) @ F.normalize(emb, dim=-1).T + bias
    return user @ emb.T + bias


def mixture(
    model: SequenceModel,
    user: torch.Tensor,
    batch: Batch,
    offered: evidence.Evidence,
    targets: torch.Tensor,
    log_p_new: torch.Tensor,
    log_p_head: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each target under the repeat / new mixture (model/head.py): ``[B]`` with the head
    held fixed, from the new mode's ``log_p_new`` (for the sequence model to learn from), and ``[n_fresh]`` with
    the head learning, from ``log_p_head`` (the new mode's with the head's weights)."""
    b, n_fresh = len(targets), len(log_p_head)
    repeats = repeats_of(batch)
    log_gates, scores = modes(model, user, repeats, offered)
    log_p_repeat = torch.full((b,), -math.inf)
    if len(scores):
        log_choice = segment_log_softmax(scores, repeats.batch, b)  # [N]
        is_target = repeats.rows == targets[repeats.batch]  # [N]: at most one per history
        log_p_repeat = log_p_repeat.index_put((repeats.batch[is_target],), log_choice[is_target])
    # An unavailable mode has gate -inf: nothing added.
    held = torch.stack([log_p_repeat.detach(), log_p_new], dim=1)  # [B, 2]
    head = torch.stack([log_p_repeat[:n_fresh], log_p_head], dim=1)  # [n_fresh, 2]
    return (
        torch.logsumexp(log_gates.detach() + held, dim=1),
        torch.logsumexp(log_gates[:n_fresh] + head, dim=1),
    )


def seen_mask(
    examples: Sequence[Example], vocab: Vocabulary, batch: Batch, candidates: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """``[B, C]``: True where a candidate is one of the example's history items (never its target).

    Where seen items are never recommended (exclude_seen), pushing them down teaches the model nothing it will use.
    """
    owner, seen = seen_rows([h for h, _ in examples], vocab, batch)
    mask = torch.zeros(len(examples), len(candidates), dtype=torch.bool)
    if len(seen):
        seen_t, owner_t = torch.from_numpy(seen), torch.from_numpy(owner)
        at = torch.searchsorted(candidates, seen_t).clamp(max=len(candidates) - 1)  # candidates are sorted
        hit = candidates[at] == seen_t
        mask[owner_t[hit], at[hit]] = True
    mask[torch.arange(len(examples)), labels] = False
    return mask
