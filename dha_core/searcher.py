"""The thin orchestrator: ``build()`` a :class:`Searcher`, ``fit()`` it, get a ready model.

The searcher wires components together, runs the stages' loops, writes the run
directory and checkpoints. The algorithm lives in the components and in
:mod:`dha_core.joint_step`.

Launched by torchrun (``WORLD_SIZE > 1``), :meth:`Searcher.fit` runs one search across
all processes (:mod:`dha_core.distributed`): every rank steps on its shard of the batch,
and only rank 0 evaluates and writes the run directory and checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dha_core import components as comp
from dha_core.checkpoint import atomic_save, load_checkpoint
from dha_core.budget import Clock, StageBudget
from dha_core.config import apply_overrides, load_yaml, resolve_config, save_config, search_fraction, stage_epochs
from dha_core.costs import count_flops, count_params
from dha_core.data import BatchStream, eval_batches
from dha_core.distributed import DistContext
from dha_core.errors import UserInputError
from dha_core.evaluate import evaluate
from dha_core.fixed_network import FixedNetwork
from dha_core.interfaces import SearchSpace
from dha_core.joint_step import JointStep, split_output
from dha_core.model_io import NormalizedModel, save_model
from dha_core.progress import ProgressReporter
from dha_core.precision import RunPerformance, thread_scope
from dha_core.rundir import MetricsLog, RunDir, default_run_name
from dha_core.runtime import resolve_device, rng_state, seed_everything, set_rng_state
from dha_core.stage import NoArchitecture, Stage
from dha_core.types import Selection, selection_from_json, selection_to_json

__all__ = ["build", "Searcher", "SearchResult", "Interrupted", "EpochCallback"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "dha.checkpoint/1"

EpochCallback = Callable[[str, int, dict[str, Any], Path], None]
"""``(stage, epoch, metrics row, checkpoint path)``, called on rank 0 after each epoch-end
checkpoint is written (e.g. to report progress and the checkpoint to Ray Tune)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a search: a checkpoint was written first."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"interrupted; checkpoint written, continue with: dha resume {run_dir}")
        self.run_dir = run_dir


