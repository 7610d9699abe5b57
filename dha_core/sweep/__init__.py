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

Modules: :mod:`~dha_core.sweep.grid` (axes, trials, configs), :mod:`~dha_core.sweep.engines`
(one trial, the local and Ray engines), :mod:`~dha_core.sweep.tables` (aggregation and
tables); :func:`run_sweep` here runs one with either engine.
"""

from __future__ import annotations

from typing import Any, Literal

from dha_core.errors import UserInputError
from dha_core.rundir import atomic_write_text, check_creatable
from dha_core.sweep.engines import CHECKPOINT_FILES, RayOptions, run_local, run_ray, run_trial
from dha_core.sweep.grid import Sweep, Trial, parse_grid
from dha_core.sweep.tables import sweep_csv, sweep_table, trials_csv

__all__ = [
    "CHECKPOINT_FILES",
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
