"""Wraps a standalone network as a supernet with no choices, for retraining stages."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dha_core.interfaces import SupportsDropPath, Supernet
from dha_core.types import MixingWeights

__all__ = ["FixedNetwork"]


class FixedNetwork(Supernet):
    """Presents ``net`` through the supernet interface (mixing weights are ignored)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, weights: MixingWeights | None = None) -> Any:
        return self.net(x)

    def set_drop_path(self, prob: float) -> None:
        if isinstance(self.net, SupportsDropPath):  # a declared, optional capability of children
            self.net.set_drop_path(prob)
