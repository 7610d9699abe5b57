"""dha_plugins.spaces.common.costs: what the latency timer feeds the op it times."""

from __future__ import annotations

import torch
from torch import nn

from dha_plugins.spaces.common.costs import _latency


class _RecordInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x * self.scale


def test_latency_times_a_fixed_input_without_drawing_from_the_global_rng() -> None:
    """The timer feeds zeros (random inputs were measured and gave slower searched cells,
    docs/relaxations.md) and leaves the run's random stream alone."""
    op = _RecordInput().eval()
    state = torch.get_rng_state()
    seconds = _latency(op, (4, 3, 8, 8), None, repeats=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert seconds > 0 and len(op.seen) == 3 and not op.training and op.scale.grad is None
    assert all(x.shape == (4, 3, 8, 8) and not x.any() for x in op.seen)
