"""``space=darts``: the DARTS cell search space (Liu et al., ICLR 2019)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dha_core.costs import count_flops, count_params
from dha_core.interfaces import DataSpec, SearchSpace, Supernet
from dha_core.types import ChoiceGroup, Selection
from dha_plugins.spaces.common import CandidateRef, fold_scale_into, last_affine_bn, measure_candidate_costs
from dha_plugins.spaces.darts.child import DartsChild, NodePick, op_key
from dha_plugins.spaces.darts.config import DartsSpaceConfig
from dha_plugins.spaces.darts.genotype import CELL_TYPES, DARTS_V2, genotype_to_selection, selection_to_genotype
from dha_plugins.spaces.darts.supernet import DartsSupernet

__all__ = ["DartsSpace", "INPUT_NAMES"]

INPUT_NAMES: tuple[str, str] = ("c_k-2", "c_k-1")
"""Names of a cell's two inputs in edge names (the outputs of cells k-2 and k-1)."""


class DartsSpace(SearchSpace):
    """DARTS cells: one choice group per intermediate node and cell type.

    Group ``"<type>/node<j>"`` (``type`` in ``normal``, ``reduce``) has ``2 + j`` edges,
    from ``c_{k-2}``, ``c_{k-1}`` and nodes ``0 .. j-1``; ``keep = 2`` and ``none_op`` is
    ``"none"`` when that op is a candidate. Every cell of a type shares its groups.

    Args:
        config: The space config.
        data_spec: ``num_classes``, ``channels`` and ``image_size`` of the data.
    """

    name = "darts"

    def __init__(self, config: DartsSpaceConfig, data_spec: DataSpec) -> None:
        self.config = config
        self.data_spec = data_spec
        self._groups = self._make_groups()
        self._costs: dict[str, dict[str, torch.Tensor]] = {}

    def _make_groups(self) -> list[ChoiceGroup]:
        ops = tuple(self.config.ops)
        none = "none" if "none" in ops else None
        groups = []
        for cell_type in CELL_TYPES:
            for j in range(self.config.nodes):
                name = f"{cell_type}/node{j}"
                sources = list(INPUT_NAMES) + [f"node{i}" for i in range(j)]
                groups.append(
                    ChoiceGroup(
                        name=name,
                        edges=tuple(f"{name}/{s}" for s in sources),
                        ops=ops,
                        keep=2,
                        none_op=none,
                        edge_inputs=tuple(range(len(sources))),
                    )
                )
        return groups

    def choice_groups(self) -> list[ChoiceGroup]:
        """The ``2 * nodes`` groups, normal nodes first."""
        return list(self._groups)

    def build_supernet(self) -> DartsSupernet:
        """A freshly initialised search network."""
        return DartsSupernet(self.config, self.data_spec, self._groups)

    def _picks(self, selection: Selection) -> dict[str, list[list[NodePick]]]:
        picks: dict[str, list[list[NodePick]]] = {t: [] for t in CELL_TYPES}
        for g in self._groups:
            if g.name not in selection:
                raise ValueError(f"selection has no entry for group {g.name!r}")
            seen = set()
            node: list[NodePick] = []
            for s in selection[g.name]:
                if not (0 <= s.edge < len(g.edges) and 0 <= s.op < len(g.ops)):
                    raise ValueError(f"selection of {g.name!r}: (edge {s.edge}, op {s.op}) is out of range {g.shape}")
                if (s.edge, s.op) in seen:
                    raise ValueError(f"selection of {g.name!r} repeats (edge {s.edge}, op {s.op})")
                seen.add((s.edge, s.op))
                node.append(NodePick(s.edge, g.ops[s.op]))
            picks[g.name.split("/")[0]].append(node)
        extra = set(selection) - {g.name for g in self._groups}
        if extra:
            raise ValueError(f"selection has unknown group(s): {', '.join(sorted(extra))}")
        return picks

    def build_child(self, selection: Selection) -> DartsChild:
        """A freshly initialised evaluation network for ``selection``.

        Ops without an affine output batch-norm get a ``scale`` buffer initialised to 1;
        :meth:`derive` sets it (and folds the other weights) from the supernet.
        """
        return DartsChild(self.config, self.data_spec, self._picks(selection))

    @torch.no_grad()
    def derive(self, supernet: Supernet, selection: Selection) -> DartsChild:
        """The child for ``selection`` with the supernet's trained weights.

        Each selected op's weight (times any scale already folded into the supernet by
        :meth:`DartsSupernet.fold_group`) is folded into the op's final affine batch-norm,
        or into its ``scale`` buffer when it has none. The child is on the supernet's
        device and in its train/eval mode.

        Args:
            supernet: A supernet built by this space.
            selection: The discrete architecture.

        Returns:
            The derived network.
        """
        if not isinstance(supernet, DartsSupernet):
            raise TypeError(f"expected a DartsSupernet, got {type(supernet).__name__}")
        child = self.build_child(selection)
        child.stem.load_state_dict(supernet.stem.state_dict())
        child.classifier.load_state_dict(supernet.classifier.state_dict())
        if child.auxiliary_head is not None and supernet.auxiliary_head is not None:
            child.auxiliary_head.load_state_dict(supernet.auxiliary_head.state_dict())
        groups = {t: [g for g in self._groups if g.name.startswith(f"{t}/")] for t in CELL_TYPES}
        for s_cell, c_cell, cell_type in zip(supernet.cells, child.cells, supernet.cell_types, strict=True):
            c_cell.preprocess0.load_state_dict(s_cell.preprocess0.state_dict())
            c_cell.preprocess1.load_state_dict(s_cell.preprocess1.state_dict())
            for g, s_node, c_node in zip(groups[cell_type], s_cell.nodes, c_cell.nodes, strict=True):
                for s in selection[g.name]:
                    name = g.ops[s.op]
                    target = c_node.ops[op_key(s.edge, name)]
                    target.op.load_state_dict(s_node.edges[s.edge][name].state_dict())
                    factor = float(s.weight) * float(s_node.scale[s.edge, s.op])
                    if target.scale is None:
                        fold_scale_into(last_affine_bn(target.op), factor)
                    else:
                        target.scale.fill_(factor)
        param = next(supernet.parameters())
        return child.to(param.device).train(supernet.training)

    def genotype(self, selection: Selection) -> dict[str, Any]:
        """The selection in the DARTS genotype format (see :mod:`.genotype`)."""
        return selection_to_genotype(self._groups, selection)

    def selection_from_genotype(self, genotype: dict[str, Any]) -> Selection:
        """Reads a DARTS genotype (weights of 1)."""
        return genotype_to_selection(self._groups, genotype)

    def named_genotypes(self) -> dict[str, dict[str, Any]]:
        """``DARTS_V2``, the published second-order DARTS cell."""
        return {"DARTS_V2": DARTS_V2}

    def candidate_costs(self, metric: str = "params") -> dict[str, torch.Tensor]:
        """Per-candidate cost, summed over every cell that shares the group.

        Args:
            metric: ``"params"``, ``"flops"`` (one image at the data's resolution;
                convolutions and linear layers, 2 FLOPs per multiply-accumulate) or
                ``"latency"`` (seconds of a training forward and backward pass on CPU at a
                batch of 32; pooling and depthwise convolutions cost time but few FLOPs).

        Returns:
            Group name -> ``(edges, ops)`` float64 tensor; ``none`` costs 0.
        """
        if metric not in self._costs:
            net = self.build_supernet().eval()
            refs = []
            for cell, cell_type in zip(net.cells, net.cell_types, strict=True):
                groups = [g for g in self._groups if g.name.startswith(f"{cell_type}/")]
                for g, node in zip(groups, cell.nodes, strict=True):
                    for e, edge in enumerate(node.edges):
                        stride = 2 if node.reduction and e < 2 else 1
                        for o, op_name in enumerate(g.ops):
                            module = None if op_name == "none" else edge[op_name]
                            refs.append(CandidateRef(g.name, e, o, module, key=(op_name, stride)))
            self._costs[metric] = measure_candidate_costs(
                self._groups, refs, lambda: net(self.example_input()), metric
            )
        return {k: v.clone() for k, v in self._costs[metric].items()}

    def selection_cost(self, selection: Selection, metric: str = "params") -> float:
        """Params (auxiliary head excluded, as DARTS reports them) or FLOPs of the child."""
        child = self.build_child(selection)
        if metric == "params":
            return float(count_params(child, exclude=("auxiliary_head",)))
        if metric == "flops":
            return float(count_flops(child, self.example_input()))
        raise ValueError(f"unknown cost metric {metric!r}; expected 'params' or 'flops'")


def count_child_params(child: nn.Module) -> int:
    """Parameters of a derived network without its auxiliary head (DARTS' "param size")."""
    return count_params(child, exclude=("auxiliary_head",))
