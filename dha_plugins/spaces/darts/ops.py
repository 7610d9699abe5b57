"""The DARTS candidate ops and the cell building blocks.

The layer layout follows Liu et al., "DARTS: Differentiable Architecture Search" (ICLR
2019), so that an evaluation network built from a DARTS genotype has exactly the
published parameter count. Ops whose output is an affine batch-norm are written as
``nn.Sequential`` so that :func:`~dha_plugins.spaces.common.last_affine_bn` can fold a
mixing weight into them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dha_plugins.spaces.darts.config import DARTS_OPS

__all__ = [
    "DilConv",
    "FactorizedReduce",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "drop_path",
    "is_droppable",
    "make_op",
]


class ReLUConvBN(nn.Sequential):
    """ReLU -> convolution -> batch-norm (cell preprocessing)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise (dilated) convolution -> pointwise convolution -> batch-norm."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked :class:`DilConv` blocks without dilation; only the first one strides."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset 1x1 stride-2 convolutions, concatenated.

    Used for ``skip_connect`` on reduction edges and to preprocess the input that comes
    from before a reduction cell.
    """

    bn_is_output = True

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # For odd sizes, padding the shifted branch by one makes both branches give
        # ceil(size / 2), the size every other stride-2 op produces; for even sizes the pad
        # is zero. Unconditional, so that traced (exported) children carry no shape branch.
        shifted = F.pad(x[:, :, 1:, 1:], (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Zero(nn.Module):
    """DARTS' ``none``: the zero tensor of the output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def make_op(name: str, channels: int, stride: int, affine: bool, pool_bn: bool) -> nn.Module:
    """Builds one candidate op.

    Args:
        name: One of :data:`~dha_plugins.spaces.darts.config.DARTS_OPS`.
        channels: Input and output channels.
        stride: 2 on the input edges of a reduction cell, else 1.
        affine: Affine batch-norm in convolutional ops.
        pool_bn: Follow pooling with a non-affine batch-norm.

    Returns:
        The op module.

    Raises:
        ValueError: Unknown op name.
    """
    c = channels
    if name == "none":
        return Zero(stride)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        pool: nn.Module
        if name == "max_pool_3x3":
            pool = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        # The batch-norm is never affine, as in DARTS: it rescales pooling outputs to match
        # the normalised conv ops without adding parameters to the derived network.
        return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False)) if pool_bn else nn.Sequential(pool)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1, affine)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2, affine)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2, affine)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2, affine)
    raise ValueError(f"unknown DARTS op {name!r}; expected one of {', '.join(DARTS_OPS)}")


def is_droppable(name: str, stride: int) -> bool:
    """Whether drop-path applies to op ``name``: every op except identity and ``none``.

    DARTS skips drop-path only for ``nn.Identity`` (a stride-1 ``skip_connect``); ``none``
    is zero either way.
    """
    return name != "none" and not (name == "skip_connect" and stride == 1)


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zeroes whole samples with probability ``prob`` and rescales the rest by ``1/(1-prob)``.

    Args:
        x: A batch ``(N, ...)``.
        prob: Drop probability in ``[0, 1)``.

    Returns:
        The batch with dropped samples.
    """
    if prob <= 0.0:
        return x
    keep = 1.0 - prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * (mask / keep)
