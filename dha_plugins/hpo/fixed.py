"""``hpo=fixed``: constant hyper-parameters with an optional cosine or step schedule.

This is the DARTS / ISTA-NAS baseline: SGD, lr 0.025 annealed by cosine to 0.001,
momentum 0.9, weight decay 3e-4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import HyperGradFn, HyperOptimizer


class FixedHPOConfig(ComponentConfig):
    """Weight optimizer and schedule."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.025, gt=0)
    lr_min: float = Field(0.001, ge=0, description="Final lr of the cosine schedule.")
    wd: float = Field(3e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    step_every: int = Field(1000, ge=1, description="Steps between decays of the step schedule.")
    step_gamma: float = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> FixedHPOConfig:
        if self.schedule == "cosine" and self.lr_min > self.lr:
            raise ValueError("lr_min must not exceed lr")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


def scheduled_lr(config: FixedHPOConfig, step: int, total_steps: int) -> float:
    """The learning rate at ``step`` of ``total_steps``."""
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr * config.step_gamma ** (step // config.step_every)
    t = min(step, total_steps) / max(total_steps, 1)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * t))


class FixedHyperOptimizer(HyperOptimizer):
    """A torch optimizer driven by a fixed schedule; nothing is learned."""

    hyper_batch = "none"

    def __init__(self, config: FixedHPOConfig) -> None:
        self.config = config
        self.optimizer: torch.optim.Optimizer | None = None
        self.total_steps = 1
        self.steps = 0

    def attach(self, param_groups: Sequence[dict[str, Any]], total_steps: int) -> None:
        c = self.config
        groups = [dict(g) for g in param_groups]
        for g in groups:
            g.setdefault("weight_decay", c.wd)
        if c.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, weight_decay=c.wd, nesterov=c.nesterov)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=c.lr, betas=c.betas, weight_decay=c.wd)
        self.total_steps = max(total_steps, 1)
        self._apply_lr()

    def _apply_lr(self) -> None:
        assert self.optimizer is not None
        lr = scheduled_lr(self.config, self.steps, self.total_steps)
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    @property
    def param_groups(self) -> Sequence[dict[str, Any]]:
        assert self.optimizer is not None, "attach() first"
        return self.optimizer.param_groups

    @property
    def momentum(self) -> float:
        return self.config.momentum if self.config.optimizer == "sgd" else 0.0

    def step(self, hyper_grad: HyperGradFn | None = None) -> dict[str, float]:
        assert self.optimizer is not None, "attach() first"
        self.optimizer.step()
        self.steps += 1
        self._apply_lr()
        return self.hyperparameters()

    def hyperparameters(self) -> dict[str, float]:
        assert self.optimizer is not None
        g = self.optimizer.param_groups[0]
        return {"lr": float(g["lr"]), "wd": float(g["weight_decay"])}

    def state_dict(self) -> dict[str, Any]:
        assert self.optimizer is not None
        return {"optimizer": self.optimizer.state_dict(), "steps": self.steps, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.optimizer is not None
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.total_steps = int(state["total_steps"])
        self._apply_lr()


def create_fixed(config: FixedHPOConfig, **_: Any) -> FixedHyperOptimizer:
    """Constant lr/wd with an optional cosine or step schedule (baseline)."""
    return FixedHyperOptimizer(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("hpo", "fixed", create_fixed, config=FixedHPOConfig)
