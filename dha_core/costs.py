"""Parameter and FLOP counting for networks and candidate ops."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_flops"]


def count_params(module: nn.Module, exclude: tuple[str, ...] = ()) -> int:
    """Number of parameters (buffers excluded).

    Args:
        module: The network.
        exclude: Name prefixes to leave out, e.g. ``("auxiliary",)``.
    """
    return sum(p.numel() for n, p in module.named_parameters() if not n.startswith(exclude))


@torch.no_grad()
def count_flops(module: nn.Module, *inputs: Any) -> int:
    """FLOPs of one eval-mode forward pass, counted by :class:`torch.utils.flop_counter.FlopCounterMode`.

    Counts 2 FLOPs per multiply-accumulate, as ``FlopCounterMode`` does.
    """
    was_training = module.training
    module.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())
