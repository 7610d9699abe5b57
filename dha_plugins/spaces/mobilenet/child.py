"""The derived MobileNet: one plain inverted residual per searchable block."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dha_plugins.spaces.mobilenet.blocks import ConvBNAct, InvertedResidual, MBConv, init_weights
from dha_plugins.spaces.mobilenet.layout import BlockSpec, MobileNetLayout
from dha_plugins.spaces.mobilenet.supernet import block_output, make_candidate

__all__ = ["ChildBlock", "MobileNetChild"]


class ChildBlock(nn.Module):
    """The selected candidates of one block, summed, plus the shortcut when the shape is kept.

    With one selected MBConv this is exactly a MobileNetV2 inverted residual; with only
    ``zero`` it is the identity and holds no parameters.
    """

    def __init__(self, spec: BlockSpec, names: Sequence[str]) -> None:
        super().__init__()
        self.spec = spec
        self.residual = spec.residual
        modules: dict[str, MBConv] = {}
        for n in names:
            m = make_candidate(spec, n)
            if m is not None:
                modules[n] = m
        self.ops = nn.ModuleDict(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out: torch.Tensor | None = None
        for op in self.ops.values():
            y = op(x)
            out = y if out is None else out + y
        return block_output(self.spec, x, out)


class MobileNetChild(nn.Module):
    """A standalone MobileNet for one selection.

    Args:
        layout: The space's block plan.
        names: Selected candidate names per block, in block order.
        in_channels: Image channels.
        num_classes: Classifier outputs.
        dropout: Dropout before the classifier.
    """

    def __init__(self, layout: MobileNetLayout, names: Sequence[Sequence[str]], in_channels: int, num_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = ConvBNAct(in_channels, layout.stem_channels, 3, layout.stem_stride)
        self.first_block = InvertedResidual(layout.stem_channels, layout.first_channels, 3, 1, 1)
        self.blocks = nn.ModuleList(ChildBlock(spec, n) for spec, n in zip(layout.blocks, names, strict=True))
        self.head = ConvBNAct(layout.last_in, layout.last_channels, 1)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(layout.last_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.first_block(self.stem(x))
        for block in self.blocks:
            x = block(x)
        x = self.global_pooling(self.head(x)).flatten(1)
        return self.classifier(self.dropout(x))
