"""``dha sweep``: many searches over a grid of settings and seeds, one after another or on Ray Tune.

A sweep is a base config, a grid of ``KEY=v1,v2,...`` axes over any config keys (the
settings DHA does not learn: the policy temperature, the hyper bounds, a component swap
with ``aug.name=kornia,none``) and a number of seeds. Every grid cell runs once per seed,
as an ordinary search with its own run directory under the sweep's folder. The result is
one table with mean +- std over seeds per cell: ``sweep.md`` and ``sweep.csv``, plus
``trials.csv`` with one row per search.

Engines:

* ``local``: in this process, one search after another.
* ``ray``: ``ray.tune.Tuner``, one trial per search with ``tune.with_resources``. Each
  epoch-end checkpoint of a search is reported to Tune with the epoch's metrics, so a
  trial that fails or is restored (``--resume``) continues from its last checkpoint, and
  schedulers such as ASHA can stop poor trials early. A search algorithm (Optuna TPE)
  can replace the grid: the axes become categorical choices and ``num_samples``
  configurations are tried. Ray is an optional extra: ``pip install 'dha[ray]'``.

Every trial's config is validated before the first search starts.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dha_core.config import apply_overrides, load_yaml, resolve_config
from dha_core.errors import UserInputError
from dha_core.kinds import CONFIG_FIELDS
from dha_core.kinds import kind as kind_named
from dha_core.rundir import atomic_write_text, check_creatable

__all__ = [
    "RayOptions",
    "Sweep",
    "Trial",
    "parse_grid",
    "run_sweep",
    "run_trial",
    "sweep_table",
    "sweep_csv",
    "trials_csv",
]

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = "--engine ray needs Ray Tune, which is not installed: pip install 'dha[ray]'"
OPTUNA_INSTALL_HINT = "--search-alg optuna needs Optuna, which is not installed: pip install 'dha[ray]'"
# Files of a run directory that a Tune checkpoint carries (enough for Searcher.from_run_dir).
CHECKPOINT_FILES = ("config.yaml", "metrics.csv", "checkpoints/last.pt")


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["aug.temperature=0.25,0.5"]`` -> ``[("aug.temperature", ["0.25", "0.5"])]``.

    Values stay text; they are parsed as YAML scalars when applied, exactly like ``--set``.

    Raises:
        UserInputError: A malformed or repeated axis.
    """
    axes: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        head, dot, rest = key.partition(".")
        found = kind_named(head) if dot else None
        if found is not None:  # a kind named by its registry name (dataset.x) -> its config section (data.x)
            key = f"{found.field}.{rest}"
        if not sep or not key or any(not part for part in key.split(".")) or not values.strip():
            raise UserInputError(f"--grid {item!r}: expected KEY=V1,V2,... with a dotted config key")
        names = [v.strip() for v in values.split(",") if v.strip()]
        if len(set(names)) != len(names):
            raise UserInputError(f"--grid {item!r}: repeated value")
        if key in {k for k, _ in axes}:
            raise UserInputError(f"--grid: {key} is given twice")
        if key == "train.seed":
            raise UserInputError("--grid train.seed: use --seeds N for repetitions")
        axes.append((key, names))
    return axes


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


@dataclass(frozen=True)
class Trial:
    """One search of a sweep.

    Attributes:
        params: ``(key, value text)`` per grid axis, in the grid's order.
        seed_index: Repetition ``i``: the search runs with ``train.seed = base seed + i``.
    """

    params: tuple[tuple[str, str], ...]
    seed_index: int
    suffix: str = ""

    @property
    def cell(self) -> str:
        """The grid cell, e.g. ``"aug=kornia, hpo.lr_up=0.2"`` (``"base"`` without a grid).

        A component swap ``aug.name=kornia`` is shown as ``aug=kornia``.
        """
        return ", ".join(f"{_label(k)}={v}" for k, v in self.params) or "base"

    @property
    def slug(self) -> str:
        """The trial's run-directory name."""
        parts = [_slug(f"{_label(k)}_{v}") for k, v in self.params]
        return "-".join([*parts, f"seed{self.seed_index}", *([_slug(self.suffix)] if self.suffix else [])])


