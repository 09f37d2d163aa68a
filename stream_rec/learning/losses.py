"""The pieces of a step's loss beyond the softmax: the mixture of modes, the seen mask, the item affinity.

learner.py's step puts them together; model/head.py says what the mixture is and how it is served.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..items import evidence
from ..items.features import NO_REPEATS, Batch, repeats_of
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
    batch: Batch | None,
    offered: evidence.Evidence,
    targets: torch.Tensor,
    at: tuple[torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    new_logits: tuple[torch.Tensor, torch.Tensor],
    offered_logits: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each target (its vocabulary row in ``targets``, its candidate column in ``labels``)
    under the mixture of the repeat, offered and new modes (model/head.py): ``[B]`` with the head held fixed, for
    the sequence model to learn from, and ``[n_fresh]`` with the head learning. ``new_logits`` are the new mode's,
    ``[B, C]`` and ``[n_fresh, C]`` over the candidates; ``offered_logits`` the offered mode's, ``[N]`` each, of
    the offered items at ``at`` ``(history, candidate column)``. ``batch`` is None where the repeat mode is off."""
    b, n_fresh = len(targets), len(new_logits[1])
    rows = torch.arange(b)
    log_p_new = F.log_softmax(new_logits[0], dim=1)[rows, labels]
    log_p_head = F.log_softmax(new_logits[1], dim=1)[rows[:n_fresh], labels[:n_fresh]]
    repeats = repeats_of(batch) if batch is not None else NO_REPEATS
    log_gates, scores = modes(model, user, repeats, offered)
    log_p_repeat = torch.full((b,), -math.inf)
    if len(scores):
        log_choice = segment_log_softmax(scores, repeats.batch, b)  # [N]
        is_target = repeats.rows == targets[repeats.batch]  # [N]: at most one per history
        log_p_repeat = log_p_repeat.index_put((repeats.batch[is_target],), log_choice[is_target])
    fresh = at[0] < n_fresh
    log_p_offered = _offered(offered_logits[0], at, labels, b)
    log_p_offered_head = _offered(offered_logits[1][fresh], (at[0][fresh], at[1][fresh]), labels, n_fresh)
    # An unavailable mode has gate -inf: nothing added.
    held = torch.stack([log_p_repeat.detach(), log_p_offered, log_p_new], dim=1)  # [B, 3]
    head = torch.stack([log_p_repeat[:n_fresh], log_p_offered_head, log_p_head], dim=1)  # [n_fresh, 3]
    return (
        torch.logsumexp(log_gates.detach() + held, dim=1),
        torch.logsumexp(log_gates[:n_fresh] + head, dim=1),
    )


def _offered(logits: torch.Tensor, at: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor, n: int) -> torch.Tensor:
    """``[n]``: each target's log-probability in the offered mode, a softmax of the offered items' ``logits``
    within each history (``at``: their histories and candidate columns); -inf where the target is not offered."""
    owner, column = at
    out = torch.full((n,), -math.inf)
    if not len(owner):
        return out
    choice = segment_log_softmax(logits, owner, n)
    is_target = column == labels[owner]
    return out.index_put((owner[is_target],), choice[is_target])


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
