"""The :class:`AugmentationPolicy` interface: batched augmentation and its policy update."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

__all__ = ["AugmentationPolicy"]


class AugmentationPolicy(nn.Module, ABC):
    """Augments a batch on the training device and, when learnable, updates its policy.

    Images are float tensors in ``[0, 1]`` of shape ``(B, C, H, W)``; normalisation is
    applied by the orchestrator after augmentation.
    """

    learnable: bool = False

    @abstractmethod
    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Any]:
        """Augments a batch.

        Args:
            images: ``(B, C, H, W)`` float images in ``[0, 1]``.
            generator: Optional seeded generator for the sampling (on CPU).

        Returns:
            ``(augmented, plan)``; ``plan`` records what each sample drew, and is passed
            back to :meth:`policy_step`. Fixed policies return ``None``.
        """

    def policy_step(self, per_sample_loss: torch.Tensor, plan: Any) -> dict[str, float]:
        """Step 3 of the joint step: one optimizer step on the policy parameters.

        Args:
            per_sample_loss: ``(B,)`` training losses ``L_i`` (detached by the policy).
            plan: What :meth:`forward` returned for this batch.

        Returns:
            Metrics to log (e.g. policy loss, entropy).
        """
        return {}

    def on_progress(self, fraction: float) -> None:
        """Called before every step with the stage's progress in ``[0, 1]`` (steps or
        time budget, whichever is further along); e.g. a warm-up of the policy's strength.
        The default does nothing."""

    def report(self) -> dict[str, Any]:
        """Summary fields (e.g. entropy, top pairs) written at the end of the search."""
        return {}