@dataclass
class SearchResult:
    """What :meth:`Searcher.fit` returns.

    Attributes:
        model: The ready-to-use model (takes ``[0, 1]`` images), in eval mode.
        genotype: The space's description of the selected architecture.
        summary: Everything written to ``summary.json``.
        selection: The discrete selection per choice group.
        run_dir: The run directory.
    """

    model: NormalizedModel
    genotype: dict[str, Any]
    summary: dict[str, Any]
    selection: Selection = field(default_factory=dict)
    run_dir: Path | None = None


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
    for key, value in {"space": space, "relax": relax, "aug": aug, "hpo": hpo, "data": dataset}.items():
        if value is not None:
            raw[key] = {"name": value} if isinstance(value, str) else dict(value)
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
    """

    def __init__(self, config: Any, run_dir: str | Path | None = None, clock: Clock = time.perf_counter) -> None:
        self.config = config
        self.clock = clock
        name = config.output.name or default_run_name(config)
        self.run = RunDir(Path(run_dir) if run_dir is not None else Path(config.output.dir) / name)
        self.device = resolve_device(config.train.device)
        self.perf = RunPerformance.resolve(config.train, self.device)  # precision, memory format, compile
        self.metrics = MetricsLog()
        self.global_step = 0
        self.wall_before = 0.0
        self.stage_walls: dict[str, float] = {}
        self.stage_train_s: dict[str, float] = {}
        self.reports: dict[str, Any] = {}
        self.selection: Selection = {}
        self._resume_state: dict[str, Any] | None = None
        self.epoch_callbacks: list[EpochCallback] = []
        self.dist: DistContext | None = None

    # ----------------------------------------------------------------- resume
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

    # ------------------------------------------------------------------ stages
    def _normalizer(self, spec: dict[str, Any]) -> Any:
        mean = torch.tensor(spec["mean"], device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(spec["std"], device=self.device).view(1, -1, 1, 1)
        return lambda x: (x - mean) / std

    def _make_stage(self, name: str, net: Any, relax: Any, aug_cfg: Any, hpo_cfg: Any, epochs: int | None,
                    time_budget_s: float | None, seed_offset: int) -> Stage:
        cfg = self.config.train
        net = self.perf.prepare_module(net.to(self.device))
        relax = relax.to(self.device)
        aug = comp.build_aug(aug_cfg, self.bundle.spec).to(self.device)
        hpo = comp.build_hpo(hpo_cfg)
        seed = cfg.seed + seed_offset
        # Batch sizes are per process: a distributed run's effective batch is world_size times larger.
        stream = BatchStream if self.dist is None else self.dist.stream
        train_stream = stream(self.bundle.dataset.split("train"), cfg.batch_size, seed, cfg.workers, "train")
        hyper_bs = getattr(hpo_cfg, "hyper_batch_size", None) or cfg.batch_size
        val_stream = stream(self.bundle.dataset.split("val"), hyper_bs, seed + 7919, cfg.workers, "val")
        steps = train_stream.batches_per_cycle()
        if cfg.max_steps_per_epoch is not None:
            steps = min(steps, cfg.max_steps_per_epoch)
        total_steps = None if epochs is None else epochs * steps
        # 0 planned steps: the budget alone drives schedules (through on_progress).
        hpo.attach(comp.weight_param_groups(net), total_steps=total_steps or 0)
        generator = torch.Generator().manual_seed(seed + 104729)
        step_fn = JointStep(net, relax, aug, hpo, self._normalizer(self.bundle.spec), self.device,
                            val_stream.next, cfg.grad_clip, cfg.aux_weight, cfg.max_nonfinite_steps, generator,
                            dist=self.dist, sample_seed=seed + 130363, perf=self.perf)
        budget = StageBudget(total_steps, time_budget_s, self.clock)
        return Stage(name, net, relax, aug, hpo, epochs, steps, train_stream, val_stream, step_fn, generator,
                     budget=budget)

    def prepare(self) -> None:
        """Builds the dataset (all splits) and the space, and checks that the relaxation can
        be set up on it (e.g. that ``relax=fixed``'s genotype exists and fits); nothing is written."""
        self.bundle = comp.build_dataset(self.config)
        self.space: SearchSpace = comp.build_space(self.config.space, self.bundle.spec)
        cfg = self.config.train
        # Built here so that a bad genotype fails before anything is written; the search
        # stage takes this instance.
        self._prepared_relax: Any = comp.build_relax(self.config.relax, self.space, None,
                                                     epochs=stage_epochs(cfg.epochs, cfg.time_budget_s), seed=cfg.seed)

    def search_stage(self) -> Stage:
        """The search stage's components, ready to step (after :meth:`prepare`)."""
        return self._search_stage()

    def _search_stage(self) -> Stage:
        supernet = self.space.build_supernet()
        cfg = self.config.train
        epochs = stage_epochs(cfg.epochs, cfg.time_budget_s)
        relax = self._prepared_relax
        self._prepared_relax = None
        if relax is None:  # a second search stage from the same preparation
            relax = comp.build_relax(self.config.relax, self.space, supernet, epochs=epochs, seed=cfg.seed)
        return self._make_stage("search", supernet, relax, self.config.aug, self.config.hpo, epochs,
                                cfg.time_budget_s, 0)

    def _child_stage(self, name: str, selection: Selection, from_scratch: bool, supernet: Any = None) -> Stage:
        if from_scratch:
            child = self.space.build_child(selection)
            retrain = self.config.retrain
            aug_cfg, hpo_cfg = retrain.aug, retrain.hpo
            epochs, budget = stage_epochs(retrain.epochs, retrain.time_budget_s), retrain.time_budget_s
        else:
            child = self.space.derive(supernet, selection) if supernet is not None else self.space.build_child(selection)
            aug_cfg, hpo_cfg = self.config.aug, self.config.hpo
            epochs, budget = self.config.train.finetune_epochs, None
        relax = NoArchitecture()
        relax.setup([])
        return self._make_stage(name, FixedNetwork(child), relax, aug_cfg, hpo_cfg, epochs, budget, 1000)

    def _stage_plan(self) -> list[str]:
        plan = ["search"]
        if self.config.retrain is not None:
            plan.append("retrain")
        if self.config.train.finetune_epochs > 0:
            plan.append("finetune")
        return plan

    # --------------------------------------------------------------- the run
    @property
    def is_main(self) -> bool:
        """Whether this process writes the run directory (rank 0, or a single process)."""
        return self.dist is None or self.dist.is_main

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
        start = time.perf_counter()
        cfg = self.config
        if self.dist is not None and self._resume_state is not None:
            # Every rank continues from rank 0's checkpoint, whatever the others read and when.
            self._resume_state = self.dist.broadcast(self._resume_state if self.dist.is_main else None)
        resume = self._resume_state
        seed_everything(cfg.train.seed)
        if self.dist is None:
            self.prepare()
            self._create_run_dir()
        else:
            self.dist.main_first(self.prepare)
            # One run directory for all ranks: rank 0's (a default name carries a timestamp).
            self.run = RunDir(self.dist.broadcast(self.run.path))
            self.dist.main_first(self._create_run_dir, others_too=False)
        if resume is not None:
            world = 1 if self.dist is None else self.dist.world_size
            saved_world = int(resume.get("world_size", 1))
            if saved_world != world and self.is_main:
                log.warning("resuming a run checkpointed with %d process(es) on %d: batches from here on "
                            "differ from an uninterrupted run", saved_world, world)
            self.global_step = int(resume["global_step"])
            self.wall_before = float(resume["wall_s"])
            self.stage_walls = dict(resume["stage_walls"])
            self.stage_train_s = dict(resume.get("stage_train_s", {}))
            self.reports = dict(resume["reports"])
            self.selection = selection_from_json(resume["selection"])
            self.metrics = MetricsLog.load(self.run.metrics, max_step=self.global_step)
        self._start = start

        plan = self._stage_plan()
        first = plan.index(resume["stage"]) if resume is not None else 0
        supernet = None
        for index in range(first, len(plan)):
            name = plan[index]
            if name == "search":
                stage = self._search_stage()
            else:
                stage = self._child_stage(name, self.selection, from_scratch=(name == "retrain"), supernet=supernet)
            state = resume["stage_state"] if (resume is not None and index == first) else None
            self._run_stage(stage, state, resume if state is not None else None)
            if name == "search":
                self.selection = stage.relax.selection()
                self.reports["policy"] = stage.aug.report()
                self.reports["relax"] = stage.relax.report()
                self.reports["hpo"] = stage.hpo.report()
                self.reports["search_history"] = stage.history
                supernet = stage.net
            else:
                self.reports[f"{name}_hpo"] = stage.hpo.report()
                self.reports[f"{name}_policy"] = stage.aug.report()
            last_stage = stage
        return self._finish(last_stage, supernet)

    def _run_stage(self, stage: Stage, state: dict[str, Any] | None, resume: dict[str, Any] | None) -> None:
        cfg = self.config.train
        epoch, step_in_epoch = 0, 0
        if state is not None and resume is not None:
            stage.load_state_dict(state)
            epoch, step_in_epoch = int(resume["epoch"]), int(resume["step_in_epoch"])
            set_rng_state(resume["rng"])
        else:
            stage.history.setdefault("policy_start", stage.aug.report())
            stage.history.setdefault("selection", [])
            stage.history.setdefault("initial_selection", selection_to_json(stage.relax.selection()))
        stage_start = time.perf_counter() - self.stage_walls.get(stage.name, 0.0)
        stop_reason = stage.history.get("stopped_early")
        progress = ProgressReporter(cfg.progress if self.is_main else "off", stage.name, stage.epochs,
                                    stage.steps_per_epoch, epoch, cfg.progress_every)
        try:
            while (stage.epochs is None or epoch < stage.epochs) and stop_reason is None:
                progress.start_epoch(epoch, step_in_epoch)
                while step_in_epoch < stage.steps_per_epoch:
                    self._apply_progress(stage)
                    stage.budget.start()
                    outcome = stage.step_fn(stage.train_stream.next(), self.global_step)
                    stage.budget.stop()
                    self.stage_train_s[stage.name] = stage.budget.train_s
                    self.global_step += 1
                    step_in_epoch += 1
                    if self.global_step % cfg.log_every == 0 or outcome.skipped:
                        self.metrics.append({"stage": stage.name, "epoch": epoch, "step": self.global_step,
                                             **outcome.metrics})
                    progress.step(None if outcome.skipped else outcome.metrics)
                    self.stage_walls[stage.name] = time.perf_counter() - stage_start
                    if self.global_step % cfg.checkpoint_every == 0:
                        self._checkpoint(stage, epoch, step_in_epoch)
                    if self._over_budget(stage):
                        stop_reason = "time_budget"
                        break
                progress.end_steps()
                row = None
                if stop_reason is None or step_in_epoch == stage.steps_per_epoch:
                    row = self._end_epoch(stage, epoch, last=stop_reason is not None)
                    epoch += 1
                    step_in_epoch = 0
                elif stop_reason is not None:
                    row = self._end_epoch(stage, epoch, last=True)  # validation of the partial last epoch
                if stop_reason is None and stage.relax.should_stop():
                    stop_reason = "all_frozen"
                if stop_reason is not None:
                    stage.history["stopped_early"] = stop_reason
                    log.info("%s stage stops after epoch %d: %s", stage.name, epoch, stop_reason)
                self.stage_walls[stage.name] = time.perf_counter() - stage_start
                written = self._checkpoint(stage, epoch, step_in_epoch)
                if written and row is not None:
                    for callback in self.epoch_callbacks:
                        callback(stage.name, epoch - 1, row, self.run.last_checkpoint)
                progress.end_epoch(row)
        except KeyboardInterrupt:
            self._checkpoint(stage, epoch, step_in_epoch)
            raise Interrupted(self.run.path) from None
        finally:
            progress.close()
        progress.write(f"{stage.name}: {epoch} epochs, {self.stage_walls.get(stage.name, 0.0):.1f}s")

    def _apply_progress(self, stage: Stage) -> None:
        """Feeds the stage's progress to every schedule, and ends the search at
        ``train.search_fraction`` (once)."""
        fraction = stage.budget.fraction()
        stage.net.set_drop_path(self.config.train.drop_path * fraction)
        stage.hpo.on_progress(fraction)
        stage.aug.on_progress(fraction)
        stage.relax.on_progress(fraction)
        end = search_fraction(self.config)
        if stage.name == "search" and "finalized" not in stage.history and end < 1.0 and fraction >= end:
            events = stage.relax.finalize(stage.net)
            stage.history["finalized"] = {"step": self.global_step, "fraction": fraction}
            if events:
                stage.hpo.weights_changed()
                self.metrics.append({"stage": stage.name, "step": self.global_step, "arch/finalized": 1.0,
                                     **{f"arch/{k}": float(v) for k, v in events.items()
                                        if isinstance(v, (int, float)) and not isinstance(v, bool)}})
                log.info("%s: architecture fixed at %.0f%% of the stage (step %d)", stage.name, 100 * fraction,
                         self.global_step)

    def _over_budget(self, stage: Stage) -> bool:
        if stage.budget.time_budget_s is None:
            return False
        over = stage.budget.train_s >= stage.budget.time_budget_s
        # Clocks differ between ranks: stop everywhere as soon as one rank is over.
        return over if self.dist is None else self.dist.any(over)

    def _budget_used(self) -> dict[str, float]:
        """Fraction of each stage's time budget spent on training."""
        budgets = {"search": self.config.train.time_budget_s}
        if self.config.retrain is not None:
            budgets["retrain"] = self.config.retrain.time_budget_s
        return {name: self.stage_train_s.get(name, 0.0) / budget for name, budget in budgets.items()
                if budget is not None}

    def _elapsed(self) -> float:
        return self.wall_before + (time.perf_counter() - self._start)

    def _end_epoch(self, stage: Stage, epoch: int, last: bool = False) -> dict[str, Any]:
        # Every rank recovers (deterministic given the identical codes); rank 0 evaluates.
        events: dict[str, Any] = {}
        if (stage.epochs is None or epoch + 1 < stage.epochs) and not last:
            events = stage.relax.on_epoch_end(epoch, stage.net)
            if events:  # the relaxation did something: the network's function may have moved
                stage.hpo.weights_changed()
        # After the last epoch the architecture is kept: a recovery now could select ops that
        # were never trained, and the derived child must contain only trained ops.
        row: dict[str, Any] = {"stage": stage.name, "epoch": epoch, "step": self.global_step}
        row.update({f"arch/{k}": float(v) for k, v in (events or {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
        evaluate_now = (epoch + 1) % self.config.train.eval_every == 0 or epoch + 1 == stage.epochs or last
        if evaluate_now and self.is_main:
            val = self._evaluate_stage(stage, "val")
            row.update({"val_acc": val["acc"], "val_loss": val["loss"]})
        self.metrics.append(row)
        selection = stage.relax.selection()
        stage.history["selection"].append({"epoch": epoch, "selection": selection_to_json(selection)})
        return row

    @torch.no_grad()
    def _evaluate_stage(self, stage: Stage, split: str) -> dict[str, float]:
        stage.net.eval()
        stage.relax.eval()  # e.g. Gumbel evaluates its argmax instead of sampling
        weights = stage.relax.mixing_weights()
        normalize = self._normalizer(self.bundle.spec)
        batches = eval_batches(self.bundle.dataset.split(split), self.config.train.eval_batch_size,
                               self.config.train.workers)
        out = evaluate(lambda x: split_output(stage.net(normalize(x), weights))[0], batches, self.device)
        stage.net.train()
        stage.relax.train()
        return out

    def _checkpoint(self, stage: Stage, epoch: int, step_in_epoch: int) -> bool:
        """Writes ``checkpoints/last.pt`` (rank 0 only: the state is the same on every rank)."""
        if not self.is_main:
            return False
        if stage.step_fn.nonfinite_run > 0 or not _all_finite(stage.net):
            # Keep the last good checkpoint while steps are skipped or weights have diverged.
            log.warning("checkpoint at step %d not written: non-finite state", self.global_step)
            return False
        # Metrics first: on resume, rows past the checkpoint's step are dropped.
        self.metrics.save(self.run.metrics)
        atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "stage": stage.name,
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": self.global_step,
                "wall_s": self._elapsed(),
                "stage_walls": self.stage_walls,
                "stage_train_s": self.stage_train_s,
                "reports": self.reports,
                "selection": selection_to_json(self.selection),
                "stage_state": stage.state_dict(),
                "rng": rng_state(),
                "world_size": 1 if self.dist is None else self.dist.world_size,
            },
            self.run.last_checkpoint,
        )
        return True

    # ---------------------------------------------------------------- finish
    def _finish(self, stage: Stage, supernet: Any) -> SearchResult:
        if stage.name == "search":
            child = self.space.derive(stage.net, self.selection)
        else:
            assert isinstance(stage.net, FixedNetwork)
            child = stage.net.net
        self.perf.restore_module(child)  # the saved model is contiguous fp32, like a reload
        model = NormalizedModel(child, self.bundle.spec["mean"], self.bundle.spec["std"]).to(self.device).eval()
        if self.dist is None:
            return self._evaluate_and_write(model, child, stage)
        # Rank 0 evaluates and writes; the others wait for its summary (or its failure).
        summary: dict[str, Any] | None = None
        if self.dist.is_main:
            try:
                summary = self._evaluate_and_write(model, child, stage).summary
            except BaseException as exc:
                self.dist.broadcast({"error": f"rank 0 failed while finishing: {type(exc).__name__}: {exc}"})
                raise
        received = self.dist.broadcast({"summary": summary})
        if "error" in received:
            raise RuntimeError(received["error"])
        summary = received["summary"]
        assert summary is not None
        return SearchResult(model=model, genotype=summary["genotype"], summary=summary, selection=self.selection,
                            run_dir=self.run.path)

    def _evaluate_and_write(self, model: NormalizedModel, child: Any, stage: Stage) -> SearchResult:
        batches = eval_batches(self.bundle.dataset.split("test"), self.config.train.eval_batch_size,
                               self.config.train.workers)
        test = evaluate(model, batches, self.device)
        val = evaluate(model, eval_batches(self.bundle.dataset.split("val"), self.config.train.eval_batch_size,
                                           self.config.train.workers), self.device)
        genotype = self.space.genotype(self.selection)
        example = self.space.example_input().to(self.device)
        hyper = self.reports.get("hpo", {}).get("final", {})
        summary: dict[str, Any] = {
            "test_acc": test["acc"],
            "test_loss": test["loss"],
            "val_acc": val["acc"],
            "params": count_params(child, exclude=("auxiliary",)),
            "flops": count_flops(model, example),
            "genotype": genotype,
            "selection": selection_to_json(self.selection),
            "final_lr": hyper.get("lr"),
            "final_wd": hyper.get("wd"),
            "policy": _top_level(self.reports.get("policy", {})),
            "relax": self.reports.get("relax", {}),
            "hpo": self.reports.get("hpo", {}),
            "nonfinite_skipped": int(stage.step_fn.nonfinite_total),
            "stopped_early": self.reports.get("search_history", {}).get("stopped_early"),
            "steps": self.global_step,
            "stage_wall_s": dict(self.stage_walls),
            "stage_train_s": dict(self.stage_train_s),
            "budget_used": self._budget_used(),
            "arch": _arch_summary(self.reports.get("search_history", {}), self.selection),
            "wall_s": self._elapsed(),
            "components": {k: getattr(self.config, k).name for k in ("space", "relax", "aug", "hpo", "data")},
            "device": str(self.device),
            "performance": self.perf.describe(),
        }
        for name in ("retrain", "finetune"):
            if f"{name}_hpo" in self.reports:
                summary[f"{name}_final"] = self.reports[f"{name}_hpo"].get("final", {})
        save_model(model, self.run.model, space_config=self.config.space.model_dump(mode="json"),
                   data_spec=self.bundle.spec, selection=self.selection,
                   extra={"test_acc": test["acc"], "eval_batch_size": self.config.train.eval_batch_size})
        self.run.write_json(self.run.genotype, genotype)
        self.metrics.save(self.run.metrics)
        if self.config.output.plots:
            from dha_core.plots import write_plots

            write_plots(self.run.plots, self.metrics, self.reports, self.space, self.selection)
        self.run.write_json(self.run.summary, summary)
        return SearchResult(model=model, genotype=genotype, summary=summary, selection=self.selection,
                            run_dir=self.run.path)


def _arch_summary(history: dict[str, Any], selection: Selection) -> dict[str, Any]:
    """How far the architecture moved: the choice groups whose selected (edge, op) pairs
    differ between the start of the search and its end, and when it was fixed."""
    initial = history.get("initial_selection")
    changed: list[str] = []
    if initial is not None:
        start = selection_from_json(initial)
        changed = [g for g, picks in selection.items()
                   if {(p.edge, p.op) for p in picks} != {(p.edge, p.op) for p in start.get(g, [])}]
    return {
        "groups": len(selection),
        "changed_groups": len(changed),
        "changed": changed,
        "initial_selection": initial,
        "finalized": history.get("finalized"),
    }


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point())


def _top_level(report: dict[str, Any]) -> dict[str, Any]:
    """Drops bulky matrices from the policy report for the summary (plots keep them)."""
    return {k: v for k, v in report.items() if not (isinstance(v, list) and v and isinstance(v[0], list)
                                                     and len(v) > 4 and not isinstance(v[0][0], str))}




