"""The :class:`HyperOptimizer` interface: the weight optimizer and its hyper-parameters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["HyperOptimizer", "HyperGradFn"]

HyperGradFn = Callable[[], Sequence[torch.Tensor | None]]
"""Returns ``grad L_hyper(theta')`` on a clean held-out batch, one entry per weight."""


class HyperOptimizer(ABC):
    """Owns the weight update and the hyper-parameters (lr, wd) that drive it.

    The orchestrator computes weight gradients and then calls :meth:`step` once per
    iteration. Inside, the optimizer performs the weight step under the current
    hyper-parameters (step 5 of the joint step) and, if it learns them, the hyper step
    (step 6), calling the ``hyper_grad`` closure when it needs a held-out gradient.
    """

    hyper_batch_size: int | None = None
    """Optional hook: the batch size of the held-out batches ``hyper_grad`` draws. The
    default (None) is the training batch size (``train.batch_size``)."""

    @abstractmethod
    def attach(self, param_groups: Sequence[dict[str, Any]], total_steps: int) -> None:
        """Takes ownership of the weights.

        Args:
            param_groups: ``[{"name": str, "params": [Tensor, ...]}, ...]``.
            total_steps: Planned number of weight steps (for schedules).
        """

    @abstractmethod
    def step(self, hyper_grad: HyperGradFn | None = None) -> dict[str, float]:
        """Weight step using the gradients in ``p.grad``, then any hyper step.

        Returns:
            Metrics to log; must include ``lr`` and ``wd``.
        """

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @property
    @abstractmethod
    def param_groups(self) -> Sequence[dict[str, Any]]:
        """The attached parameter groups."""

    @abstractmethod
    def hyperparameters(self) -> dict[str, float]:
        """Current values, e.g. ``{"lr": ..., "wd": ...}`` (first group's)."""

    @property
    def momentum(self) -> float:
        return 0.0

    def on_progress(self, fraction: float) -> None:
        """Called before every step with the stage's progress in ``[0, 1]`` (steps or
        time budget, whichever is further along), so that an lr decay can follow a time
        budget. The default does nothing."""

    def weights_changed(self) -> None:
        """Called when the network changed outside :meth:`step` (the orchestrator calls it
        after every epoch-end architecture update: ISTA recovery, BN folding, freezing).

        An optimizer that carries state tied to the old function, such as a pending
        one-step hypergradient, drops it here. The default does nothing.
        """

    def momentum_buffers(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """The momentum buffers the next weight step will use, for DARTS' unrolled step.

        Bilevel relaxations that unroll one weight step (``relax=softmax`` second order)
        read them from ``ArchStepContext.momentum_buffers``. The default says
        "no momentum state", which makes the unrolled step a plain gradient step.

        Args:
            params: Weights, in the caller's order.

        Returns:
            One tensor or None per weight.
        """
        return [None] * len(params)

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """All state needed to resume: buffers, hyper-parameters, their optimizer."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""

    def report(self) -> dict[str, Any]:
        return {"final": self.hyperparameters()}