@dataclass
class Sweep:
    """A grid of searches over seeds, validated up front.

    Attributes:
        base: The base config mapping (parsed YAML).
        grid: The axes from :func:`parse_grid`.
        seeds: Repetitions per cell.
        overrides: ``--set`` overrides applied to every trial.
        out: The sweep's folder (trial run directories, tables, Tune's state).
        progress: Progress bars inside the trials.
        base_seed: ``train.seed`` of the base config; repetition ``i`` uses ``base_seed + i``.
        cwd: Directory relative paths in the config refer to (Ray runs trials elsewhere).
    """

    base: dict[str, Any]
    grid: list[tuple[str, list[str]]]
    seeds: int = 1
    overrides: list[str] = field(default_factory=list)
    out: Path = Path("runs/sweep")
    progress: bool = True
    base_seed: int = 0
    cwd: str = field(default_factory=os.getcwd)

    @classmethod
    def from_file(cls, config: str | Path, grid: Sequence[str], seeds: int = 1, overrides: Sequence[str] = (),
                  out: str | Path | None = None, progress: bool = True) -> Sweep:
        """Reads the base config and validates every trial's config.

        Raises:
            UserInputError: Bad config, grid, seeds or a value that makes a trial invalid.
        """
        if seeds < 1:
            raise UserInputError("--seeds: must be at least 1")
        base = load_yaml(config)
        axes = parse_grid(grid)
        base_cfg = resolve_config(*apply_overrides(base, list(overrides)))
        folder = Path(out) if out else Path(base_cfg.output.dir) / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
        sweep = cls(base=base, grid=axes, seeds=seeds, overrides=list(overrides), out=folder.resolve(),
                    progress=progress, base_seed=int(base_cfg.train.seed))
        for trial in sweep.trials():
            sweep.config_for(trial)
        return sweep

    def trials(self) -> list[Trial]:
        """Every grid cell times every seed, cells in grid order."""
        keys = [k for k, _ in self.grid]
        cells = itertools.product(*[values for _, values in self.grid])
        return [Trial(tuple(zip(keys, cell, strict=True)), s) for cell in cells for s in range(self.seeds)]

    def trial_overrides(self, trial: Trial, overwrite: bool = False) -> list[str]:
        """The ``--set`` list of a trial.

        Component swaps (``aug.name=...``) come first, so that ``--set aug.temperature=...``
        applies to the swapped-in component; the other axes come after the user's sets.
        """
        swaps = [f"{k}={v}" for k, v in trial.params if _is_swap(k)]
        fields = [f"{k}={v}" for k, v in trial.params if not _is_swap(k)]
        sets = [*swaps, *self.overrides, *fields, f"train.seed={self.base_seed + trial.seed_index}"]
        if not self.progress:
            sets.append("train.progress=false")
        if overwrite:
            sets.append("output.overwrite=true")
        return sets

    def config_for(self, trial: Trial, overwrite: bool = False) -> Any:
        """The trial's validated ``RunConfig``."""
        raw, keys = apply_overrides(self.base, self.trial_overrides(trial, overwrite))
        try:
            return resolve_config(raw, set_keys=keys)
        except UserInputError as exc:
            raise UserInputError(f"sweep cell {trial.cell}: {exc}") from None

    def run_dir(self, trial: Trial) -> Path:
        return self.out / trial.slug


def _label(key: str) -> str:
    return key.rsplit(".", 1)[0] if _is_swap(key) else key


def _is_swap(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 2 and parts[0] in CONFIG_FIELDS and parts[1] == "name"


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


# --------------------------------------------------------------------------- tables
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cells(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    cells: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault(row["cell"], []).append(row)
    return cells


def _aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: runs finished/stopped/failed and mean/std of every numeric column (sample std)."""
    out = []
    for cell, members in _cells(rows).items():
        done = [r for r in members if r["status"] == "done"]
        agg: dict[str, Any] = {"cell": cell, "runs": len(done),
                               "stopped": sum(r["status"] == "stopped" for r in members),
                               "failed": sum(r["status"] == "error" for r in members)}
        for key in ("test_acc", "val_acc", "params", "final_lr", "final_wd", "wall_s"):
            values = [float(r[key]) for r in done if isinstance(r.get(key), (int, float))]
            mean, std = _mean_std(values) if values else (math.nan, math.nan)
            agg[f"{key}_mean"], agg[f"{key}_std"] = mean, std
        out.append(agg)
    return out


def _pm(mean: float, std: float, scale: float = 1.0, fmt: str = ".2f") -> str:
    if math.isnan(mean):
        return "-"
    return f"{scale * mean:{fmt}} ± {scale * std:{fmt}}"


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table: mean ± std over seeds per grid cell (finished trials only)."""
    lines = ["| cell | runs | test acc (%) | val acc (%) | params | final lr | wall (s) |",
             "|---|---|---|---|---|---|---|"]
    for agg in _aggregate(rows):
        runs = str(agg["runs"])
        extra = [f"{agg[k]} {k}" for k in ("stopped", "failed") if agg[k]]
        if extra:
            runs += f" ({', '.join(extra)})"
        params = "-" if math.isnan(agg["params_mean"]) else f"{agg['params_mean']:,.0f}"
        lines.append(
            f"| {agg['cell']} | {runs} | {_pm(agg['test_acc_mean'], agg['test_acc_std'], 100)} | "
            f"{_pm(agg['val_acc_mean'], agg['val_acc_std'], 100)} | {params} | "
            f"{_pm(agg['final_lr_mean'], agg['final_lr_std'], fmt='.3g')} | "
            f"{_pm(agg['wall_s_mean'], agg['wall_s_std'], fmt='.1f')} |"
        )
    return "\n".join(lines)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def sweep_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The table as CSV: one row per cell, ``<metric>_mean`` and ``<metric>_std`` columns."""
    return _csv(_aggregate(rows))


def trials_csv(rows: Sequence[dict[str, Any]]) -> str:
    """One row per trial."""
    return _csv(rows)


# --------------------------------------------------------------------------- entry point
def run_sweep(sweep: Sweep, engine: Literal["local", "ray"] = "local", resume: bool = False,
              ray_options: RayOptions | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Runs a sweep and writes ``sweep.md``, ``sweep.csv`` and ``trials.csv`` into ``sweep.out``.

    Returns:
        The markdown table and the per-trial rows.
    """
    check_creatable(sweep.out, "sweep folder")
    if engine == "ray":
        rows = run_ray(sweep, ray_options, resume=resume)
    elif engine == "local":
        rows = run_local(sweep, resume=resume)
    else:
        raise UserInputError(f"--engine {engine!r}: expected local or ray")
    if not rows:
        raise UserInputError("the sweep ran no trial")
    table = sweep_table(rows)
    atomic_write_text(sweep.out / "sweep.md", table + "\n")
    atomic_write_text(sweep.out / "sweep.csv", sweep_csv(rows))
    atomic_write_text(sweep.out / "trials.csv", trials_csv(rows))
    return table, rows
