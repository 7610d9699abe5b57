"""Channel and resolution bookkeeping of a DARTS network, shared by supernet and child."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dha_core.types import DataSpec
from dha_plugins.spaces.darts.config import DartsSpaceConfig
from dha_plugins.spaces.darts.ops import FactorizedReduce, ReLUConvBN

__all__ = [
    "CellSpec",
    "NetworkLayout",
    "network_layout",
    "make_stem",
    "make_preprocess",
    "AuxiliaryHead",
    "DartsNetwork",
    "zero_node",
]

RunCell = Callable[[int, nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(index, cell, s0, s1) -> output``: how a network calls its cell ``index``."""


@dataclass(frozen=True)
class CellSpec:
    """Shape facts of one cell.

    Attributes:
        index: Position in the network.
        reduction: Whether this cell halves the resolution and doubles the channels.
        reduction_prev: Whether the previous cell was a reduction (its ``c_{k-2}`` input
            then has twice the resolution of ``c_{k-1}``).
        c_prev_prev: Channels of input ``c_{k-2}``.
        c_prev: Channels of input ``c_{k-1}``.
        channels: Channels of every node inside the cell.
        in_size: Spatial size of ``c_{k-1}``.
    """

    index: int
    reduction: bool
    reduction_prev: bool
    c_prev_prev: int
    c_prev: int
    channels: int
    in_size: int

    @property
    def cell_type(self) -> str:
        return "reduce" if self.reduction else "normal"


@dataclass(frozen=True)
class NetworkLayout:
    """The whole network's shape plan.

    Attributes:
        stem_channels: Output channels of the stem.
        cells: One spec per cell.
        aux_index: The cell after which the auxiliary head reads (``2*layers//3``).
        aux_in_channels: Channels at the auxiliary head's input.
        aux_in_size: Spatial size at the auxiliary head's input.
        classifier_in: Channels at global pooling.
    """

    stem_channels: int
    cells: tuple[CellSpec, ...]
    aux_index: int
    aux_in_channels: int
    aux_in_size: int
    classifier_in: int


def network_layout(config: DartsSpaceConfig, image_size: int) -> NetworkLayout:
    """Computes the cell plan of a DARTS network.

    Args:
        config: The space config.
        image_size: Input resolution (square).

    Returns:
        The layout.
    """
    stem = config.stem_multiplier * config.C
    c_pp, c_p, c = stem, stem, config.C
    size = image_size
    reductions = {config.layers // 3, 2 * config.layers // 3}
    cells = []
    reduction_prev = False
    aux_c, aux_size = c_p, size
    for i in range(config.layers):
        reduction = i in reductions
        if reduction:
            c *= 2
        cells.append(CellSpec(i, reduction, reduction_prev, c_pp, c_p, c, size))
        if reduction:
            size = (size + 1) // 2
        reduction_prev = reduction
        c_pp, c_p = c_p, config.nodes * c
        if i == 2 * config.layers // 3:
            aux_c, aux_size = c_p, size
    return NetworkLayout(stem, tuple(cells), 2 * config.layers // 3, aux_c, aux_size, c_p)


def make_stem(in_channels: int, out_channels: int) -> nn.Sequential:
    """The CIFAR stem: a 3x3 convolution and an (always affine) batch-norm, no downsampling."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))


def zero_node(states: Sequence[torch.Tensor], channels: int, reduction: bool) -> torch.Tensor:
    """The output of a node that computes no op: zeros of the node's output shape.

    Args:
        states: The cell's states so far; ``states[1]`` (``c_{k-1}``, preprocessed) sets
            batch size, resolution, dtype and device.
        channels: The node's channels.
        reduction: Whether the cell halves the resolution.

    Returns:
        ``(N, channels, H', W')`` zeros.
    """
    ref = states[1]
    h, w = ref.shape[-2:]
    if reduction:
        h, w = (h + 1) // 2, (w + 1) // 2
    return ref.new_zeros(ref.shape[0], channels, h, w)


def make_preprocess(spec: CellSpec, affine: bool) -> tuple[nn.Module, nn.Module]:
    """The two input adapters of a cell.

    ``c_{k-2}`` goes through :class:`FactorizedReduce` when the previous cell reduced (so
    that both inputs share a resolution), otherwise through ReLU-Conv1x1-BN, like ``c_{k-1}``.
    """
    if spec.reduction_prev:
        pre0: nn.Module = FactorizedReduce(spec.c_prev_prev, spec.channels, affine)
    else:
        pre0 = ReLUConvBN(spec.c_prev_prev, spec.channels, 1, 1, 0, affine)
    return pre0, ReLUConvBN(spec.c_prev, spec.channels, 1, 1, 0, affine)


class AuxiliaryHead(nn.Module):
    """DARTS' CIFAR auxiliary classifier.

    At the CIFAR feature size (8x8) it is the published head: ReLU, 5x5 average pooling
    with stride 3 (to 2x2), 1x1 conv to 128, BN, ReLU, 2x2 conv to ``hidden``, BN, ReLU,
    linear. Other feature sizes pool adaptively to 2x2 instead, so the head works on any
    input resolution.
    """

    def __init__(self, in_channels: int, num_classes: int, in_size: int, hidden: int = 768) -> None:
        super().__init__()
        pool: nn.Module
        if in_size >= 5 and (in_size - 5) // 3 + 1 == 2:
            pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        else:
            pool = nn.AdaptiveAvgPool2d(2)
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            pool,
            nn.Conv2d(in_channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, hidden, 2, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """Stem, cells, auxiliary head and classifier: what the supernet and the child share.

    The two networks differ only in their cells and in what a cell is given besides its
    two inputs; subclasses pass the cells in and say how to call them.

    Args:
        layout: The network's shape plan.
        config: The space config (``auxiliary``, ``aux_channels``).
        data_spec: ``num_classes`` and ``channels``.
        make_cell: Builds the cell of one spec.

    Attributes:
        aux_index: The cell after which the auxiliary head reads.
        drop_path_prob: Drop-path probability on non-identity ops in training.
    """

    def __init__(self, layout: NetworkLayout, config: DartsSpaceConfig, data_spec: DataSpec,
                 make_cell: Callable[[CellSpec], nn.Module]) -> None:
        super().__init__()
        num_classes = data_spec.num_classes
        self.aux_index = layout.aux_index
        self.drop_path_prob = 0.0
        # Built in this order (stem, cells, heads) so that a seed gives the same initial
        # weights and the parameters keep their order (optimizer state is saved by position).
        self.stem = make_stem(data_spec.channels, layout.stem_channels)
        self.cells = nn.ModuleList(make_cell(spec) for spec in layout.cells)
        self.auxiliary_head = (
            AuxiliaryHead(layout.aux_in_channels, num_classes, layout.aux_in_size, config.aux_channels)
            if config.auxiliary
            else None
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(layout.classifier_in, num_classes)

    def set_drop_path(self, prob: float) -> None:
        """Sets the drop-path probability applied to non-identity ops in training."""
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {prob}")
        self.drop_path_prob = float(prob)

    def _run_cells(self, x: torch.Tensor, run_cell: RunCell) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Stem, every cell on its two predecessors, then the classifier.

        Args:
            x: Images ``(N, C, H, W)``.
            run_cell: Calls one cell (see :data:`RunCell`).

        Returns:
            Logits, or ``(logits, aux_logits)`` in training mode with an auxiliary head.
        """
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, run_cell(i, cell, s0, s1)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        if aux is not None:
            return logits, aux
        return logits
