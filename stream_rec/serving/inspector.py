"""What the web view's inspector reads from a serving snapshot: the share of each of the model's modes in an
item's probability for a user, and an item's nearest neighbours by the model's item vectors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..items.features import NO_REPEATS, repeats_of
from ..model.head import segment_log_softmax
from ..sequences import Step
from .inputs import modes
from .scoring import Scorer

__all__ = ["MODES", "mode_probabilities", "mode_shares", "similar"]

MODES = ("own", "transitions", "explore")  # the parts of an item's probability, as the web view names them


def mode_shares(scorer: Scorer, history: Sequence[Step], items: Sequence[str]) -> dict[str, dict[str, float]]:
    """For each of ``items`` this copy knows, the share of each mode of the mixture in its probability for
    ``history``: ``own`` (a return to the user's own items), ``transitions`` (what the evidence of counting
    brings: what followed or went with the user's last items elsewhere, the category's popular items),
    ``explore`` (the sequence model's own scores over the whole catalogue) (:func:`mode_probabilities`)."""
    rows = {item: scorer.vocab.index(item) for item in items if scorer.vocab.index(item)}
    if not history or not rows:
        return {}
    parts = mode_probabilities(scorer, history)
    out = {}
    for item, row in rows.items():
        p = [float(part[row]) for part in parts]
        whole = sum(p) or 1.0
        out[item] = {name: round(v / whole, 4) for name, v in zip(MODES, p, strict=True)}
    return out


@torch.no_grad()
def mode_probabilities(scorer: Scorer, history: Sequence[Step]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each part ``[rows]`` of every row's probability for a non-empty ``history`` (float64): the repeat mode's
    (own items); and the new mode's, split into what the evidence of counting brings (an offered item's
    probability times ``1 - exp(-add)`` for what its evidence adds) and the rest. They sum to the softmax of
    what :meth:`Scorer.scores` ranks by without the mixture, and to ``exp`` of it with the mixture on."""
    with scorer.lock:
        batch, user, _ = scorer.encode_batch([history])
        u, weight, bias = scorer._score_tables(user)
        base = torch.from_numpy(u @ weight.T + bias)[0].double()  # [rows]
        offered = scorer.evidence([history])
        add = scorer.model.head.evidence_scores(
            user, torch.from_numpy(offered.batch), torch.from_numpy(offered.values)
        ).double()
        base[torch.from_numpy(offered.rows)] += add
        new = torch.softmax(base, dim=0)
        follow = torch.zeros_like(base)
        rows = torch.from_numpy(offered.rows)
        follow[rows] = new[rows] * -torch.expm1(-add.clamp(min=0.0))
        own = torch.zeros_like(base)
        if not scorer.settings.mixture:
            return own, follow, new - follow
        r = repeats_of(batch) if scorer.repeats else NO_REPEATS
        log_gates, choice = modes(scorer.model, user, r, offered)
    gates = log_gates[0].double().exp()
    if len(r.rows):
        own.index_add_(0, r.rows, gates[0] * segment_log_softmax(choice, r.batch, 1).double().exp())
    chosen = torch.zeros_like(base)  # the offered mode: a softmax over the offered items alone
    if len(rows):
        ratio = float((scorer.model.head.offered_scale() / scorer.model.head.explore_scale()).detach())
        chosen[rows] = torch.softmax((base[rows] - add) * ratio + add, dim=0)
    return own, gates[1] * chosen + gates[2] * follow, gates[2] * (new - follow)


@torch.no_grad()
def similar(scorer: Scorer, item: str, n: int = 10) -> list[tuple[str, float]]:
    """The ``n`` items whose vectors are nearest ``item``'s (cosine), nearest first; [] for an unknown item."""
    row = scorer.vocab.index(item)
    if not row:
        return []
    with scorer.lock:
        active = torch.from_numpy(scorer.vocab.active_rows())
        vectors = torch.nn.functional.normalize(scorer.model.item_vectors(active), dim=1)
        mine = torch.nn.functional.normalize(scorer.model.item_vectors(torch.tensor([row])), dim=1)[0]
    cosine = vectors @ mine
    cosine[active == row] = -math.inf
    top = torch.topk(cosine, min(n, len(active) - 1))
    return [
        (scorer.vocab.item(int(active[i])) or "", round(float(v), 4))
        for i, v in zip(top.indices, top.values, strict=True)
    ]
