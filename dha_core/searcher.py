"""The thin orchestrator: ``build()`` a :class:`Searcher`, ``fit()`` it, get a ready model.

The searcher composes three parts: a :class:`~dha_core.stage_builder.StageBuilder` that
assembles each stage of the run's plan (:func:`~dha_core.stage.plan_stages`), a
:class:`~dha_core.stage_runner.StageRunner` that runs each stage's loop and writes
checkpoints, and a :class:`~dha_core.results.ResultWriter` that evaluates the final model
and writes the run directory. The algorithm lives in the components and in
:mod:`dha_core.joint_step`.

Launched by torchrun (``WORLD_SIZE > 1``), :meth:`Searcher.fit` runs one search across
all processes (:mod:`dha_core.distributed`): every rank steps on its shard of the batch,
and only rank 0 evaluates and writes the run directory and checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dha_core.budget import Clock
from dha_core.checkpoint import load_checkpoint
from dha_core.config import RunConfig, resolve_config, save_config
from dha_core.config_files import apply_overrides, load_yaml
from dha_core.distributed import DistContext
from dha_core.errors import UserInputError
from dha_core.interfaces import SearchSpace
from dha_core.kinds import KIND_TABLE
from dha_core.precision import RunPerformance, thread_scope
from dha_core.results import ResultWriter, SearchResult
from dha_core.rundir import RunDir, default_run_name
from dha_core.runtime import resolve_device, seed_everything
from dha_core.stage import Stage, StageSpec, plan_stages, with_carried_overrun
from dha_core.stage_builder import StageBuilder
from dha_core.stage_runner import CHECKPOINT_FORMAT, EpochCallback, Interrupted, RunState, StageRunner

__all__ = ["build", "Searcher", "SearchResult", "Interrupted", "EpochCallback"]

log = logging.getLogger(__name__)


def build(
    space: str | Mapping[str, Any] | None = None,
    relax: str | Mapping[str, Any] | None = None,
    aug: str | Mapping[str, Any] | None = None,
    hpo: str | Mapping[str, Any] | None = None,
    dataset: str | Mapping[str, Any] | None = None,
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Searcher:
    """Builds a searcher for any combination of registered components.

    Args:
        space: Space name or config mapping, e.g. ``"mobilenet"`` or ``{"name": "darts", "C": 8}``.
        relax: Relaxation name or mapping.
        aug: Augmentation policy name or mapping.
        hpo: Hyper-optimizer name or mapping.
        dataset: Dataset name or mapping (the config's ``data`` section).
        config: A YAML path or mapping to start from; the other arguments override it.
        **overrides: Other sections as mappings (``train={"epochs": 2}``) or dotted keys
            (``**{"train.epochs": 2}``).

    Returns:
        A :class:`Searcher`; the config is fully validated already.

    Example:
        >>> import dha_core
        >>> searcher = dha_core.build(space="tiny", relax="uniform", aug="none", hpo="fixed",
        ...                           dataset="synthetic", train={"epochs": 1}, output={"dir": "/tmp/dha-doc"})
    """
    raw: dict[str, Any] = {}
    if isinstance(config, (str, Path)):
        raw = load_yaml(config)
    elif config is not None:
        raw = dict(config)
    selected = {"space": space, "relax": relax, "aug": aug, "hpo": hpo, "dataset": dataset}
    for kind in KIND_TABLE:
        value = selected[kind.name]
        if value is not None:
            raw[kind.field] = {"name": value} if isinstance(value, str) else dict(value)
    dotted = [f"{k}={v}" for k, v in overrides.items() if "." in k]
    for key, value in overrides.items():
        if "." in key:
            continue
        if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    raw, keys = apply_overrides(raw, dotted)
    return Searcher(resolve_config(raw, set_keys=keys))


class Searcher:
    """Runs a search described by a validated ``RunConfig``.

    Args:
        config: The validated config.
        run_dir: Explicit run directory (default: ``output.dir / output.name``).
        clock: Time source of the training budgets (injectable for tests).

    Attributes:
        plan: The run's stages, in order.
        builder: The stage builder, once :meth:`prepare` has run.
        epoch_callbacks: Called on rank 0 after each epoch-end checkpoint.
        dist: The distributed context (set by :meth:`fit` under torchrun, or by the caller).
    """

    def __init__(self, config: RunConfig, run_dir: str | Path | None = None, clock: Clock = time.perf_counter) -> None:
        self.config = config
        self.clock = clock
        name = config.output.name or default_run_name(config)
        self.run = RunDir(Path(run_dir) if run_dir is not None else Path(config.output.dir) / name)
        self.device = resolve_device(config.train.device)
        self.perf = RunPerformance.resolve(config.train, self.device)  # precision, memory format, compile
        self.plan: list[StageSpec] = plan_stages(config)
        self.builder: StageBuilder | None = None
        self.epoch_callbacks: list[EpochCallback] = []
        self.dist: DistContext | None = None
        self._resume_state: dict[str, Any] | None = None

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> Searcher:
        """Prepares to continue an interrupted run from ``checkpoints/last.pt``."""
        run = RunDir(run_dir)
        if not run.path.is_dir():
            raise UserInputError(f"run directory not found: {run.path}")
        if not run.config.is_file():
            raise UserInputError(f"{run.path} is not a dha run directory (no config.yaml)")
        if not run.last_checkpoint.is_file():
            raise UserInputError(f"no checkpoint to resume from: {run.last_checkpoint}")
        config = resolve_config(load_yaml(run.config))
        searcher = cls(config, run_dir=run.path)
        state = load_checkpoint(run.last_checkpoint)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UserInputError(f"{run.last_checkpoint}: not a dha checkpoint")
        searcher._resume_state = state
        return searcher

    @property
    def space(self) -> SearchSpace:
        """The search space (after :meth:`prepare`)."""
        assert self.builder is not None, "call prepare() first"
        return self.builder.space

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run directory (rank 0, or a single process)."""
        return self.dist is None or self.dist.is_main

    def prepare(self) -> None:
        """Builds the dataset (all splits) and the space, and checks that the relaxation can
        be set up on it (e.g. that ``relax=fixed``'s genotype exists and fits); nothing is
        written. Afterwards :attr:`builder` builds any stage of :attr:`plan`."""
        self.builder = StageBuilder.prepare(self.config, self.device, self.perf, self.dist, self.clock)

    def fit(self) -> SearchResult:
        """Runs every stage, derives the child, evaluates it and writes the run directory.

        Under torchrun (``WORLD_SIZE > 1``) every process calls this: they join the process
        group torchrun describes (created on first use and kept for the process's life, or
        the caller's own) and all return the same summary.

        Returns:
            The :class:`SearchResult`.

        Raises:
            UserInputError: Bad data or output location (before anything is written).
            NonFiniteError: Too many consecutive non-finite steps.
            Interrupted: Ctrl-C (after writing a checkpoint).
        """
        started_here = self.dist is None
        if started_here:
            self.dist = DistContext.start(self.device)
        if self.dist is not None:
            self.device = self.dist.device
            self.perf = RunPerformance.resolve(self.config.train, self.device)
        try:
            with thread_scope(self.config.train.threads):
                result = self._fit()
        except BaseException:
            # Another rank may never reach a barrier now: leave without waiting for it.
            if started_here and self.dist is not None:
                self.dist.close(wait=False)
                self.dist = None
            raise
        if started_here and self.dist is not None:
            self.dist.close()
            self.dist = None
        return result

    def _create_run_dir(self) -> None:
        if self._resume_state is None:
            RunDir.check_new(self.run.path, self.config.output.overwrite)
        self.run.create()
        if self._resume_state is None:
            save_config(self.config, self.run.config)

    def _fit(self) -> SearchResult:
        state = RunState()
        if self.dist is not None and self._resume_state is not None:
            # Every rank continues from rank 0's checkpoint, whatever the others read and when.
            self._resume_state = self.dist.broadcast(self._resume_state if self.dist.is_main else None)
        resume = self._resume_state
        seed_everything(self.config.train.seed)
        if self.dist is None:
            self.prepare()
            self._create_run_dir()
        else:
            self.dist.main_first(self.prepare)
            # One run directory for all ranks: rank 0's (a default name carries a timestamp).
            self.run = RunDir(self.dist.broadcast(self.run.path))
            self.dist.main_first(self._create_run_dir, others_too=False)
        builder = self.builder
        assert builder is not None
        if resume is not None:
            world = 1 if self.dist is None else self.dist.world_size
            saved_world = int(resume.get("world_size", 1))
            if saved_world != world and self.is_main:
                log.warning("resuming a run checkpointed with %d process(es) on %d: batches from here on "
                            "differ from an uninterrupted run", saved_world, world)
            state.restore(resume, self.run.metrics)
        runner = StageRunner(self.config, state, self.run, builder.normalizer(), builder.bundle.dataset.split("val"),
                             self.device, self.dist, self.epoch_callbacks)
        names = [spec.name for spec in self.plan]
        first = names.index(resume["stage"]) if resume is not None else 0
        supernet = None
        last: Stage | None = None
        for index in range(first, len(self.plan)):
            # A stage overruns by up to one step; the next budgeted stage absorbs it.
            spec = with_carried_overrun(self.plan, index, state.stage_train_s)
            stage = builder.build(spec, state.selection, supernet)
            runner.run(stage, resume if (resume is not None and index == first) else None)
            state.record(stage)
            if spec.searches:
                supernet = stage.net
            last = stage
        assert last is not None
        return ResultWriter(self.config, builder, self.perf, self.run, self.plan, self.dist).finish(last, state)
