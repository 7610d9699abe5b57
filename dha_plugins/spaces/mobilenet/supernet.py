"""The MobileNet supernet: one mixed block (all MBConv candidates + zero) per choice group."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dha_core.interfaces import Supernet
from dha_core.types import ChoiceGroup, MixingWeights
from dha_plugins.spaces.common import fold_scale_into, group_mixing, last_affine_bn
from dha_plugins.spaces.mobilenet.blocks import ConvBNAct, InvertedResidual, MBConv, init_weights, parse_op
from dha_plugins.spaces.mobilenet.layout import BlockSpec, MobileNetLayout

__all__ = ["MixedBlock", "MobileNetSupernet", "block_output", "make_candidate"]


def make_candidate(spec: BlockSpec, name: str) -> MBConv | None:
    """The module of candidate ``name`` in block ``spec`` (``None`` for ``zero``)."""
    if name == "zero":
        return None
    kernel, expand = parse_op(name)
    return MBConv(spec.c_in, spec.c_out, kernel, expand, spec.stride)


def block_output(spec: BlockSpec, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """A block's output from the sum of its computed candidates.

    Args:
        spec: The block.
        x: The block input.
        out: The sum of the computed candidates' outputs; ``None`` when only ``zero`` was
            chosen or active.

    Returns:
        ``x + out`` for a residual block, else ``out``; without candidates the block is its
        shortcut alone: ``x`` when residual, else zeros of the output shape.
    """
    if out is None:
        if spec.residual:
            return x
        s = spec.stride
        h, w = (x.shape[-2] + s - 1) // s, (x.shape[-1] + s - 1) // s
        return x.new_zeros(x.shape[0], spec.c_out, h, w)
    return x + out if spec.residual else out


class MixedBlock(nn.Module):
    """A searchable block: ``shortcut(x) + sum_o w_o * MBConv_o(x)`` over the active candidates.

    ``zero`` has no module: choosing it leaves only the identity shortcut (ProxylessNAS).

    Attributes:
        ops: Candidate name -> MBConv.
        scale: ``(1, ops)`` constant output scales (ones until a fold).
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.op_names = spec.ops
        self.residual = spec.residual
        self.ops = nn.ModuleDict({n: m for n in spec.ops if (m := make_candidate(spec, n)) is not None})
        self.register_buffer("scale", torch.ones(1, len(spec.ops)))
        # zero contributes nothing, so it is never computed.
        self.dense_pairs = [(0, o) for o, n in enumerate(spec.ops) if n != "zero"]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Mixes the active candidates.

        Args:
            x: Block input.
            weights: ``(1, ops)`` mixing weights.
            pairs: The ``(0, op)`` pairs to compute.

        Returns:
            The block output.
        """
        coef = weights * self.scale
        out: torch.Tensor | None = None
        for _, o in pairs:
            name = self.op_names[o]
            if name == "zero":
                continue
            term = coef[0, o] * self.ops[name](x)
            out = term if out is None else out + term
        return block_output(self.spec, x, out)

    @torch.no_grad()
    def fold(self, weights: torch.Tensor) -> None:
        """Folds fixed ``(1, ops)`` weights: nonzero ones into each MBConv's last BN, zeros into ``scale``."""
        for o, name in enumerate(self.op_names):
            w = float(weights[0, o])
            bn = last_affine_bn(self.ops[name]) if name in self.ops else None
            if w != 0.0 and bn is not None:
                fold_scale_into(bn, w)
            else:
                self.scale[0, o] *= w


class MobileNetSupernet(Supernet):
    """The ProxylessNAS-style over-parameterised MobileNet."""

    def __init__(self, layout: MobileNetLayout, groups: Sequence[ChoiceGroup], in_channels: int, num_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.groups = list(groups)
        self.stem = ConvBNAct(in_channels, layout.stem_channels, 3, layout.stem_stride)
        self.first_block = InvertedResidual(layout.stem_channels, layout.first_channels, 3, 1, 1)
        self.blocks = nn.ModuleList(MixedBlock(spec) for spec in layout.blocks)
        self.head = ConvBNAct(layout.last_in, layout.last_channels, 1)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(layout.last_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor, weights: MixingWeights | None = None) -> torch.Tensor:
        """Runs the supernet.

        Args:
            x: Images ``(N, C, H, W)``.
            weights: Per-block ``(1, ops)`` weights; only ``weights.active`` pairs are
                computed. ``None`` mixes every candidate uniformly.

        Returns:
            Logits.
        """
        x = self.first_block(self.stem(x))
        for g, block in zip(self.groups, self.blocks, strict=True):
            x = block(x, *group_mixing(weights, g, block.dense_pairs, x))
        x = self.global_pooling(self.head(x)).flatten(1)
        return self.classifier(self.dropout(x))

    def fold_group(self, group: str, weights: torch.Tensor) -> bool:
        """Folds a frozen block's fixed weights (see :meth:`MixedBlock.fold`).

        Args:
            group: Block name, e.g. ``"stage1/block2"``.
            weights: Its ``(1, ops)`` weights.

        Returns:
            True.
        """
        for g, block in zip(self.groups, self.blocks, strict=True):
            if g.name == group:
                if tuple(weights.shape) != g.shape:
                    raise ValueError(f"fold weights of {group!r} have shape {tuple(weights.shape)}, expected {g.shape}")
                block.fold(weights)
                return True
        raise KeyError(f"unknown MobileNet group {group!r}")
