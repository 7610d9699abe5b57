"""The buffer-held Adam of the relaxations matches torch.optim.Adam and survives a reload."""

from __future__ import annotations

import io

import torch
from torch import nn

from dha_plugins.relax.arch_adam import AdamState


def test_matches_torch_adam_with_l2_weight_decay() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = nn.Parameter(torch.randn(3, 4, generator=gen))
    ours = nn.Parameter(ref.detach().clone())
    opt = torch.optim.Adam([ref], lr=0.05, betas=(0.5, 0.999), eps=1e-8, weight_decay=1e-2)
    state = AdamState(ours)
    for _ in range(7):
        g = torch.randn(3, 4, generator=gen)
        ref.grad = g.clone()
        opt.step()
        state.step(ours, g, lr=0.05, betas=(0.5, 0.999), eps=1e-8, weight_decay=1e-2)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert int(state.steps) == 7


def test_step_count_survives_state_dict_round_trip() -> None:
    p = nn.Parameter(torch.ones(2))
    state = AdamState(p)
    for _ in range(3):
        state.step(p, torch.ones(2), lr=0.1)
    buf = io.BytesIO()
    torch.save(state.state_dict(), buf)
    buf.seek(0)
    fresh = AdamState(p)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    q1, q2 = p.detach().clone(), p.detach().clone()
    state.step(q1, torch.ones(2), lr=0.1)
    fresh.step(q2, torch.ones(2), lr=0.1)
    # Same bias correction (step 4) in both, hence the same update.
    assert torch.equal(q1, q2) and fresh._steps == 4
