"""The sequence model: items, event types and time gaps through an encoder (encoders.py), fused with the context.

Only ``forward`` lives here; the learner owns the loss, the optimizer and the step (STYLE.md rule 3).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..items.features import CONTEXT_BUCKETS, MAX_ITEM_TOKENS, Batch
from ..wire.events import EVENT_TYPES
from .encoders import Encoder, make_encoder
from .head import Head

__all__ = ["Encoder", "Fusion", "SequenceModel"]

Fusion = Literal["concat", "weighted", "attention"]


class SequenceModel(nn.Module):
    item_count: torch.Tensor  # a buffer: each item row's count so far
    item_tokens: torch.Tensor  # a buffer: each item row's side-feature tokens [rows, MAX_ITEM_TOKENS]
    """Encode a batch of histories into user vectors in the item embedding space.

    ``forward`` returns the user vectors ``[B, D]`` and, per history step, the weight it had in the result
    ``[B, L]`` (attention weights for the attention fusion, all zero otherwise).
    """

    def __init__(
        self,
        rows: int,
        dim: int = 64,
        encoder: Encoder = "lstm",
        fusion: Fusion = "attention",
        max_len: int = 50,
        bptt: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.fusion = fusion
        # Sparse tables (items, context and item-feature buckets): a step touches only the rows of its batch.
        self.item_emb = nn.Embedding(rows, dim, padding_idx=0, sparse=True)
        self.item_bias = nn.Embedding(rows, 1, padding_idx=0, sparse=True)
        # Each item's count so far (the learner keeps it) and the weight of log(1 + count) in its score.
        self.register_buffer("item_count", torch.zeros(rows))
        self.popularity = nn.Parameter(torch.zeros(1))
        # Each item's side-feature tokens (the learner records them): an item is scored by its own vector plus its
        # features' (category), so a rarely seen item inherits what its category learned.
        self.register_buffer("item_tokens", torch.zeros(rows, MAX_ITEM_TOKENS, dtype=torch.long))
        self.event_emb = nn.Embedding(len(EVENT_TYPES) + 1, dim, padding_idx=0)
        self.gap_proj = nn.Linear(1, dim)
        self.context_emb = nn.EmbeddingBag(CONTEXT_BUCKETS, dim, mode="mean", padding_idx=0, sparse=True)
        self.item_feature_emb = nn.EmbeddingBag(CONTEXT_BUCKETS, dim, mode="sum", padding_idx=0, sparse=True)
        self.encoder = make_encoder(encoder, dim, max_len, bptt)
        if fusion == "concat":
            self.fuse = nn.Linear(2 * dim, dim)
        elif fusion == "weighted":
            self.mix = nn.Parameter(torch.zeros(1))  # sigmoid(0) = an even mix to start with
            self.fuse = nn.Linear(dim, dim)
        else:
            self.query = nn.Linear(2 * dim, dim)
            self.fuse = nn.Linear(2 * dim, dim)
        self.head = Head(dim, max_len)  # the modes and their evidence: the learner's scores use it
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Every input starts on the item embeddings' scale: torch's N(0, 1) event and context embeddings (and a
        # gap projection of that size) would drown the items the encoder is there to read.
        for table in (self.item_emb, self.event_emb, self.context_emb, self.item_feature_emb):
            nn.init.normal_(table.weight, std=0.05)
        nn.init.normal_(self.gap_proj.weight, std=0.05)
        nn.init.zeros_(self.gap_proj.bias)
        nn.init.zeros_(self.item_bias.weight)
        with torch.no_grad():
            for table in (self.item_emb, self.event_emb, self.context_emb, self.item_feature_emb):
                table.weight[0].zero_()  # padding

    def item_vectors(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """The vectors items are scored by: each item's own embedding plus its side features' (sparse gradients)."""
        own = self.item_emb.weight[rows] if isinstance(rows, slice) else self.item_emb(rows)
        tokens = self.item_tokens[rows]
        if not bool(tokens.any()):
            return own
        return own + self.item_feature_emb(tokens)

    def item_prior(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """The popularity prior of ``rows`` in their scores: the learned weight times log(1 + count)."""
        return self.popularity * torch.log1p(self.item_count[rows])

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        b, length = batch.items.shape
        lengths = batch.lengths  # [B]
        valid = torch.arange(length) < lengths.unsqueeze(1)  # [B, L]: histories are right-padded
        pad = ~valid | (batch.items == 0)  # [B, L]: padding, or an item with no embedding (yet)
        x = self.item_emb(batch.items) + self.event_emb(batch.events) + self.gap_proj(batch.gaps.unsqueeze(-1))
        # Item side features (a category): they carry what an item is before its own embedding has learned it.
        x = x + self.item_feature_emb(batch.item_features.view(b * length, -1)).view(b, length, -1)
        x = x.masked_fill(~valid.unsqueeze(-1), 0.0)  # [B, L, D]
        out = self.encoder(x, batch.items, lengths)  # [B, L, D]; padding never read
        last = out[torch.arange(b), lengths - 1]  # [B, D]: the output at each history's newest step
        ctx = self.context_emb(batch.context)  # [B, D]
        weights = torch.zeros_like(batch.gaps)  # [B, L]
        if self.fusion == "concat":
            user = self.fuse(torch.cat([last, ctx], dim=-1))
        elif self.fusion == "weighted":
            mix = torch.sigmoid(self.mix)
            user = self.fuse(mix * last + (1 - mix) * ctx)
        else:
            q = self.query(torch.cat([last, ctx], dim=-1))  # [B, D]
            scores = torch.einsum("bld,bd->bl", out, q) / self.dim**0.5
            weights = torch.softmax(scores.masked_fill(pad, float("-inf")), dim=-1).nan_to_num(0.0)
            pooled = torch.einsum("bl,bld->bd", weights, out)
            user = self.fuse(torch.cat([pooled, last], dim=-1))
        return user, weights
