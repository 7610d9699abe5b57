"""The :class:`ArchRelaxation` interface: architecture parameters and their updates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dha_core.types import ChoiceGroup, MixingWeights, Selection

__all__ = ["ArchRelaxation", "ArchStepContext"]


@dataclass
class ArchStepContext:
    """What a relaxation may use for its architecture step.

    Attributes:
        loss: ``loss(batch) -> scalar`` mean loss of the current supernet under the
            relaxation's current mixing weights (builds a graph).
        weight_params: The network weights ``w``.
        weight_lr: The weight optimizer's current learning rate (DARTS' ``xi``).
        weight_momentum: Its momentum coefficient, for the unrolled step.
        weight_decay: Its weight decay.
        train_batch: The current training batch ``(x, y)``.
        val_batch: A validation batch, given to bilevel relaxations.
        step: Global step index.
        supernet: The network the relaxation drives (e.g. for ISTA's folding at a
            recovery inside the step).
        momentum_buffers: Bilevel relaxations only (None otherwise): the weight
            optimizer's momentum buffers, aligned with ``weight_params``, from
            :meth:`~dha_core.interfaces.HyperOptimizer.momentum_buffers`; None entries
            before a weight's first step.
    """

    loss: Callable[[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]
    weight_params: Sequence[torch.Tensor]
    weight_lr: float
    weight_momentum: float = 0.0
    weight_decay: float = 0.0
    train_batch: tuple[torch.Tensor, torch.Tensor] | None = None
    val_batch: tuple[torch.Tensor, torch.Tensor] | None = None
    step: int = 0
    supernet: nn.Module | None = None
    momentum_buffers: Sequence[torch.Tensor | None] | None = None


class ArchRelaxation(nn.Module, ABC):
    """Owns the architecture parameters and turns them into mixing weights.

    Life cycle, driven by the orchestrator:

    1. :meth:`setup` once with the space's choice groups.
    2. Every step, :meth:`mixing_weights` feeds the supernet forward.
    3. Single-level relaxations (``bilevel = False``) learn from the training backward:
       :meth:`arch_step` is called after ``loss.backward()``. Bilevel ones are called
       before the training forward, with ``ctx.val_batch`` set, and compute their own
       gradients.
    4. :meth:`on_epoch_end` runs recovery, freezing or temperature schedules.
    5. :meth:`selection` gives the discrete architecture.
    """

    bilevel: bool = False

    @abstractmethod
    def setup(self, groups: Sequence[ChoiceGroup], space: Any = None) -> None:
        """Creates the parameters for ``groups``. ``space`` gives access to costs."""

    @abstractmethod
    def mixing_weights(self) -> MixingWeights:
        """The current weights for every group (differentiable w.r.t. arch params)."""

    @abstractmethod
    def selection(self) -> Selection:
        """The current discrete architecture."""

    @abstractmethod
    def arch_step(self, ctx: ArchStepContext) -> dict[str, float]:
        """Updates the architecture parameters; returns metrics to log."""

    def arch_parameters(self) -> list[nn.Parameter]:
        """The learnable architecture parameters."""
        return [p for p in self.parameters() if p.requires_grad]

    def on_epoch_end(self, epoch: int, supernet: nn.Module | None = None) -> dict[str, Any]:
        """Per-epoch work (recovery, freezing, schedules).

        Returns:
            Metrics/events to log. Non-empty means the network's function may have changed;
            the orchestrator then calls ``hpo.weights_changed()``.
        """
        return {}

    def on_progress(self, fraction: float) -> None:
        """Called before every step with the stage's progress in ``[0, 1]``: the larger of
        the fraction of planned steps taken and the fraction of the time budget spent.
        Schedules that follow the budget (recovery cadence, temperatures) read it here.
        The default does nothing."""

    def finalize(self, supernet: nn.Module | None = None) -> dict[str, Any]:
        """Fixes the architecture at the current selection: the end of the search.

        Afterwards :meth:`mixing_weights` is constant, only the selected pairs are computed
        and :meth:`arch_step` changes nothing, so the rest of the run trains the child
        inside the supernet (the authors' second phase, without a restart). The default
        does nothing and returns ``{}``: such a relaxation keeps searching to the end.

        Returns:
            Events to log; non-empty means the network's function may have changed.
        """
        return {}

    def should_stop(self) -> bool:
        """True when the search may end early (e.g. every ISTA node frozen)."""
        return False

    def report(self) -> dict[str, Any]:
        """Summary fields written at the end of the search."""
        return {}
