"""``hpo=fixed``: constant hyper-parameters with an optional cosine or step schedule.

This is the DARTS / ISTA-NAS baseline: SGD, lr 0.025 annealed by cosine to 0.001,
momentum 0.9, weight decay 3e-4. AdamW is available too. The weight update is the shared
core in :mod:`dha_plugins.hpo.weight_update`, the same one ``hpo=hypergrad`` uses, so
the two differ only in how lr and wd move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from dha_core.budget import cosine_anneal
from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import HyperGradFn
from dha_plugins.hpo.weight_owner import WeightOwningHyperOptimizer
from dha_plugins.hpo.weight_update import apply_direction

__all__ = ["FixedHPOConfig", "FixedHyperOptimizer", "create_fixed", "scheduled_lr"]


class FixedHPOConfig(ComponentConfig):
    """Weight optimizer and lr schedule of the fixed baseline."""

    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="Weight optimizer.")
    lr: float = Field(0.025, gt=0, description="Initial (and, for schedule=constant, only) lr.")
    lr_min: float = Field(0.001, ge=0, description="Final lr of the cosine schedule.")
    wd: float = Field(3e-4, ge=0, description="Weight decay (L2 for SGD, decoupled for AdamW).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = Field(False, description="SGD Nesterov momentum.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW denominator term.")
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    step_every: int = Field(1000, ge=1, description="Steps between decays of the step schedule.")
    step_gamma: float = Field(0.1, gt=0, le=1, description="Factor of each step-schedule decay.")
    no_decay_groups: tuple[str, ...] = Field(
        ("no_decay",), description="Parameter groups (BN, bias) that get no weight decay."
    )

    @model_validator(mode="after")
    def _check(self) -> FixedHPOConfig:
        if self.schedule == "cosine" and self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        return self


def scheduled_lr(config: FixedHPOConfig, step: int, total_steps: int, progress: float = 0.0) -> float:
    """The learning rate of weight step ``step`` (0-based) out of ``total_steps``.

    Args:
        config: The schedule.
        step: Steps taken so far.
        total_steps: Planned steps; the cosine reaches ``lr_min`` there and stays. 0: no
            step plan (a time budget), the cosine follows ``progress`` alone.
        progress: The stage's progress in ``[0, 1]``; the cosine follows the larger of it
            and ``step / total_steps``.

    Returns:
        The lr.
    """
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr * config.step_gamma ** (step // config.step_every)
    t = min(step, total_steps) / total_steps if total_steps > 0 else 0.0
    return cosine_anneal(max(t, progress), config.lr, config.lr_min)


class FixedHyperOptimizer(WeightOwningHyperOptimizer):
    """Weight updates under a fixed schedule; nothing is learned, no hyper batch is used.

    Args:
        config: Optimizer and schedule.
    """


    config: FixedHPOConfig

    def __init__(self, config: FixedHPOConfig) -> None:
        super().__init__(config)
        self.total_steps = 1
        self.steps = 0
        self.progress = 0.0

    def attach(self, param_groups: Sequence[dict[str, Any]], total_steps: int) -> None:
        """Takes the weights; ``total_steps`` sets the length of the cosine schedule."""
        self._attach_weights(param_groups, self.config.wd)
        self.total_steps = max(int(total_steps), 0)
        self.steps = 0
        self._set_lr()

    def _set_lr(self) -> float:
        lr = scheduled_lr(self.config, self.steps, self.total_steps, self.progress)
        for g in self._groups:
            g["lr"] = lr
        return lr


    def on_progress(self, fraction: float) -> None:
        """The cosine follows a time budget's progress when it is ahead of the step plan."""
        self.progress = float(fraction)
        self._set_lr()

    @torch.no_grad()
    def step(self, hyper_grad: HyperGradFn | None = None) -> dict[str, float]:
        """One weight step with the scheduled lr; ``hyper_grad`` is ignored.

        Returns:
            ``{"lr", "wd"}``: the values this step used.
        """
        weights = self._require_attached()
        lr = self._set_lr()
        for group, indices in zip(self._groups, self._indices, strict=True):
            _, params, directions = weights.directions(group["params"], indices, group["weight_decay"])
            apply_direction(params, directions, lr)
        metrics = self.hyperparameters()
        self.steps += 1
        self._set_lr()
        return metrics | {"lr": lr}

    def hyperparameters(self) -> dict[str, float]:
        """Current lr and the weight decay of the first non-empty decaying group (0 when none)."""
        self._require_attached()
        wd = next((g["weight_decay"] for g in self._groups if g["decay"] and g["params"]), 0.0)
        return {"lr": float(self._groups[0]["lr"]), "wd": float(wd)}

    def state_dict(self) -> dict[str, Any]:
        weights = self._require_attached()
        return {"weights": weights.state_dict(), "steps": self.steps, "total_steps": self.total_steps,
                "progress": self.progress}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        weights = self._require_attached()
        weights.load_state_dict(state["weights"], self._flat)
        self.steps = int(state["steps"])
        self.total_steps = int(state["total_steps"])
        self.progress = float(state.get("progress", 0.0))
        self._set_lr()

    def report(self) -> dict[str, Any]:
        return {"final": self.hyperparameters(), "schedule": self.config.schedule, "steps": self.steps}


def create_fixed(config: FixedHPOConfig) -> FixedHyperOptimizer:
    """Constant lr/wd with an optional cosine or step schedule (baseline)."""
    return FixedHyperOptimizer(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("hpo", "fixed", create_fixed, config=FixedHPOConfig)
