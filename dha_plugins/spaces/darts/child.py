"""The derived DARTS network: only the selected ops, no mixing weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dha_core.types import DataSpec
from dha_plugins.spaces.common import last_affine_bn
from dha_plugins.spaces.darts.config import DartsSpaceConfig
from dha_plugins.spaces.darts.layout import CellSpec, DartsNetwork, make_preprocess, network_layout, zero_node
from dha_plugins.spaces.darts.ops import drop_path, is_droppable, make_op

__all__ = ["NodePick", "ChildOp", "ChildNode", "ChildCell", "DartsChild", "op_key"]


@dataclass(frozen=True)
class NodePick:
    """One selected input of a node: the op ``name`` applied to state ``edge``."""

    edge: int
    name: str


def op_key(edge: int, name: str) -> str:
    """The ``state_dict`` key of a selected op inside its node, e.g. ``e1_sep_conv_3x3``."""
    return f"e{edge}_{name}"


class ChildOp(nn.Module):
    """A selected op, plus a constant output scale when the op cannot absorb one.

    Ops that end in an affine batch-norm carry their mixing weight in that layer; the
    others (identity, pooling, ``none``, any op with ``affine=False``) get a ``scale``
    buffer. Which case applies depends only on the op and the config, so the
    ``state_dict`` keys of a child depend only on the config and the selection.
    """

    def __init__(self, op: nn.Module, droppable: bool) -> None:
        super().__init__()
        self.op = op
        self.droppable = droppable
        self.register_buffer("scale", None if last_affine_bn(op) is not None else torch.ones(()))

    def forward(self, x: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:  # noqa: D102
        y = self.op(x)
        if self.scale is not None:
            y = y * self.scale
        if drop_prob > 0.0 and self.training and self.droppable:
            y = drop_path(y, drop_prob)
        return y


class ChildNode(nn.Module):
    """An intermediate node: the sum of its selected ops."""

    def __init__(self, picks: Sequence[NodePick], channels: int, reduction: bool, config: DartsSpaceConfig) -> None:
        super().__init__()
        self.channels = channels
        self.reduction = reduction
        self.inputs = tuple(p.edge for p in picks)
        ops = {}
        for p in picks:
            stride = 2 if reduction and p.edge < 2 else 1
            ops[op_key(p.edge, p.name)] = ChildOp(
                make_op(p.name, channels, stride, config.affine, config.pool_bn), is_droppable(p.name, stride)
            )
        self.ops = nn.ModuleDict(ops)

    def forward(self, states: Sequence[torch.Tensor], drop_prob: float = 0.0) -> torch.Tensor:  # noqa: D102
        out: torch.Tensor | None = None
        for edge, op in zip(self.inputs, self.ops.values(), strict=True):
            y = op(states[edge], drop_prob)
            out = y if out is None else out + y
        return zero_node(states, self.channels, self.reduction) if out is None else out


class ChildCell(nn.Module):
    """A discrete DARTS cell (the evaluation-network cell)."""

    def __init__(self, spec: CellSpec, config: DartsSpaceConfig, picks: Sequence[Sequence[NodePick]]) -> None:
        super().__init__()
        self.reduction = spec.reduction
        self.preprocess0, self.preprocess1 = make_preprocess(spec, config.affine)
        self.nodes = nn.ModuleList(ChildNode(p, spec.channels, spec.reduction, config) for p in picks)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:  # noqa: D102
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in self.nodes:
            states.append(node(states, drop_prob))
        return torch.cat(states[2:], dim=1)


class DartsChild(DartsNetwork):
    """A standalone DARTS network (the CIFAR evaluation network of a genotype).

    Args:
        config: The space config (``C``, ``layers``, ``nodes``, ...).
        data_spec: ``num_classes``, ``channels``, ``image_size``.
        picks: ``picks[cell_type][node]``: the selected inputs of every node, for
            ``cell_type`` in ``normal`` and ``reduce``.

    Attributes:
        drop_path_prob: Drop-path probability on non-identity ops in training.
    """

    def __init__(self, config: DartsSpaceConfig, data_spec: DataSpec,
                 picks: dict[str, Sequence[Sequence[NodePick]]]) -> None:
        layout = network_layout(config, data_spec.image_size)
        super().__init__(layout, config, data_spec, lambda spec: ChildCell(spec, config, picks[spec.cell_type]))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Returns logits, or ``(logits, aux_logits)`` in training mode with an auxiliary head."""
        return self._run_cells(x, lambda i, cell, s0, s1: cell(s0, s1, self.drop_path_prob))
