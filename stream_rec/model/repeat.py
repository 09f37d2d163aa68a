"""The mixture head: does the user come back to one of their own items, follow a known transition, or explore?

On e-commerce data people return to items they viewed minutes ago; a next-new-item model cannot see that. As
in RepeatNet (Ren et al., AAAI 2019), the next item comes from a mixture of modes, each with its own
distribution over items:

- *repeat*: one of the user's history items, chosen by a softmax over them, scored from the recency of each
  item's newest occurrence, the event type there (a cart or a purchase says more than a view) and how often it
  occurs. It starts as "recent items first" (a plain next-item softmax does not find that on its own);
- *transition*: an item that went with the user's last items elsewhere in the stream, by count (a Markov memory
  the learner keeps: it remembers rare pairs that embeddings cannot yet), and the most frequent items of the
  user's last item's category (scoring.offered);
- *explore*: the sequence model's softmax over the whole vocabulary, at a learned scale of its logits.

The gates come from the user vector's direction (a softmax over the modes available for the user), so the model
learns how far to trust each mode on the data at hand; they start even. The head (gates, repeat scores, the
explore scale) learns from new events only, the way it will be served: the explore mode also learns from
replayed events, whose answers it has seen, and grows surer of itself than it is on new ones. The scale
calibrates it (a temperature, as Guo et al., "On calibration of modern neural networks", ICML 2017, fit one on
held-out data); without it the gates alone cannot say that the explore mode's top items are worth less than its mass.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..events import EVENT_TYPES

__all__ = ["MODES", "RepeatScore", "segment_log_softmax"]

MODES = ("repeat", "transition", "explore")
EVIDENCE = 2  # inputs of the gates beside the user vector


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


class RepeatScore(nn.Module):
    """Scores of history items for the repeat mode, and the gates over :data:`MODES`."""

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
        # The explore mode's logits are multiplied by exp(this) in the mixture. Registered last: checkpoints of
        # the format before it keep their optimizer state's numbering (checkpoint.py).
        self.log_explore_scale = nn.Parameter(torch.zeros(1))

    def explore_scale(self) -> torch.Tensor:
        """What the explore mode's logits are multiplied by in the mixture (1 to start with)."""
        return self.log_explore_scale.exp()

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
        the transition counts behind the offered items): the gates weigh it beside the user vector's direction."""
        scores = (
            self.log_position * torch.log1p(positions.float())
            + self.position[positions]
            + self.event[events]
            + self.count * torch.log(counts.float())
        )
        # The direction only: Adagrad moves each weight by up to its rate whatever the gradient, and on user vectors of
        # length 10-17 one step could swing a gate's logit by 10, every user's top 10 to one mode (BENCHMARKS.md).
        direction = nn.functional.normalize(user, dim=-1)
        gates = (self.gate(direction) + self.gate_evidence(evidence)).masked_fill(~available, float("-inf"))  # [B, M]
        return torch.log_softmax(gates, dim=-1), scores
