"""The DARTS search network: cells of mixed edges driven by per-node mixing weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dha_core.interfaces import Supernet
from dha_core.types import ChoiceGroup, DataSpec, MixingWeights
from dha_plugins.spaces.common import fold_scale_into, group_mixing, last_affine_bn
from dha_plugins.spaces.darts.config import DartsSpaceConfig
from dha_plugins.spaces.darts.layout import CellSpec, DartsNetwork, make_preprocess, network_layout, zero_node
from dha_plugins.spaces.darts.ops import drop_path, is_droppable, make_op

__all__ = ["MixedNode", "SearchCell", "DartsSupernet"]

Pairs = Sequence[tuple[int, int]]


class MixedNode(nn.Module):
    """One intermediate node: every candidate op on every incoming edge.

    Attributes:
        edges: ``edges[e][op_name]`` is the candidate module of op ``op_name`` on edge ``e``.
        scale: ``(edges, ops)`` buffer of constant output scales, all ones until
            :meth:`fold` moves a frozen node's weights here (for ops that end without an
            affine batch-norm) or zeroes a dropped candidate.
    """

    def __init__(self, op_names: Sequence[str], num_edges: int, channels: int, reduction: bool, affine: bool,
                 pool_bn: bool) -> None:
        super().__init__()
        self.op_names = tuple(op_names)
        self.channels = channels
        self.reduction = reduction
        strides = [2 if reduction and e < 2 else 1 for e in range(num_edges)]
        self.edges = nn.ModuleList(
            nn.ModuleDict({name: make_op(name, channels, s, affine, pool_bn) for name in self.op_names})
            for s in strides
        )
        self.register_buffer("scale", torch.ones(num_edges, len(self.op_names)))
        self._none = self.op_names.index("none") if "none" in self.op_names else -1
        self._droppable = [[is_droppable(n, s) for n in self.op_names] for s in strides]
        # "none" is identically zero, so skipping it changes neither the output nor any
        # gradient (its weight's gradient is <0, grad> = 0 either way).
        self.dense_pairs: list[tuple[int, int]] = [
            (e, o) for e in range(num_edges) for o in range(len(self.op_names)) if o != self._none
        ]

    def forward(self, states: Sequence[torch.Tensor], weights: torch.Tensor, pairs: Pairs,
                drop_prob: float = 0.0) -> torch.Tensor:
        """Mixes the candidates in ``pairs``; nothing else is computed.

        Args:
            states: Node outputs so far (``c_{k-2}``, ``c_{k-1}``, node0, ...).
            weights: ``(edges, ops)`` mixing weights.
            pairs: The ``(edge, op)`` pairs to compute.
            drop_prob: Drop-path probability (training mode only).

        Returns:
            The node's output.
        """
        coef = weights * self.scale
        out: torch.Tensor | None = None
        for e, o in pairs:
            if o == self._none:
                continue
            y = self.edges[e][self.op_names[o]](states[e])
            if drop_prob > 0.0 and self.training and self._droppable[e][o]:
                y = drop_path(y, drop_prob)
            term = coef[e, o] * y
            out = term if out is None else out + term
        # No active candidate: the node is the zero tensor of its output shape.
        return zero_node(states, self.channels, self.reduction) if out is None else out

    @torch.no_grad()
    def fold(self, weights: torch.Tensor) -> None:
        """Makes the node output ``sum w[e,o] op(x)`` under weights of one on every pair.

        Nonzero weights go into each candidate's final affine batch-norm where it has one,
        otherwise into :attr:`scale`. Zero weights go into :attr:`scale` (never into a
        batch-norm, whose parameters keep training and would revive the candidate).
        """
        weights = weights.detach().to(self.scale)
        for e, edge in enumerate(self.edges):
            for o, name in enumerate(self.op_names):
                w = float(weights[e, o])
                bn = last_affine_bn(edge[name])
                if w != 0.0 and bn is not None:
                    fold_scale_into(bn, w)
                else:
                    self.scale[e, o] *= w


class SearchCell(nn.Module):
    """A DARTS cell whose edges are mixed: two preprocessed inputs and ``nodes`` nodes."""

    def __init__(self, spec: CellSpec, config: DartsSpaceConfig) -> None:
        super().__init__()
        self.reduction = spec.reduction
        self.preprocess0, self.preprocess1 = make_preprocess(spec, config.affine)
        self.nodes = nn.ModuleList(
            MixedNode(config.ops, 2 + j, spec.channels, spec.reduction, config.affine, config.pool_bn)
            for j in range(config.nodes)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, node_inputs: Sequence[tuple[torch.Tensor, Pairs]],
                drop_prob: float = 0.0) -> torch.Tensor:
        """Runs the cell.

        Args:
            s0: Output of cell ``k-2``.
            s1: Output of cell ``k-1``.
            node_inputs: Per node, its ``(edges, ops)`` weights and the pairs to compute.
            drop_prob: Drop-path probability.

        Returns:
            The concatenation of the intermediate nodes.
        """
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node, (w, pairs) in zip(self.nodes, node_inputs, strict=True):
            states.append(node(states, w, pairs, drop_prob))
        return torch.cat(states[2:], dim=1)


class DartsSupernet(DartsNetwork, Supernet):
    """The DARTS search network.

    All normal cells share the ``normal/node*`` groups' weights and all reduction cells
    the ``reduce/node*`` groups' weights, as in DARTS.

    Attributes:
        drop_path_prob: Drop-path probability on every non-identity candidate in training.
    """

    def __init__(self, config: DartsSpaceConfig, data_spec: DataSpec, groups: Sequence[ChoiceGroup]) -> None:
        layout = network_layout(config, data_spec.image_size)
        super().__init__(layout, config, data_spec, lambda spec: SearchCell(spec, config))
        self.config = config
        self.groups = {t: [g for g in groups if g.name.startswith(f"{t}/")] for t in ("normal", "reduce")}
        self.cell_types = [spec.cell_type for spec in layout.cells]

    def _node_inputs(self, cell_type: str, weights: MixingWeights | None,
                     ref: torch.Tensor) -> list[tuple[torch.Tensor, Pairs]]:
        nodes = next(c for c, t in zip(self.cells, self.cell_types, strict=True) if t == cell_type).nodes
        return [
            group_mixing(weights, g, node.dense_pairs, ref)
            for g, node in zip(self.groups[cell_type], nodes, strict=True)
        ]

    def forward(self, x: torch.Tensor, weights: MixingWeights | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Runs the supernet.

        Args:
            x: Images ``(N, C, H, W)``.
            weights: Per-group mixing weights; only ``weights.active`` pairs are computed
                (all of them for a group whose entry is ``None``). ``None`` mixes every
                candidate uniformly.

        Returns:
            Logits, or ``(logits, aux_logits)`` in training mode with an auxiliary head.
        """
        present = set(self.cell_types)
        inputs = {t: self._node_inputs(t, weights, x) for t in ("normal", "reduce") if t in present}
        return self._run_cells(
            x, lambda i, cell, s0, s1: cell(s0, s1, inputs[self.cell_types[i]], self.drop_path_prob)
        )

    def node_modules(self, group: str) -> list[MixedNode]:
        """Every cell's node module for ``group`` (one per cell of the group's type)."""
        cell_type, _, node = group.partition("/")
        if cell_type not in self.groups or not node.startswith("node"):
            raise KeyError(f"unknown DARTS group {group!r}")
        j = int(node[len("node"):])
        return [c.nodes[j] for c, t in zip(self.cells, self.cell_types, strict=True) if t == cell_type]

    def fold_group(self, group: str, weights: torch.Tensor) -> bool:
        """Folds a frozen node's fixed weights into every cell of its type.

        Afterwards ``forward`` with weights of one on the group's pairs (dense or on the
        previously active pairs) gives what ``weights`` gave before. Nonzero weights of
        ops that end in an affine batch-norm (the conv ops, a reducing ``skip_connect``)
        scale its ``gamma`` and ``beta``; identity, pooling and zero weights go into a
        constant buffer.

        Args:
            group: Group name, e.g. ``"normal/node1"``.
            weights: ``(edges, ops)`` weights to fold.

        Returns:
            True.
        """
        modules = self.node_modules(group)
        shape = tuple(weights.shape)
        expected = tuple(modules[0].scale.shape)
        if shape != expected:
            raise ValueError(f"fold weights of {group!r} have shape {shape}, expected {expected}")
        for node in modules:
            node.fold(weights)
        return True
