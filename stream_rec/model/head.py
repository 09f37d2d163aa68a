"""The head: does the user come back to one of their own items, or go on to a new one, and which?

On e-commerce data people return to items they viewed minutes ago; a next-new-item model cannot see that. As
in RepeatNet (Ren et al., AAAI 2019), the next item comes from a mixture of modes, each with its own
distribution over items:

- *repeat*: one of the user's history items, chosen by a softmax over them, scored from the recency of each
  item's newest occurrence, the event type there (a cart or a purchase says more than a view) and how often it
  occurs. It starts as "recent items first" (a plain next-item softmax does not find that on its own);
- *new*: a softmax over the whole vocabulary of the sequence model's logits, at a learned scale, plus the
  evidence of counting (evidence.py: what followed the user's last items, what went with them, the category's
  popular items), each feature at a learned weight, and those weights moved per user by the user vector's
  direction. A log-linear mixture of experts: the sequence model learns what the counts miss, and the weights
  learn how far to trust each count on the data at hand;
- *offered*: one of the items the evidence offers, by a softmax over them alone, of their evidence plus the
  sequence model's logits at a scale of its own (small to start with). Its gate is the chance that the next
  item is among the offered ones at all: a softmax over the whole vocabulary spreads mass over thousands of
  items that each counted nothing, and left alone it let popular items nobody's history pointed to outrank the
  few the counts offered, which sequential rules rank first (docs/benchmarks/history.md, 2026-12-08).

The gates come from the user vector's direction (a softmax over the modes available for the user) and from how
much each mode has to go on, so the model learns from the data whether users repeat; they start even. The head
(gates, repeat scores, the scale and the evidence weights) learns from new events only, the way it will be
served: the sequence model also learns from replayed events, whose answers it has seen, and grows surer of
itself than it is on new ones. The scale calibrates it (a temperature, as Guo et al., "On calibration of modern
neural networks", ICML 2017, fit one on held-out data).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..items.evidence import FEATURES
from ..wire.events import EVENT_TYPES

__all__ = ["EVIDENCE", "MODES", "Head", "evidence_start", "segment_log_softmax"]

MODES = ("repeat", "offered", "new")
EVIDENCE = 2  # inputs of the gates beside the user vector: how much each mode has to go on
# The evidence weights start where counting alone ranks well (each source's log weight counts, being offered a
# little), so that the stream's first events are ranked sensibly while the weights learn.
_EVIDENCE_START = {"next": 1.0, "next_in": 0.5, "next2": 0.5, "next2_in": 0.25, "together": 1.0,
                   "together_in": 0.5, "group": 0.5, "group_in": 0.25}  # fmt: skip


_OFFERED_SCALE_START = -3.0


def evidence_start() -> list[float]:
    """The evidence weights the head starts with, in the order of :data:`~stream_rec.items.evidence.FEATURES`."""
    return [_EVIDENCE_START[name] for name in FEATURES]


def segment_log_softmax(scores: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """``log_softmax`` of ``scores`` [N] within each segment (``segments`` [N] holds each score's segment).

    >>> out = segment_log_softmax(torch.tensor([0.0, 0.0, 5.0]), torch.tensor([0, 0, 1]), 2)
    >>> [round(x, 4) for x in out.exp().tolist()]
    [0.5, 0.5, 1.0]
    """
    top = torch.full((n_segments,), -math.inf).scatter_reduce(0, segments, scores.detach(), "amax")
    shifted = scores - top[segments]
    sums = torch.zeros(n_segments).index_add(0, segments, shifted.exp())
    return shifted - sums.log()[segments]


class Head(nn.Module):
    """The gates over :data:`MODES`, the repeat mode's scores and the new mode's evidence scores."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        # Newest first: position 0 is the last step. The score falls with log recency, at a learned slope (every
        # example teaches it, so it calibrates fast), plus a learned correction per position (deep positions are
        # rare, so those learn slowly: a steep decay held there by its start would bury a user's older items).
        self.log_position = nn.Parameter(torch.tensor(-2.0))
        self.position = nn.Parameter(torch.zeros(max_len))
        self.event = nn.Parameter(torch.zeros(len(EVENT_TYPES) + 1))
        self.count = nn.Parameter(torch.zeros(1))
        self.gate = nn.Linear(dim, len(MODES))
        self.gate_evidence = nn.Linear(EVIDENCE, len(MODES), bias=False)
        for layer in (self.gate, self.gate_evidence):
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.gate.bias)  # an even mix to start with
        # The new mode: the sequence model's logits times exp(this), plus the evidence's features at these weights
        # (and the user's own shift of them, from the user vector's direction: none to start with).
        self.log_explore_scale = nn.Parameter(torch.zeros(1))
        # The offered mode ranks the offered items by their evidence and the sequence model's logits at a scale of
        # their own, which starts small: the first events are ranked as counting ranks them, and the logits earn
        # their weight among the offered items as the encoder learns.
        self.log_offered_scale = nn.Parameter(torch.tensor([_OFFERED_SCALE_START]))
        self.evidence = nn.Parameter(torch.tensor(evidence_start()))
        self.evidence_user = nn.Linear(dim, len(FEATURES), bias=False)
        nn.init.zeros_(self.evidence_user.weight)

    def offered_scale(self) -> torch.Tensor:
        """What the sequence model's logits are multiplied by in the offered mode (e^-3 to start with)."""
        return self.log_offered_scale.exp()

    def explore_scale(self) -> torch.Tensor:
        """What the sequence model's logits are multiplied by in the new mode (1 to start with)."""
        return self.log_explore_scale.exp()

    def evidence_scores(self, user: torch.Tensor, batch: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``[N]``: what the evidence adds to the new mode's logit of each offered item (``values`` ``[N, F]``, the
        features of :data:`~stream_rec.items.evidence.FEATURES`, for the users ``batch`` ``[N]`` of ``user``
        ``[B, D]``)."""
        weights = self.evidence + self.evidence_user(nn.functional.normalize(user, dim=-1))  # [B, F]
        return (values * weights[batch]).sum(dim=-1)

    def forward(
        self,
        user: torch.Tensor,
        available: torch.Tensor,
        evidence: torch.Tensor,
        positions: torch.Tensor,
        events: torch.Tensor,
        counts: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log gates [B, M], scores [N])``: each user's log gate per mode of :data:`MODES` (``available``
        ``[B, M]`` says which modes a user has; the others get none), and each history item's repeat score.
        ``evidence`` ``[B, EVIDENCE]`` is what the modes have to go on (log counts: the user's distinct items,
        the items counting offers): the gates weigh it beside the user vector's direction."""
        scores = (
            self.log_position * torch.log1p(positions.float())
            + self.position[positions]
            + self.event[events]
            + self.count * torch.log(counts.float())
        )
        # The direction only: Adagrad moves each weight by up to its rate whatever the gradient, and on user vectors of
        # length 10-17 one step could swing a gate's logit by 10, every user's top 10 to one mode
        # (docs/benchmarks/history.md).
        direction = nn.functional.normalize(user, dim=-1)
        gates = (self.gate(direction) + self.gate_evidence(evidence)).masked_fill(~available, float("-inf"))  # [B, M]
        return torch.log_softmax(gates, dim=-1), scores
