"""Helpers for the search-space tests: random selections and the mixing weights they imply."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

from dha_core.types import ChoiceGroup, MixingWeights, SelectedOp, Selection


def random_selection(groups: Sequence[ChoiceGroup], seed: int, weight_range: tuple[float, float] = (0.5, 1.5),
                     per_group: int | None = None) -> Selection:
    """``keep`` (or ``per_group``) distinct random (edge, op) pairs per group, never the none op."""
    rng = random.Random(seed)
    selection: Selection = {}
    for g in groups:
        pairs = [(e, o) for e in range(len(g.edges)) for o, name in enumerate(g.ops) if name != g.none_op]
        k = min(per_group or g.keep, len(pairs))
        selection[g.name] = [SelectedOp(e, o, rng.uniform(*weight_range)) for e, o in rng.sample(pairs, k)]
    return selection


def weights_for(groups: Sequence[ChoiceGroup], selection: Selection, sparse: bool = True) -> MixingWeights:
    """Mixing weights equal to each selected op's weight and zero elsewhere."""
    values = {}
    active = {}
    for g in groups:
        w = torch.zeros(g.shape)
        for s in selection[g.name]:
            w[s.edge, s.op] = s.weight
        values[g.name] = w
        active[g.name] = [(s.edge, s.op) for s in selection[g.name]] if sparse else None
    return MixingWeights(values, active)


def logits_of(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def settle(net: nn.Module, x: torch.Tensor, weights: MixingWeights | None = None, steps: int = 2) -> None:
    """Gives every batch-norm non-trivial statistics and affine values, so that equality
    tests cannot pass just because every layer is still at its initial state."""
    gen = torch.Generator().manual_seed(123)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d) and m.affine:
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    was = net.training
    net.train()
    for _ in range(steps):
        net(x, weights) if weights is not None else net(x)
    net.train(was)
