"""MobileNetV2 building blocks: conv-BN-ReLU6 and the inverted-residual body (MBConv)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBNAct", "MBConv", "InvertedResidual", "init_weights", "op_name", "parse_op"]


def op_name(kernel: int, expand: int) -> str:
    """Candidate name of an MBConv, e.g. ``mbconv_k3_e6``."""
    return f"mbconv_k{kernel}_e{expand}"


def parse_op(name: str) -> tuple[int, int]:
    """Inverse of :func:`op_name`: ``(kernel, expand)``."""
    parts = name.split("_")
    if len(parts) != 3 or parts[0] != "mbconv" or not parts[1].startswith("k") or not parts[2].startswith("e"):
        raise ValueError(f"not an MBConv op name: {name!r}")
    return int(parts[1][1:]), int(parts[2][1:])


class ConvBNAct(nn.Sequential):
    """Convolution (no bias) -> batch-norm -> ReLU6, with "same" padding."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=True),
        )


class MBConv(nn.Sequential):
    """The body of a MobileNetV2 inverted residual (the shortcut lives in the block).

    1x1 expansion + BN + ReLU6 (absent when ``expand == 1``), ``kernel`` x ``kernel``
    depthwise + BN + ReLU6, 1x1 linear projection + BN. The output is that batch-norm,
    so a mixing weight can be folded into it.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int) -> None:
        hidden = int(round(c_in * expand))
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(c_in, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, kernel, stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """A fixed MBConv block with its identity shortcut when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        self.residual = stride == 1 and c_in == c_out
        self.conv = MBConv(c_in, c_out, kernel, expand, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.conv(x)
        return x + y if self.residual else y


def init_weights(module: nn.Module) -> None:
    """MobileNetV2 initialisation: Kaiming (fan-out) convs, unit BN, small-normal linear."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
