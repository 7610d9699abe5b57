"""The base of the built-in hyper-optimizers: owns the parameter groups and the weight state.

``hpo=fixed`` and ``hpo=hypergrad`` differ only in how lr and wd move; taking the groups,
indexing the weights, holding the :class:`~dha_plugins.hpo.weight_update.WeightOptimizer`
and exposing its momentum to DARTS' unrolled step live here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from torch import Tensor

from dha_core.interfaces import HyperOptimizer
from dha_plugins.hpo.weight_update import OptimizerKind, WeightGroup, WeightOptimizer, normalize_groups

__all__ = ["WeightOptimizerFields", "WeightOwningHyperOptimizer"]


class WeightOptimizerFields(Protocol):
    """The config fields the base reads (both built-in configs have them)."""

    optimizer: OptimizerKind
    momentum: float
    nesterov: bool
    betas: tuple[float, float]
    eps: float
    no_decay_groups: tuple[str, ...]


class WeightOwningHyperOptimizer(HyperOptimizer):
    """Parameter groups, flat weight indices and the weight optimizer's state.

    Subclasses call :meth:`_attach_weights` from ``attach`` and read ``_groups`` (normalised
    groups), ``_indices`` (each group's positions in the flat list) and ``_flat`` (every
    weight, group by group).

    Args:
        config: A config with the :class:`WeightOptimizerFields`.
    """

    def __init__(self, config: WeightOptimizerFields) -> None:
        self.config = config
        self._groups: list[WeightGroup] = []
        self._indices: list[list[int]] = []
        self._flat: list[Tensor] = []
        self._flat_index: dict[int, int] = {}
        self._weights: WeightOptimizer | None = None

    def _attach_weights(self, param_groups: Sequence[dict[str, Any]], default_wd: float) -> WeightOptimizer:
        """Normalises the groups, indexes the weights and creates fresh optimizer state.

        Args:
            param_groups: The orchestrator's groups.
            default_wd: Initial ``weight_decay`` of the decaying groups.

        Returns:
            The new weight optimizer.
        """
        c = self.config
        self._groups = normalize_groups(param_groups, c.no_decay_groups, default_wd)
        self._indices, self._flat = [], []
        for g in self._groups:
            self._indices.append(list(range(len(self._flat), len(self._flat) + len(g["params"]))))
            self._flat.extend(g["params"])
        self._flat_index = {id(p): i for i, p in enumerate(self._flat)}
        self._weights = WeightOptimizer(
            c.optimizer, len(self._flat), momentum=c.momentum, nesterov=c.nesterov, betas=c.betas, eps=c.eps
        )
        return self._weights

    def _require_attached(self) -> WeightOptimizer:
        if self._weights is None:
            raise RuntimeError("call attach() before using the hyper-optimizer")
        return self._weights

    @property
    def param_groups(self) -> Sequence[dict[str, Any]]:
        """The attached groups (``name``, ``params``, ``lr``, ``weight_decay``, ``decay``)."""
        self._require_attached()
        return self._groups

    @property
    def momentum(self) -> float:
        return self.config.momentum if self.config.optimizer == "sgd" else 0.0

    def momentum_buffers(self, params: Sequence[Tensor]) -> list[Tensor | None]:
        """SGD momentum buffers of ``params`` as the next weight step will read them.

        Args:
            params: Weights, in any order; weights this optimizer does not own get None.

        Returns:
            One buffer (the live tensor, not a copy) or None per weight; all None for AdamW
            and before a weight's first step.
        """
        weights = self._require_attached()
        if self.momentum == 0.0:
            return [None] * len(params)
        return [
            None if (i := self._flat_index.get(id(p))) is None else weights.momentum_buffers[i] for p in params
        ]
