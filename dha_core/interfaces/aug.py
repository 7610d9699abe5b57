"""The :class:`AugmentationPolicy` interface: batched augmentation and its policy update."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["AugmentationPolicy", "PairProbabilities"]


class AugmentationPolicy(nn.Module, ABC):
    """Augments a batch on the training device and, when learnable, updates its policy.

    Images are float tensors in ``[0, 1]`` of shape ``(B, C, H, W)``; normalisation is
    applied by the orchestrator after augmentation.
    """

    learnable: bool = False
    """Whether :meth:`policy_step` learns (the joint step calls it only then)."""

    batch_generator: torch.Generator | None = None
    """Optional hook: in a distributed search the joint step sets this to a generator that is
    identical on every rank, for the draws that must agree across ranks (a learnable
    policy's batch-level sampling). A policy without such draws ignores it (the default)."""

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
        """Summary fields (e.g. entropy, top pairs) written at the end of the search.

        A policy over op pairs may include ``pair_probs`` (a square matrix, one row and
        column per op) and ``ops`` (the op names): see :class:`PairProbabilities`.
        """
        return {}

    def optimizer_state_dict(self) -> dict[str, Any] | None:
        """Optional hook: the state of the policy's own optimizer, saved in checkpoints.

        The default (None) means "no optimizer state" (fixed policies). A learnable policy
        that steps its own optimizer returns its state, so that a resumed run continues
        exactly.
        """
        return None

    def load_optimizer_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`optimizer_state_dict` returned (never called with None).
        The default does nothing."""


@dataclass(frozen=True)
class PairProbabilities:
    """The typed view of a pair policy's report that the plots read.

    Attributes:
        probs: ``probs[i][j]``: the probability of the pair (op ``i``, op ``j``).
        ops: The op names (may be empty).
    """

    probs: list[list[float]]
    ops: list[str]

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> PairProbabilities | None:
        """The pair probabilities in an :meth:`AugmentationPolicy.report`, or None."""
        if "pair_probs" not in report:
            return None
        return cls(probs=report["pair_probs"], ops=list(report.get("ops", [])))
