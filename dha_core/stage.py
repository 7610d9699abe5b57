"""A training stage: what it trains (:class:`StageSpec`) and its built components (:class:`Stage`).

A search is one stage (the supernet under the chosen relaxation). Two-stage presets add a
``retrain`` stage (the derived child from scratch) and ``finetune_epochs`` adds a
``finetune`` stage (the derived child, keeping its weights). Every stage runs the same
loop (:mod:`dha_core.stage_runner`); only the components differ. :func:`plan_stages` turns
a run config into the list of stage specs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import torch
from torch import nn

from dha_core.budget import StageBudget
from dha_core.config import RunConfig, stage_epochs
from dha_core.config_base import ComponentConfig
from dha_core.data import BatchStream
from dha_core.interfaces import ArchRelaxation, ArchStepContext, AugmentationPolicy, HyperOptimizer, Supernet
from dha_core.joint_step import JointStep
from dha_core.precision import RunPerformance
from dha_core.seeds import StageSeed
from dha_core.types import ChoiceGroup, MixingWeights, Selection

__all__ = ["Stage", "StageSource", "StageSpec", "NoArchitecture", "plan_stages", "with_carried_overrun"]


class StageSource(Enum):
    """The network a stage trains."""

    SUPERNET = "supernet"
    """The space's supernet under the run's relaxation: the search."""
    NEW_CHILD = "new_child"
    """The selected child, freshly initialised (``retrain``)."""
    DERIVED_CHILD = "derived_child"
    """The selected child with the search's trained weights (``finetune``)."""


@dataclass(frozen=True)
class StageSpec:
    """What one stage trains, with what and for how long.

    Attributes:
        name: The stage's label in metrics, the summary and checkpoints.
        source: The network it trains.
        aug: The augmentation policy's config.
        hpo: The hyper-optimizer's config.
        epochs: Epoch limit, or None when the time budget alone bounds the stage.
        time_budget_s: Training seconds, or None.
        seed: The offset of the stage's seed from ``train.seed``.
    """

    name: str
    source: StageSource
    aug: ComponentConfig
    hpo: ComponentConfig
    epochs: int | None
    time_budget_s: float | None
    seed: StageSeed

    @property
    def searches(self) -> bool:
        """Whether the stage searches the architecture (its relaxation selects the child)."""
        return self.source is StageSource.SUPERNET


def plan_stages(config: RunConfig) -> list[StageSpec]:
    """The stages of a run, in order: the search, then ``retrain`` and ``finetune`` when configured."""
    train = config.train
    plan = [StageSpec("search", StageSource.SUPERNET, config.aug, config.hpo,
                      stage_epochs(train.epochs, train.time_budget_s), train.time_budget_s, StageSeed.SEARCH)]
    if config.retrain is not None:
        retrain = config.retrain
        plan.append(StageSpec("retrain", StageSource.NEW_CHILD, retrain.aug, retrain.hpo,
                              stage_epochs(retrain.epochs, retrain.time_budget_s), retrain.time_budget_s,
                              StageSeed.CHILD))
    if train.finetune_epochs > 0:
        plan.append(StageSpec("finetune", StageSource.DERIVED_CHILD, config.aug, config.hpo, train.finetune_epochs,
                              None, StageSeed.CHILD))
    return plan


MIN_BUDGET_SHARE = 0.05
"""The least share of its own budget a stage keeps after earlier stages' overruns."""


def with_carried_overrun(plan: Sequence[StageSpec], index: int, stage_train_s: Mapping[str, float]) -> StageSpec:
    """Stage ``index`` of ``plan`` with the earlier stages' budget overruns taken from its budget.

    A stage stops after the step that crosses its budget, so it overruns by up to one step;
    a DARTS bilevel step on the full supernet takes about a minute on 2 CPU cores. Taking the
    overrun from the next budgeted stage keeps a run's training time within one step of the
    sum of its stages' budgets. Underruns (a stage that stops early) are not carried.

    Args:
        plan: The run's stages.
        index: The stage to adjust.
        stage_train_s: Training seconds spent per stage so far (restored on resume, so a
            resumed stage gets the same budget).

    Returns:
        The spec, with ``time_budget_s`` reduced (to at least ``MIN_BUDGET_SHARE`` of it).
    """
    spec = plan[index]
    if spec.time_budget_s is None:
        return spec
    overrun = sum(max(stage_train_s.get(earlier.name, 0.0) - earlier.time_budget_s, 0.0)
                  for earlier in plan[:index] if earlier.time_budget_s is not None)
    if overrun <= 0.0:
        return spec
    return replace(spec, time_budget_s=max(spec.time_budget_s - overrun, MIN_BUDGET_SHARE * spec.time_budget_s))


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

    spec: StageSpec
    net: Supernet
    relax: ArchRelaxation
    aug: AugmentationPolicy
    hpo: HyperOptimizer
    steps_per_epoch: int
    train_stream: BatchStream
    val_stream: BatchStream
    step_fn: JointStep
    generator: torch.Generator
    history: dict[str, Any] = field(default_factory=dict)
    budget: StageBudget = field(default_factory=lambda: StageBudget(1, None))
    perf: RunPerformance | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def epochs(self) -> int | None:
        return self.spec.epochs

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net, "relax": self.relax, "aug": self.aug}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this stage exactly."""
        state: dict[str, Any] = {name: m.state_dict() for name, m in self.modules().items()}
        state["hpo"] = self.hpo.state_dict()
        state["aug_optimizer"] = self.aug.optimizer_state_dict()
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
            self.aug.load_optimizer_state_dict(state["aug_optimizer"])
        self.train_stream.load_state_dict(state["train_stream"])
        self.val_stream.load_state_dict(state["val_stream"])
        self.generator.set_state(state["generator"])
        self.step_fn.nonfinite_total = int(state["nonfinite_total"])
        if self.step_fn.scaler is not None and state.get("grad_scaler") is not None:
            self.step_fn.scaler.load_state_dict(state["grad_scaler"])
        self.history = state["history"]
        self.budget.load_state_dict(state["budget"])
