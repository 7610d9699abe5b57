"""The sweep's engines: one trial as an ordinary search, the local engine and the Ray Tune engine."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dha_core.errors import UserInputError
from dha_core.sweep.grid import Sweep, Trial

__all__ = ["CHECKPOINT_FILES", "RayOptions", "run_local", "run_ray", "run_trial"]

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = "--engine ray needs Ray Tune, which is not installed: pip install 'dha[ray]'"
OPTUNA_INSTALL_HINT = "--search-alg optuna needs Optuna, which is not installed: pip install 'dha[ray]'"
# Files of a run directory that a Tune checkpoint carries (enough for Searcher.from_run_dir).
CHECKPOINT_FILES = ("config.yaml", "metrics.csv", "checkpoints/last.pt")


# --------------------------------------------------------------------------- one trial
EpochReport = Callable[[str, int, dict[str, Any], Path], None]


def restore_run_dir(checkpoint_dir: Path, run_dir: Path) -> None:
    """Copies a reported checkpoint (:data:`CHECKPOINT_FILES`) into ``run_dir``."""
    for name in CHECKPOINT_FILES:
        source = checkpoint_dir / name
        if source.is_file():
            target = run_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_trial(sweep: Sweep, trial: Trial, restore_from: Path | None = None,
              on_epoch: EpochReport | None = None) -> dict[str, Any]:
    """Runs (or continues, or reuses) one trial's search.

    A finished run directory is reused as is; one with a checkpoint is resumed from it;
    otherwise ``restore_from`` (a checkpoint reported to Tune, on a machine without the
    run directory) is copied in and resumed; otherwise the search starts afresh.

    Args:
        sweep: The sweep.
        trial: The trial.
        restore_from: A folder holding :data:`CHECKPOINT_FILES`.
        on_epoch: Called after every epoch-end checkpoint (see ``Searcher.epoch_callbacks``).

    Returns:
        The search's ``summary.json`` contents.
    """
    from dha_core.searcher import Searcher

    run_dir = sweep.run_dir(trial)
    summary = run_dir / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text(encoding="utf-8"))
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if not checkpoint.is_file() and restore_from is not None:
        restore_run_dir(restore_from, run_dir)
    if checkpoint.is_file():
        searcher = Searcher.from_run_dir(run_dir)
        if not sweep.progress:
            searcher.config.train.progress = False
    else:
        # A folder without a checkpoint is what an earlier attempt of this trial left.
        searcher = Searcher(sweep.config_for(trial, overwrite=run_dir.exists()), run_dir=run_dir)
    if on_epoch is not None:
        searcher.epoch_callbacks.append(on_epoch)
    return searcher.fit().summary


def _row(trial: Trial, summary: dict[str, Any] | None, run_dir: Path, status: str = "done",
         error: str = "", last: dict[str, Any] | None = None) -> dict[str, Any]:
    summary = summary or {}
    last = last or {}
    return {
        "cell": trial.cell,
        "seed": trial.seed_index,
        "status": status,
        "test_acc": summary.get("test_acc"),
        "val_acc": summary.get("val_acc", last.get("val_acc")),
        "params": summary.get("params"),
        "final_lr": summary.get("final_lr"),
        "final_wd": summary.get("final_wd"),
        "steps": summary.get("steps", last.get("step")),
        "wall_s": summary.get("wall_s"),
        "run_dir": str(run_dir),
        "error": error,
    }


# --------------------------------------------------------------------------- engines
def run_local(sweep: Sweep, resume: bool = False) -> list[dict[str, Any]]:
    """Runs the trials one after another in this process.

    A trial that fails (an exception other than bad input) becomes a row with status
    ``error``; the other trials still run.

    Args:
        sweep: The sweep.
        resume: Reuse finished trials and resume interrupted ones; without it, an existing
            trial run directory is an error (checked before anything runs).
    """
    trials = sweep.trials()
    if not resume:
        _check_fresh(sweep, trials)
    rows = []
    for i, trial in enumerate(trials, 1):
        log.info("sweep: trial %d/%d: %s, seed %d", i, len(trials), trial.cell, trial.seed_index)
        try:
            summary = run_trial(sweep, trial)
        except UserInputError:
            raise  # bad data or output: the same for every trial, so stop here (exit 2)
        except Exception as exc:  # noqa: BLE001 - a failed search is a row of the table; the others still run
            error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            log.error("sweep: trial %s, seed %d failed: %s", trial.cell, trial.seed_index, error)
            rows.append(_row(trial, None, sweep.run_dir(trial), "error", error))
            continue
        rows.append(_row(trial, summary, sweep.run_dir(trial)))
    return rows


def _check_fresh(sweep: Sweep, trials: Sequence[Trial]) -> None:
    for trial in trials:
        if sweep.run_dir(trial).exists():
            raise UserInputError(f"--out: {sweep.run_dir(trial)} already exists (use --resume to continue the sweep)")


@dataclass
class RayOptions:
    """How the Ray engine runs the trials.

    Attributes:
        address: Ray cluster address (``auto``, ``ray://host:10001``); None starts a local
            instance unless ``RAY_ADDRESS`` is set.
        num_cpus: CPUs of a local instance started here (None: all).
        cpus_per_trial: CPUs reserved per trial (also its torch threads).
        gpus_per_trial: GPUs reserved per trial.
        max_concurrent: Cap on trials running at once (None: as resources allow).
        search_alg: ``None`` (the grid) or ``optuna`` (TPE over the axes as choices).
        num_samples: Configurations a search algorithm tries (each with seed index 0).
        scheduler: ``None`` or ``asha`` (stops poor trials at epoch ends).
        metric: Metric the scheduler/search algorithm optimizes (reported every epoch).
        mode: ``max`` or ``min``.
        max_failures: Times Tune restarts a failed trial from its last checkpoint.
    """

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    search_alg: Literal["optuna"] | None = None
    num_samples: int = 8
    scheduler: Literal["asha"] | None = None
    metric: str = "val_acc"
    mode: Literal["max", "min"] = "max"
    max_failures: int = 1


def _import_tune() -> Any:
    try:
        from ray import tune
    except ImportError:
        raise UserInputError(RAY_INSTALL_HINT) from None
    return tune


def _ray_trial(config: dict[str, Any], sweep: Sweep, threads: int, sampled: bool) -> None:
    """The Tune trainable: one search, reporting every epoch-end checkpoint to Tune.

    Args:
        config: Tune's config of this trial (``p0``, ``p1``, ..., ``seed``).
        sweep: The sweep.
        threads: torch threads (the CPUs reserved for the trial).
        sampled: A search algorithm chose the config, so two trials may share a cell and
            seed: the run directory then also carries Tune's trial id.
    """
    import torch
    from ray import tune

    torch.set_num_threads(max(threads, 1))
    if os.path.isdir(sweep.cwd):  # Tune starts trials in their own folder; config paths are relative to ours
        os.chdir(sweep.cwd)
    trial = trial_from_tune(sweep, config)
    if sampled:
        trial = Trial(trial.params, trial.seed_index, tune.get_context().get_trial_id())
    run_dir = str(sweep.run_dir(trial))
    last: dict[str, Any] = {"val_acc": 0.0}

    def report(stage: str, epoch: int, row: dict[str, Any], checkpoint: Path) -> None:
        for key in ("val_acc", "val_loss"):
            if key in row:
                last[key] = float(row[key])
        run_dir = checkpoint.parents[1]
        with tempfile.TemporaryDirectory(prefix="dha-tune-") as tmp:
            for name in CHECKPOINT_FILES:
                target = Path(tmp) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run_dir / name, target)
            tune.report({"stage": stage, "epoch": epoch, "step": int(row["step"]), **last, "done": False,
                         "run_dir": run_dir}, checkpoint=tune.Checkpoint.from_directory(tmp))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        summary = run_trial(sweep, trial, on_epoch=report)
    else:
        with checkpoint.as_directory() as restored:
            summary = run_trial(sweep, trial, restore_from=Path(restored), on_epoch=report)
    final = {k: summary[k] for k in ("test_acc", "val_acc", "params", "steps", "wall_s") if k in summary}
    tune.report({**last, **final, "final_lr": summary.get("final_lr"), "final_wd": summary.get("final_wd"), "done": True,
                 "run_dir": run_dir})


def trial_from_tune(sweep: Sweep, config: dict[str, Any]) -> Trial:
    """The :class:`Trial` of a Tune config (``{"p0": value, ..., "seed": i}``)."""
    params = tuple((key, str(config[f"p{i}"])) for i, (key, _) in enumerate(sweep.grid))
    return Trial(params, int(config.get("seed", 0)))


def _param_space(tune: Any, sweep: Sweep, options: RayOptions) -> dict[str, Any]:
    if options.search_alg is None:
        space: dict[str, Any] = {f"p{i}": tune.grid_search(values) for i, (_, values) in enumerate(sweep.grid)}
        space["seed"] = tune.grid_search(list(range(sweep.seeds)))
        return space
    space = {f"p{i}": tune.choice(values) for i, (_, values) in enumerate(sweep.grid)}
    space["seed"] = 0
    return space


def tune_config(tune: Any, options: RayOptions) -> Any:
    """``tune.TuneConfig`` for the options (search algorithm, scheduler, samples).

    Raises:
        UserInputError: Optuna requested but not installed.
    """
    # Reusing a trial's process for the next trial skips a fresh import of torch and the
    # plugins (seconds per trial; trials all ask for the same resources).
    kwargs: dict[str, Any] = {"max_concurrent_trials": options.max_concurrent, "reuse_actors": True}
    if options.search_alg == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch

            import optuna  # noqa: F401  (OptunaSearch imports it lazily; fail here, clearly)
        except ImportError:
            raise UserInputError(OPTUNA_INSTALL_HINT) from None
        kwargs.update(search_alg=OptunaSearch(metric=options.metric, mode=options.mode),
                      num_samples=options.num_samples)
    if options.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        kwargs["scheduler"] = ASHAScheduler(metric=options.metric, mode=options.mode, grace_period=1)
    return tune.TuneConfig(**kwargs)


def run_ray(sweep: Sweep, options: RayOptions | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """Runs the trials as Ray Tune trials.

    Args:
        sweep: The sweep.
        options: Resources, search algorithm, scheduler, cluster address.
        resume: Restore the sweep's Tuner (finished trials are kept, unfinished ones
            continue from their last reported checkpoint, failed ones are retried).

    Returns:
        One row per trial.

    Raises:
        UserInputError: Ray (or Optuna) is not installed; bad options.
    """
    tune = _import_tune()
    import ray

    options = options or RayOptions()
    # Tune warns on every forced experiment snapshot; one per reported epoch is by design here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if options.search_alg is not None and sweep.seeds != 1:
        raise UserInputError("--seeds: a search algorithm samples configurations itself; use --seeds 1")
    if options.search_alg is not None and not sweep.grid:
        raise UserInputError("--search-alg: needs at least one --grid axis to search over")
    if not ray.is_initialized():
        try:
            ray.init(address=options.address, num_cpus=options.num_cpus if options.address is None else None,
                     include_dashboard=False, log_to_driver=sweep.progress)
        except ConnectionError as exc:  # no cluster at --ray-address / RAY_ADDRESS (after Ray's retries)
            where = options.address or os.environ.get("RAY_ADDRESS", "")
            raise UserInputError(f"--ray-address: cannot connect to a Ray cluster at {where!r}: "
                                 f"{(str(exc).strip().splitlines() or [''])[0]}") from None
    threads = max(int(options.cpus_per_trial), 1)
    resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
    trainable = tune.with_resources(
        tune.with_parameters(_ray_trial, sweep=sweep, threads=threads, sampled=options.search_alg is not None),
        resources,
    )
    storage = sweep.out / "tune"
    if resume and tune.Tuner.can_restore(str(storage)):
        tuner = tune.Tuner.restore(str(storage), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        if not resume:
            _check_fresh(sweep, sweep.trials() if options.search_alg is None else [])
            if storage.exists():
                raise UserInputError(f"--out: {storage} already exists (use --resume to continue the sweep)")
        run_config = tune.RunConfig(
            name=storage.name,
            storage_path=str(storage.parent),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            verbose=1 if sweep.progress else 0,
        )
        tuner = tune.Tuner(trainable, param_space=_param_space(tune, sweep, options),
                           tune_config=tune_config(tune, options), run_config=run_config)
    rows = []
    for result in tuner.fit():
        trial = trial_from_tune(sweep, result.config)
        metrics = dict(result.metrics or {})
        run_dir = Path(metrics.get("run_dir") or sweep.run_dir(trial))
        if result.error is not None:
            error = (str(result.error).strip().splitlines() or ["error"])[-1]
            rows.append(_row(trial, None, run_dir, "error", error, metrics))
        elif metrics.get("done"):
            rows.append(_row(trial, metrics, run_dir))
        else:  # stopped early by the scheduler
            rows.append(_row(trial, None, run_dir, "stopped", last=metrics))
    # Tune returns trials in its own order: list them as the grid does.
    order = {(t.cell, t.seed_index): i for i, t in enumerate(sweep.trials())}
    rows.sort(key=lambda r: (order.get((r["cell"], r["seed"]), len(order)), r["run_dir"]))
    return rows
