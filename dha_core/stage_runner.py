"""Runs one stage's loop: epochs and steps, the time budget, epoch ends and checkpoints.

:class:`RunState` is what a run carries from stage to stage and into every checkpoint
(the global step, the wall-clock times, the reports of finished stages, the selected
architecture, the metrics log). :class:`StageRunner` steps a :class:`~dha_core.stage.Stage`
until its epochs or its budget are spent, feeding the stage's progress to every schedule,
ending the search at ``train.search_fraction``, validating at epoch ends and writing
``checkpoints/last.pt``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dha_core.checkpoint import atomic_save
from dha_core.config import RunConfig, search_fraction
from dha_core.data import eval_batches
from dha_core.distributed import DistContext
from dha_core.evaluate import evaluate
from dha_core.joint_step import prefixed_metrics, split_output
from dha_core.normalize import Normalizer
from dha_core.progress import ProgressReporter
from dha_core.rundir import MetricsLog, RunDir
from dha_core.runtime import rng_state, set_rng_state
from dha_core.stage import Stage
from dha_core.types import Selection, selection_from_json, selection_to_json

__all__ = ["CHECKPOINT_FORMAT", "EpochCallback", "Interrupted", "RunState", "StageRunner"]

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
class RunState:
    """What a run carries across stages and checkpoints.

    Attributes:
        metrics: The metrics log (``metrics.csv``).
        global_step: Steps taken over all stages.
        wall_before: Wall-clock seconds spent before this process continued the run.
        started: ``time.perf_counter()`` when this process started the run.
        stage_walls: Wall-clock seconds per stage.
        stage_train_s: Training seconds per stage (what budgets count).
        reports: The reports of finished stages (``policy``, ``relax``, ``hpo``,
            ``search_history``, ``<stage>_hpo``, ``<stage>_policy``).
        selection: The searched architecture (once the search stage has ended).
    """

    metrics: MetricsLog = field(default_factory=MetricsLog)
    global_step: int = 0
    wall_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    stage_walls: dict[str, float] = field(default_factory=dict)
    stage_train_s: dict[str, float] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    selection: Selection = field(default_factory=dict)

    def elapsed(self) -> float:
        """Wall-clock seconds of the whole run so far, over every process that ran it."""
        return self.wall_before + (time.perf_counter() - self.started)

    def restore(self, checkpoint: dict[str, Any], metrics_path: Path) -> None:
        """Continues from a checkpoint; metrics rows past its step are dropped."""
        self.global_step = int(checkpoint["global_step"])
        self.wall_before = float(checkpoint["wall_s"])
        self.stage_walls = dict(checkpoint["stage_walls"])
        self.stage_train_s = dict(checkpoint.get("stage_train_s", {}))
        self.reports = dict(checkpoint["reports"])
        self.selection = selection_from_json(checkpoint["selection"])
        self.metrics = MetricsLog.load(metrics_path, max_step=self.global_step)

    def record(self, stage: Stage) -> None:
        """Keeps what a finished stage reports (and, after the search, its selection)."""
        if "memory_format" in stage.history:
            self.reports.setdefault("memory_format", {})[stage.name] = stage.history["memory_format"]
        if stage.spec.searches:
            self.selection = stage.relax.selection()
            self.reports["policy"] = stage.aug.report()
            self.reports["relax"] = stage.relax.report()
            self.reports["hpo"] = stage.hpo.report()
            self.reports["search_history"] = stage.history
        else:
            self.reports[f"{stage.name}_hpo"] = stage.hpo.report()
            self.reports[f"{stage.name}_policy"] = stage.aug.report()


class StageRunner:
    """Runs stages of one run, writing checkpoints into its run directory.

    Args:
        config: The validated run config.
        state: The run's state (shared with the caller).
        run: The run directory.
        normalizer: Maps ``[0, 1]`` images to the network's input (validation passes).
        val_split: The validation split (evaluated at epoch ends).
        device: Where to evaluate.
        dist: The distributed context, or None for a single process.
        epoch_callbacks: Called after each epoch-end checkpoint (rank 0).
    """

    def __init__(self, config: RunConfig, state: RunState, run: RunDir, normalizer: Normalizer, val_split: Any,
                 device: torch.device, dist: DistContext | None = None,
                 epoch_callbacks: list[EpochCallback] | None = None) -> None:
        self.config = config
        self.state = state
        self.run_dir = run
        self.normalizer = normalizer
        self.val_split = val_split
        self.device = device
        self.dist = dist
        self.epoch_callbacks = epoch_callbacks if epoch_callbacks is not None else []

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    def run(self, stage: Stage, resume: dict[str, Any] | None = None) -> None:
        """Runs ``stage`` to its end, from the start or from the checkpoint ``resume``."""
        cfg = self.config.train
        state = self.state
        epoch, step_in_epoch = 0, 0
        if resume is not None:
            stage.load_state_dict(resume["stage_state"])
            epoch, step_in_epoch = int(resume["epoch"]), int(resume["step_in_epoch"])
            set_rng_state(resume["rng"])
        else:
            stage.history.setdefault("policy_start", stage.aug.report())
            stage.history.setdefault("selection", [])
            stage.history.setdefault("initial_selection", selection_to_json(stage.relax.selection()))
        stage_start = time.perf_counter() - state.stage_walls.get(stage.name, 0.0)
        stop_reason = stage.history.get("stopped_early")
        progress = ProgressReporter(cfg.progress if self.is_main else "off", stage.name, stage.epochs,
                                    stage.steps_per_epoch, epoch, cfg.progress_every)
        try:
            while (stage.epochs is None or epoch < stage.epochs) and stop_reason is None:
                progress.start_epoch(epoch, step_in_epoch)
                while step_in_epoch < stage.steps_per_epoch:
                    self._apply_progress(stage)
                    stage.budget.start()
                    outcome = stage.step_fn(stage.train_stream.next(), state.global_step)
                    stage.budget.stop()
                    state.stage_train_s[stage.name] = stage.budget.train_s
                    state.global_step += 1
                    step_in_epoch += 1
                    if state.global_step % cfg.log_every == 0 or outcome.skipped:
                        state.metrics.append({"stage": stage.name, "epoch": epoch, "step": state.global_step,
                                              **outcome.metrics})
                    progress.step(None if outcome.skipped else outcome.metrics)
                    state.stage_walls[stage.name] = time.perf_counter() - stage_start
                    if state.global_step % cfg.checkpoint_every == 0:
                        self.checkpoint(stage, epoch, step_in_epoch)
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
                state.stage_walls[stage.name] = time.perf_counter() - stage_start
                written = self.checkpoint(stage, epoch, step_in_epoch)
                if written and row is not None:
                    for callback in self.epoch_callbacks:
                        callback(stage.name, epoch - 1, row, self.run_dir.last_checkpoint)
                progress.end_epoch(row)
        except KeyboardInterrupt:
            self.checkpoint(stage, epoch, step_in_epoch)
            raise Interrupted(self.run_dir.path) from None
        finally:
            progress.close()
        progress.write(f"{stage.name}: {epoch} epochs, {state.stage_walls.get(stage.name, 0.0):.1f}s")

    def _apply_progress(self, stage: Stage) -> None:
        """Feeds the stage's progress to every schedule, and ends the search at
        ``train.search_fraction`` (once)."""
        fraction = stage.budget.fraction()
        stage.net.set_drop_path(self.config.train.drop_path * fraction)
        stage.hpo.on_progress(fraction)
        stage.aug.on_progress(fraction)
        stage.relax.on_progress(fraction)
        end = search_fraction(self.config)
        if stage.spec.searches and "finalized" not in stage.history and end < 1.0 and fraction >= end:
            events = stage.relax.finalize(stage.net)
            step = self.state.global_step
            stage.history["finalized"] = {"step": step, "fraction": fraction}
            if events:
                stage.hpo.weights_changed()
                self.state.metrics.append({"stage": stage.name, "step": step, "arch/finalized": 1.0,
                                           **prefixed_metrics("arch", events)})
                log.info("%s: architecture fixed at %.0f%% of the stage (step %d)", stage.name, 100 * fraction, step)

    def _over_budget(self, stage: Stage) -> bool:
        if stage.budget.time_budget_s is None:
            return False
        over = stage.budget.train_s >= stage.budget.time_budget_s
        # Clocks differ between ranks: stop everywhere as soon as one rank is over.
        return over if self.dist is None else self.dist.any(over)

    def _end_epoch(self, stage: Stage, epoch: int, last: bool = False) -> dict[str, Any]:
        # Every rank recovers (deterministic given the identical codes); rank 0 evaluates.
        events: dict[str, Any] = {}
        if (stage.epochs is None or epoch + 1 < stage.epochs) and not last:
            events = stage.relax.on_epoch_end(epoch, stage.net)
            if events:  # the relaxation did something: the network's function may have moved
                stage.hpo.weights_changed()
        # After the last epoch the architecture is kept: a recovery now could select ops that
        # were never trained, and the derived child must contain only trained ops.
        row: dict[str, Any] = {"stage": stage.name, "epoch": epoch, "step": self.state.global_step}
        row.update(prefixed_metrics("arch", events or {}))
        evaluate_now = (epoch + 1) % self.config.train.eval_every == 0 or epoch + 1 == stage.epochs or last
        if evaluate_now and self.is_main:
            val = self._validate(stage)
            row.update({"val_acc": val["acc"], "val_loss": val["loss"]})
        self.state.metrics.append(row)
        selection = stage.relax.selection()
        stage.history["selection"].append({"epoch": epoch, "selection": selection_to_json(selection)})
        return row

    @torch.no_grad()
    def _validate(self, stage: Stage) -> dict[str, float]:
        stage.net.eval()
        stage.relax.eval()  # e.g. Gumbel evaluates its argmax instead of sampling
        weights = stage.relax.mixing_weights()
        batches = eval_batches(self.val_split, self.config.train.eval_batch_size, self.config.train.workers)
        out = evaluate(lambda x: split_output(stage.net(self.normalizer(x), weights))[0], batches, self.device)
        stage.net.train()
        stage.relax.train()
        return out

    def checkpoint(self, stage: Stage, epoch: int, step_in_epoch: int) -> bool:
        """Writes ``checkpoints/last.pt`` (rank 0 only: the state is the same on every rank).

        Returns:
            Whether it was written (not while steps are skipped or weights are non-finite).
        """
        if not self.is_main:
            return False
        state = self.state
        if stage.step_fn.nonfinite_run > 0 or not _all_finite(stage.net):
            # Keep the last good checkpoint while steps are skipped or weights have diverged.
            log.warning("checkpoint at step %d not written: non-finite state", state.global_step)
            return False
        # Metrics first: on resume, rows past the checkpoint's step are dropped.
        state.metrics.save(self.run_dir.metrics)
        atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "stage": stage.name,
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": state.global_step,
                "wall_s": state.elapsed(),
                "stage_walls": state.stage_walls,
                "stage_train_s": state.stage_train_s,
                "reports": state.reports,
                "selection": selection_to_json(state.selection),
                "stage_state": stage.state_dict(),
                "rng": rng_state(),
                "world_size": 1 if self.dist is None else self.dist.world_size,
            },
            self.run_dir.last_checkpoint,
        )
        return True


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point())
