"""``space=mobilenet``: ProxylessNAS-style MBConv search space (Cai et al., ICLR 2019)."""

from __future__ import annotations

import torch

from dha_core.interfaces import DataSpec, SearchSpace, Supernet
from dha_core.types import ChoiceGroup, Selection
from dha_plugins.spaces.common import CandidateRef, fold_scale_into, last_affine_bn, measure_candidate_costs
from dha_plugins.spaces.mobilenet.child import MobileNetChild
from dha_plugins.spaces.mobilenet.config import MobileNetSpaceConfig
from dha_plugins.spaces.mobilenet.layout import MobileNetLayout, mobilenet_layout
from dha_plugins.spaces.mobilenet.supernet import MobileNetSupernet

__all__ = ["MobileNetSpace"]


class MobileNetSpace(SearchSpace):
    """One choice group per searchable block: one edge, ``keep = 1``.

    The candidates are MBConv ``k x k`` with expansion ``e`` for every configured kernel
    and ratio (named ``mbconv_k<k>_e<e>``), plus ``zero`` on blocks that keep their shape.
    ``zero`` is a real choice (skip the block), so ``none_op`` is ``None``.

    Args:
        config: The space config.
        data_spec: ``num_classes``, ``channels`` and ``image_size`` of the data.
    """

    name = "mobilenet"

    def __init__(self, config: MobileNetSpaceConfig, data_spec: DataSpec) -> None:
        self.config = config
        self.data_spec = data_spec
        self.resolution = int(config.resolution or self.data_spec.image_size)
        self.layout: MobileNetLayout = mobilenet_layout(config, self.resolution)
        self._groups = [
            ChoiceGroup(name=b.name, edges=(f"{b.name}/in",), ops=b.ops, keep=1, none_op=None, edge_inputs=(0,))
            for b in self.layout.blocks
        ]
        self._costs: dict[str, dict[str, torch.Tensor]] = {}

    def choice_groups(self) -> list[ChoiceGroup]:
        """One group per searchable block, in network order."""
        return list(self._groups)

    def build_supernet(self) -> MobileNetSupernet:
        """A freshly initialised supernet."""
        return MobileNetSupernet(
            self.layout, self._groups, self.data_spec.channels, self.data_spec.num_classes,
            self.config.dropout,
        )

    def _names(self, selection: Selection) -> list[list[str]]:
        names = []
        for g in self._groups:
            if g.name not in selection:
                raise ValueError(f"selection has no entry for group {g.name!r}")
            block: list[str] = []
            for s in selection[g.name]:
                if s.edge != 0 or not 0 <= s.op < len(g.ops):
                    raise ValueError(f"selection of {g.name!r}: (edge {s.edge}, op {s.op}) is out of range {g.shape}")
                if g.ops[s.op] in block:
                    raise ValueError(f"selection of {g.name!r} repeats op {g.ops[s.op]!r}")
                block.append(g.ops[s.op])
            names.append(block)
        extra = set(selection) - {g.name for g in self._groups}
        if extra:
            raise ValueError(f"selection has unknown group(s): {', '.join(sorted(extra))}")
        return names

    def build_child(self, selection: Selection) -> MobileNetChild:
        """A freshly initialised network with the selected candidate(s) in every block."""
        return MobileNetChild(
            self.layout, self._names(selection), self.data_spec.channels,
            self.data_spec.num_classes, self.config.dropout,
        )

    @torch.no_grad()
    def derive(self, supernet: Supernet, selection: Selection) -> MobileNetChild:
        """The child with the supernet's trained weights; each weight is folded into its
        MBConv's projection batch-norm. The child is on the supernet's device and mode.

        Args:
            supernet: A supernet built by this space.
            selection: The discrete architecture.

        Returns:
            The derived network.
        """
        if not isinstance(supernet, MobileNetSupernet):
            raise TypeError(f"expected a MobileNetSupernet, got {type(supernet).__name__}")
        child = self.build_child(selection)
        for name in ("stem", "first_block", "head", "classifier"):
            getattr(child, name).load_state_dict(getattr(supernet, name).state_dict())
        for g, s_block, c_block in zip(self._groups, supernet.blocks, child.blocks, strict=True):
            for s in selection[g.name]:
                name = g.ops[s.op]
                if name == "zero":
                    continue
                target = c_block.ops[name]
                target.load_state_dict(s_block.ops[name].state_dict())
                fold_scale_into(last_affine_bn(target), float(s.weight) * float(s_block.scale[0, s.op]))
        param = next(supernet.parameters())
        return child.to(param.device).train(supernet.training)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero batch at the configured resolution."""
        return torch.zeros(batch_size, self.data_spec.channels, self.resolution, self.resolution)

    def candidate_costs(self, metric: str = "params") -> dict[str, torch.Tensor]:
        """Per-candidate cost: group name -> ``(1, ops)`` float64 tensor (``zero`` costs 0).

        Args:
            metric: ``"params"``, ``"flops"`` (one image at ``resolution``) or ``"latency"``
                (seconds of a forward and backward pass on CPU, see ``measure_candidate_costs``).
        """
        if metric not in self._costs:
            net = self.build_supernet().eval()
            refs = [
                CandidateRef(g.name, 0, o, block.ops[n] if n in block.ops else None)
                for g, block in zip(self._groups, net.blocks, strict=True)
                for o, n in enumerate(g.ops)
            ]
            self._costs[metric] = measure_candidate_costs(
                self._groups, refs, lambda: net(self.example_input()), metric
            )
        return {k: v.clone() for k, v in self._costs[metric].items()}
