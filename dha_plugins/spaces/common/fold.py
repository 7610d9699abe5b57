"""Folding a constant output scale into the affine batch-norm that ends an op.

A mixed edge computes ``w * op(x)``. When ``op`` ends in an affine batch-norm,
``w * (gamma * x_hat + beta) == (w * gamma) * x_hat + (w * beta)`` holds exactly in both
train and eval mode (the normalisation does not depend on ``gamma``), so the scale can be
moved into the layer and the op keeps no trace of the mixing weight. Ops without such a
layer (identity, pooling, non-affine batch-norm) keep an explicit scale buffer instead.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["last_affine_bn", "fold_scale_into"]


def last_affine_bn(op: nn.Module) -> nn.BatchNorm2d | None:
    """The affine batch-norm that produces ``op``'s output, if there is one.

    An ``nn.Sequential`` is followed to its last layer; any other module qualifies only
    when it declares ``bn_is_output = True`` and holds the layer as ``bn``. Anything
    applied after the batch-norm would break the folding identity, so other modules give
    ``None``.

    Args:
        op: A candidate op.

    Returns:
        The batch-norm layer, or ``None`` when the output is not an affine batch-norm.
    """
    if isinstance(op, nn.BatchNorm2d):
        return op if op.affine else None
    if isinstance(op, nn.Sequential):
        return last_affine_bn(op[-1]) if len(op) else None
    if getattr(op, "bn_is_output", False) and isinstance(getattr(op, "bn", None), nn.Module):
        return last_affine_bn(op.bn)
    return None


@torch.no_grad()
def fold_scale_into(bn: nn.BatchNorm2d, scale: float | torch.Tensor) -> None:
    """Multiplies ``bn``'s output by ``scale`` by rescaling its affine parameters in place.

    Args:
        bn: An affine batch-norm layer.
        scale: The factor (a Python number or a 0-d tensor).
    """
    factor = torch.as_tensor(scale, dtype=bn.weight.dtype, device=bn.weight.device)
    bn.weight.mul_(factor)
    bn.bias.mul_(factor)
