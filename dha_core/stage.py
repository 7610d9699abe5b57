"""A training stage: one set of components trained for some epochs by the joint step.

A search is one stage (the supernet under the chosen relaxation). Two-stage presets add a
``retrain`` stage (the derived child from scratch) and ``finetune_epochs`` adds a
``finetune`` stage (the derived child, keeping its weights). Every stage runs the same
loop; only the components differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dha_core.budget import StageBudget
from dha_core.data import BatchStream
from dha_core.interfaces import ArchRelaxation, ArchStepContext, AugmentationPolicy, HyperOptimizer, Supernet
from dha_core.joint_step import JointStep
from dha_core.types import ChoiceGroup, MixingWeights, Selection

__all__ = ["Stage", "NoArchitecture"]


class NoArchitecture(ArchRelaxation):
    """The relaxation of a fixed network: no groups, no parameters."""

    def setup(self, groups: Sequence[ChoiceGroup], space: Any = None) -> None:
        if groups:
            raise ValueError("NoArchitecture drives networks without choice groups only")

    def mixing_weights(self) -> MixingWeights:
        return MixingWeights({}, {})

    def selection(self) -> Selection:
        return {}

    def arch_step(self, ctx: ArchStepContext) -> dict[str, float]:
        return {}


@dataclass
class Stage:
    """Components and loop state of one stage."""

    name: str
    net: Supernet
    relax: ArchRelaxation
    aug: AugmentationPolicy
    hpo: HyperOptimizer
    epochs: int | None
    steps_per_epoch: int
    train_stream: BatchStream
    val_stream: BatchStream
    step_fn: JointStep
    generator: torch.Generator
    history: dict[str, Any] = field(default_factory=dict)
    budget: StageBudget = field(default_factory=lambda: StageBudget(1, None))

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net, "relax": self.relax, "aug": self.aug}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this stage exactly."""
        state: dict[str, Any] = {name: m.state_dict() for name, m in self.modules().items()}
        state["hpo"] = self.hpo.state_dict()
        opt_state = getattr(self.aug, "optimizer_state_dict", None)
        state["aug_optimizer"] = opt_state() if callable(opt_state) else None
        relax_extra = getattr(self.relax, "extra_state_dict", None)
        state["relax_extra"] = relax_extra() if callable(relax_extra) else None
        state["train_stream"] = self.train_stream.state_dict()
        state["val_stream"] = self.val_stream.state_dict()
        state["generator"] = self.generator.get_state()
        state["nonfinite_total"] = self.step_fn.nonfinite_total
        scaler = self.step_fn.scaler
        state["grad_scaler"] = scaler.state_dict() if scaler is not None else None
        state["history"] = self.history
        state["budget"] = self.budget.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, m in self.modules().items():
            m.load_state_dict(state[name])
        self.hpo.load_state_dict(state["hpo"])
        if state.get("aug_optimizer") is not None:
            self.aug.load_optimizer_state_dict(state["aug_optimizer"])  # type: ignore[attr-defined]
        if state.get("relax_extra") is not None:
            self.relax.load_extra_state_dict(state["relax_extra"])  # type: ignore[attr-defined]
        self.train_stream.load_state_dict(state["train_stream"])
        self.val_stream.load_state_dict(state["val_stream"])
        self.generator.set_state(state["generator"])
        self.step_fn.nonfinite_total = int(state["nonfinite_total"])
        if self.step_fn.scaler is not None and state.get("grad_scaler") is not None:
            self.step_fn.scaler.load_state_dict(state["grad_scaler"])
        self.history = state["history"]
        self.budget.load_state_dict(state["budget"])
