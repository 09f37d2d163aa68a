"""Encoders: truncated back-propagation through time reads the same as the full pass and cuts the gradient."""

from __future__ import annotations

import pytest
import torch

from stream_rec.model.encoders import RNNEncoder


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_truncated_bptt_gives_the_same_outputs_and_gradients_only_for_the_last_steps(kind: str) -> None:
    torch.manual_seed(0)
    full = RNNEncoder(8, kind, bptt=0)
    truncated = RNNEncoder(8, kind, bptt=3)
    truncated.load_state_dict(full.state_dict())
    lengths = torch.tensor([7, 2, 5, 3])  # longer than bptt, shorter, and exactly bptt
    x = torch.randn(4, 7, 8) * (torch.arange(7) < lengths.unsqueeze(1)).unsqueeze(-1)  # zero past each length
    items = torch.ones(4, 7, dtype=torch.long)
    x_full, x_cut = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_full, out_cut = full(x_full, items, lengths), truncated(x_cut, items, lengths)
    valid = (torch.arange(7) < lengths.unsqueeze(1)).unsqueeze(-1)
    torch.testing.assert_close(out_cut * valid, out_full * valid, atol=1e-5, rtol=1e-5)
    last = out_cut[torch.arange(4), lengths - 1].sum()
    last.backward()
    reached = x_cut.grad.abs().sum(-1) > 0  # [B, L]: steps the gradient reached
    for b, n in enumerate(lengths.tolist()):
        assert reached[b].tolist() == [max(0, n - 3) <= t < n for t in range(7)]
    truncated.eval()
    torch.testing.assert_close(truncated(x, items, lengths) * valid, out_full * valid)  # eval: no truncation
