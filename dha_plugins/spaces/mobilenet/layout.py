"""The block plan of a MobileNet space, shared by supernet, child and costs."""

from __future__ import annotations

from dataclasses import dataclass

from dha_plugins.spaces.mobilenet.blocks import op_name
from dha_plugins.spaces.mobilenet.config import MobileNetSpaceConfig, make_divisible

__all__ = ["BlockSpec", "MobileNetLayout", "mobilenet_layout"]


@dataclass(frozen=True)
class BlockSpec:
    """One searchable block.

    Attributes:
        stage: Stage index (0-based).
        index: Block index within the stage (0-based).
        c_in: Input channels.
        c_out: Output channels.
        stride: 1 or 2.
        in_size: Input resolution.
        ops: Candidate names (MBConvs, then ``zero`` where allowed).
    """

    stage: int
    index: int
    c_in: int
    c_out: int
    stride: int
    in_size: int
    ops: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"stage{self.stage}/block{self.index}"

    @property
    def residual(self) -> bool:
        """Whether the block keeps its shape (and so has an identity shortcut)."""
        return self.stride == 1 and self.c_in == self.c_out


@dataclass(frozen=True)
class MobileNetLayout:
    """Channels, strides and candidates of the whole network."""

    stem_channels: int
    stem_stride: int
    first_channels: int
    blocks: tuple[BlockSpec, ...]
    last_in: int
    last_channels: int
    resolution: int


def mobilenet_layout(config: MobileNetSpaceConfig, resolution: int) -> MobileNetLayout:
    """Computes the block plan.

    Args:
        config: The space config.
        resolution: Input resolution.

    Returns:
        The layout.
    """
    mult = config.width_mult
    stem_stride = 2
    if config.stem == "small" or (config.stem == "auto" and resolution <= 64):
        stem_stride = 1
    stem = make_divisible(config.stem_channels * mult)
    first = make_divisible(config.first_block_channels * mult)
    size = (resolution + stem_stride - 1) // stem_stride
    mbconvs = tuple(op_name(k, e) for k in config.kernel_sizes for e in config.expand_ratios)
    blocks = []
    c_in = first
    for s, (width, depth, first_stride) in enumerate(zip(config.stage_widths, config.depths, config.strides,
                                                         strict=True)):
        c_out = make_divisible(width * mult)
        for b in range(depth):
            stride = first_stride if b == 0 else 1
            keeps_shape = stride == 1 and c_in == c_out
            ops = mbconvs + (("zero",) if keeps_shape and config.allow_zero else ())
            blocks.append(BlockSpec(s, b, c_in, c_out, stride, size, ops))
            size = (size + stride - 1) // stride
            c_in = c_out
    last = make_divisible(config.last_channels * max(1.0, mult))
    return MobileNetLayout(stem, stem_stride, first, tuple(blocks), c_in, last, resolution)
