"""``relax=uniform``: equal, fixed mixing weights and no architecture learning.

A baseline for "train the whole supernet" and a cheap stand-in in tests. Its selection is
not learned: per group it keeps the first ``keep`` edges with their first op that is not
the group's ``none`` op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import ArchRelaxation, ArchStepContext
from dha_core.types import ChoiceGroup, MixingWeights, SelectedOp, Selection


class UniformConfig(ComponentConfig):
    """No fields: the weights are fixed at ``1 / num_ops``."""


class UniformRelaxation(ArchRelaxation):
    """Dense ``1 / num_ops`` weights on every edge; nothing to learn."""

    bilevel = False

    def __init__(self, config: UniformConfig) -> None:
        super().__init__()
        self.config = config
        self.groups: list[ChoiceGroup] = []

    def setup(self, groups: Sequence[ChoiceGroup], space: Any = None) -> None:
        self.groups = list(groups)
        for g in self.groups:
            self.register_buffer(f"w_{len(self._buffers)}", torch.full(g.shape, 1.0 / len(g.ops)))

    def mixing_weights(self) -> MixingWeights:
        values = {g.name: buf for g, buf in zip(self.groups, self._buffers.values(), strict=True)}
        return MixingWeights(values, {g.name: None for g in self.groups})

    def selection(self) -> Selection:
        out: Selection = {}
        for g in self.groups:
            op = next((i for i, name in enumerate(g.ops) if name != g.none_op), 0)
            out[g.name] = [SelectedOp(e, op, 1.0) for e in range(min(g.keep, len(g.edges)))]
        return out

    def arch_step(self, ctx: ArchStepContext) -> dict[str, float]:
        return {}


def create_uniform(config: UniformConfig) -> UniformRelaxation:
    """Fixed equal weights; no architecture learning (baseline and test stand-in)."""
    return UniformRelaxation(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("relax", "uniform", create_uniform, config=UniformConfig)
