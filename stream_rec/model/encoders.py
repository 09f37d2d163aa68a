"""Sequence encoders: a batch of right-padded step vectors in, one output vector per step out.

Every encoder maps ``x`` ``[B, L, D]`` (step inputs, zero past each history's length), ``items`` ``[B, L]`` (the
steps' vocabulary rows) and ``lengths`` ``[B]`` to ``out`` ``[B, L, D]``, where ``out[b, t]`` has read steps
``0..t`` only, and padding never changes a history's outputs (so a history encodes alike alone or in a batch):

- ``lstm``, ``gru``: recurrent, over packed sequences.
- ``transformer``: a small causal Transformer (pre-norm, learned positions, 2 heads).
- ``graph``: a gated graph network over each history's item-transition graph, in the manner of SR-GNN (Wu et al.,
  AAAI 2019): the distinct items are nodes, consecutive steps are edges (in and out, degree-normalised), a GRU
  cell propagates along them; each step's output is its item's node state plus its own inputs. The graph is of
  the whole history, so this one reads every step (not only ``0..t``): only the newest step's output is used.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["Encoder", "GraphEncoder", "RNNEncoder", "TransformerEncoder", "make_encoder"]

Encoder = Literal["lstm", "gru", "transformer", "graph"]


class RNNEncoder(nn.Module):
    """LSTM or GRU over packed sequences. While training with ``bptt`` > 0, gradients flow back through each
    history's last ``bptt`` steps only (truncated back-propagation through time): the steps before are read
    without a graph and hand their final state on. The outputs are the same either way; the backward pass, most of
    a step's cost, shrinks from the history's length to ``bptt``."""

    def __init__(self, dim: int, kind: Literal["lstm", "gru"], bptt: int = 0) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(dim, dim, batch_first=True)
        self.bptt = bptt

    def forward(self, x: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if self.training and 0 < self.bptt < length and torch.is_grad_enabled():
            return self._truncated(x, lengths)
        return self._run(x, lengths, None)[0]

    def _run(self, x: torch.Tensor, lengths: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Outputs ``[B, L, D]`` and final states of right-padded ``x``, from ``state`` (zeros if None)."""
        length = x.shape[1]
        if bool((lengths == length).all()):
            return self.rnn(x, state)
        # Packed: the encoder never reads the padding.
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed, state)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=length)[0], final

    def _truncated(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        head = (lengths - self.bptt).clamp(min=0)  # [B]: steps read without a graph
        tail = lengths - head  # [B]: the last <= bptt steps, with gradients
        out = x.new_zeros(b, length, dim)
        state: Any = None
        has_head = head > 0
        if bool(has_head.any()):
            rows = has_head.nonzero().squeeze(1)
            with torch.no_grad():
                head_len = int(head.max())
                head_out, final = self._run(x[rows, :head_len], head[rows], None)
            out = out.index_put((rows,), nn.functional.pad(head_out, (0, 0, 0, length - head_len)))
            zeros = x.new_zeros(1, b, dim)
            if isinstance(final, tuple):  # LSTM: (h, c)
                state = tuple(zeros.index_copy(1, rows, part) for part in final)
            else:
                state = zeros.index_copy(1, rows, final)
        # Each history's tail, moved to the left: position t of row b is step head[b] + t.
        steps = head.unsqueeze(1) + torch.arange(self.bptt)  # [B, T]
        valid = torch.arange(self.bptt) < tail.unsqueeze(1)
        steps = torch.where(valid, steps, 0)
        tail_x = x.gather(1, steps.unsqueeze(-1).expand(b, self.bptt, dim)) * valid.unsqueeze(-1)
        tail_out = self._run(tail_x, tail, state)[0]  # [B, T, D]
        # Back after the head (zero there so far); a row's unused tail slots add zeros to its last padding step.
        index = torch.where(valid, steps, length - 1).unsqueeze(-1).expand(b, self.bptt, dim)
        return out.scatter_add(1, index, tail_out * valid.unsqueeze(-1))


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, max_len: int, layers: int = 1, heads: int = 2) -> None:
        super().__init__()
        self.position = nn.Embedding(max_len, dim)
        nn.init.normal_(self.position.weight, std=0.05)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        h = x + self.position(torch.arange(length)).unsqueeze(0)  # [B, L, D]
        # Causal: step t attends to steps 0..t, so the right padding (after every real step) is never read.
        causal = nn.Transformer.generate_square_subsequent_mask(length)
        return self.norm(self.layers(h, mask=causal, is_causal=True))


class GraphEncoder(nn.Module):
    def __init__(self, dim: int, steps: int = 1) -> None:
        super().__init__()
        self.steps = steps
        self.edge_in = nn.Linear(dim, dim)
        self.edge_out = nn.Linear(dim, dim)
        self.cell = nn.GRUCell(2 * dim, dim)

    def forward(self, x: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        alias, adj_in, adj_out, node_steps = _graphs(items, lengths)  # [B, L], [B, N, N] x2, [B, N]
        n = adj_in.shape[1]
        # A node starts as the mean input of the steps at its item.
        flat = (alias + torch.arange(b).unsqueeze(1) * n).flatten()  # [B*L]: each step's node, batch-wide
        valid = (torch.arange(length) < lengths.unsqueeze(1)).flatten()
        h = torch.zeros(b * n, dim).index_add(0, flat[valid], x.reshape(-1, dim)[valid])
        h = (h.view(b, n, dim) / node_steps.clamp(min=1).unsqueeze(-1)).reshape(b * n, dim)
        for _ in range(self.steps):
            hv = h.view(b, n, dim)
            message = torch.cat([adj_in @ self.edge_in(hv), adj_out @ self.edge_out(hv)], dim=-1)  # [B, N, 2D]
            h = self.cell(message.reshape(b * n, 2 * dim), h)
        nodes = h.view(b, n, dim)
        return nodes.gather(1, alias.unsqueeze(-1).expand(b, length, dim)) + x  # [B, L, D]


def _graphs(items: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per history: each step's node (``alias`` [B, L]), the in/out adjacency of its transition graph
    (``[B, N, N]``, rows normalised by degree) and each node's number of steps ``[B, N]``."""
    b, length = items.shape
    aliases, graphs = [], []
    for row, n_steps in zip(items.tolist(), lengths.tolist(), strict=True):
        node: dict[int, int] = {}
        alias = [node.setdefault(item, len(node)) for item in row[:n_steps]]
        aliases.append(alias + [0] * (length - n_steps))
        graphs.append((len(node), alias))
    n = max(size for size, _ in graphs)
    adj_out = torch.zeros(b, n, n)
    counts = torch.zeros(b, n)
    for i, (_, alias) in enumerate(graphs):
        for src, dst in itertools.pairwise(alias):
            adj_out[i, src, dst] = 1.0
        counts[i].index_add_(0, torch.tensor(alias), torch.ones(len(alias)))
    adj_in = adj_out.transpose(1, 2).clone()
    adj_out = adj_out / adj_out.sum(-1, keepdim=True).clamp(min=1)
    adj_in = adj_in / adj_in.sum(-1, keepdim=True).clamp(min=1)
    return torch.tensor(aliases), adj_in, adj_out, counts


def make_encoder(kind: Encoder, dim: int, max_len: int, bptt: int = 0) -> nn.Module:
    if kind in ("lstm", "gru"):
        return RNNEncoder(dim, kind, bptt)
    if kind == "transformer":
        return TransformerEncoder(dim, max_len)
    if kind == "graph":
        return GraphEncoder(dim)
    raise ValueError(f"unknown encoder {kind!r}; use lstm, gru, transformer or graph")
