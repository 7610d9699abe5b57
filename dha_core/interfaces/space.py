"""The :class:`SearchSpace` interface: a supernet, its choice points and child derivation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from dha_core.types import ChoiceGroup, DataSpec, MixingWeights, SelectedOp, Selection

__all__ = ["SearchSpace", "Supernet", "DataSpec", "SupportsDropPath"]


@runtime_checkable
class SupportsDropPath(Protocol):
    """Optional capability of a child network (:meth:`SearchSpace.build_child`,
    :meth:`SearchSpace.derive`): retrain and finetune stages schedule its drop-path
    probability with ``train.drop_path``. A child without it trains without drop-path."""

    def set_drop_path(self, prob: float) -> None: ...


class Supernet(nn.Module, ABC):
    """The over-parameterised network a space builds.

    ``forward(x, weights)`` mixes every choice group with ``weights``. Candidates outside
    ``weights.active`` must not be computed. It returns logits, or ``(logits, aux_logits)``
    in training mode when the space has an auxiliary head.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor, weights: MixingWeights | None = None) -> Any:  # noqa: D102
        ...

    def set_drop_path(self, prob: float) -> None:
        """Sets the drop-path probability; spaces without drop-path ignore it."""

    def fold_group(self, group: str, weights: torch.Tensor) -> bool:
        """Folds fixed mixing weights of a frozen group into the following affine layers.

        Args:
            group: Group name.
            weights: Fixed ``(edges, ops)`` weights of that group.

        Returns:
            True when the space folded the weights (the relaxation must then pass ones for
            that group's active pairs), False when the space does not support folding.
        """
        return False


class SearchSpace(ABC):
    """Describes a family of networks.

    A space is a light object built from its config and the :class:`DataSpec`. It builds
    the supernet, lists the choice groups any relaxation can drive, builds a standalone
    child for a discrete :class:`Selection`, and derives a child that keeps the trained
    supernet weights.
    """

    name: str = ""

    @abstractmethod
    def choice_groups(self) -> list[ChoiceGroup]:
        """Returns the choice groups, in a stable order. Empty for a fixed network."""

    @abstractmethod
    def build_supernet(self) -> Supernet:
        """Builds a freshly initialised supernet."""

    @abstractmethod
    def build_child(self, selection: Selection) -> nn.Module:
        """Builds a freshly initialised standalone network for ``selection``.

        The child's ``state_dict`` keys must not depend on trained values, so that
        :func:`dha_core.load_model` can rebuild it from the config and the selection.
        """

    @abstractmethod
    def derive(self, supernet: Supernet, selection: Selection) -> nn.Module:
        """Returns the child for ``selection`` with the supernet's trained weights.

        Each selected op's ``weight`` is folded into the child, so the child's eval-mode
        output equals ``supernet(x, weights)`` for weights that are zero outside the
        selection and equal to ``weight`` on it.
        """

    def genotype(self, selection: Selection) -> dict[str, Any]:
        """A human-readable, JSON-serialisable description of ``selection``."""
        groups = {g.name: g for g in self.choice_groups()}
        return {
            name: [{"edge": groups[name].edges[s.edge], "op": groups[name].ops[s.op], "weight": s.weight} for s in ops]
            for name, ops in selection.items()
        }

    def selection_from_genotype(self, genotype: dict[str, Any]) -> Selection:
        """Inverse of :meth:`genotype` for the default format written above.

        Raises:
            ValueError: The genotype does not fit this space (unknown group, edge or op).
        """
        groups = {g.name: g for g in self.choice_groups()}
        selection: Selection = {}
        for name, picks in genotype.items():
            if name not in groups:
                raise ValueError(f"genotype names an unknown choice group {name!r}")
            g = groups[name]
            try:
                selection[name] = [SelectedOp(g.edges.index(p["edge"]), g.ops.index(p["op"]), 1.0) for p in picks]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"genotype entry of {name!r} does not fit this space: {exc}") from None
        missing = set(groups) - set(selection)
        if missing:
            raise ValueError(f"genotype has no entry for group(s) {', '.join(sorted(missing))}")
        return selection

    def named_genotypes(self) -> dict[str, dict[str, Any]]:
        """Published architectures of this space by name (e.g. ``DARTS_V2``), in the
        :meth:`genotype` format; ``relax=fixed`` accepts these names. Default: none."""
        return {}

    def candidate_costs(self, metric: str = "params") -> dict[str, torch.Tensor]:
        """Cost of every candidate, group name -> ``(edges, ops)`` tensor.

        Args:
            metric: ``"params"``, ``"flops"`` or ``"latency"`` (seconds of a training
                forward and backward pass, where the space can time its candidates).

        Returns:
            Per-candidate costs; empty when the space has no choices or cannot measure.
        """
        return {}

    def selection_cost(self, selection: Selection, metric: str = "params") -> float:
        """Cost of the child for ``selection`` (``"params"`` or ``"flops"``)."""
        from dha_core.costs import count_flops, count_params

        child = self.build_child(selection)
        if metric == "params":
            return float(count_params(child))
        return float(count_flops(child, self.example_input()))

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero input batch of the shape the space expects."""
        spec = self.data_spec
        return torch.zeros(batch_size, spec.channels, spec.image_size, spec.image_size)

    data_spec: DataSpec
