"""The fixed-seed runs whose outputs are stored as golden files, and how to compare them.

Each run is a fully resolved config (``<name>.yaml`` here: every component field is
written out, so a change of a plugin default does not move the golden outputs, only a
change of behaviour does) that is bounded by epochs and steps, never by a time budget
(time budgets are not deterministic), on CPU with one thread.

Golden files per run: ``<name>.summary.json`` (``summary.json`` without its wall-clock
fields) and ``<name>.metrics.csv``. A run listed in :data:`RESUMED` is also run a second
time, stopped by an error right after a mid-epoch checkpoint (as a kill would stop it),
and continued with ``dha resume``'s code path; its outputs must equal the same golden files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

GOLDEN_DIR = Path(__file__).resolve().parent
# Bit-exact figures hold only on the CPU type that wrote them: float kernels differ by CPU.
CPU_MODEL_FILE = GOLDEN_DIR / "cpu_model.txt"


RUNS: tuple[str, ...] = ("dha", "two_stage")
"""``dha``: DHA's default components (DARTS cell space, ISTA, Kornia policy, hypergrad) on the
shipped sample data, with the architecture fixed half-way. ``two_stage``: toy components
with a second-order softmax relaxation, a retrain and a finetune stage."""

RESUMED: dict[str, int] = {"dha": 10}
"""Run name -> the global step at which the interrupted copy fails (after the checkpoint
of step ``checkpoint_every * k``, mid-epoch)."""

TIMING_KEYS = frozenset({"wall_s", "stage_wall_s", "stage_train_s", "budget_used"})
"""Summary fields that hold wall-clock times (they differ between identical runs)."""

TIMING_COLUMNS = frozenset({"time", "wall_s", "elapsed_s"})
"""Metrics columns that would hold wall-clock times (none today; dropped if added)."""


class StopHere(RuntimeError):
    """Raised inside a run to simulate a kill between two checkpoints."""


def load_config(name: str, out_dir: Path) -> dict[str, Any]:
    """The raw config of golden run ``name``, writing its run directory under ``out_dir``."""
    raw = yaml.safe_load((GOLDEN_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    raw["output"] = {**raw["output"], "dir": str(out_dir), "name": name, "overwrite": True}
    return raw


def comparable_summary(run_dir: Path) -> str:
    """``summary.json`` without its timing fields, as canonical JSON text."""
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    kept = {k: v for k, v in summary.items() if k not in TIMING_KEYS}
    return json.dumps(kept, indent=1, sort_keys=True) + "\n"


def comparable_metrics(run_dir: Path) -> str:
    """``metrics.csv`` without timing columns (byte-exact otherwise)."""
    lines = (run_dir / "metrics.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    keep = [i for i, col in enumerate(header) if col not in TIMING_COLUMNS]
    if len(keep) == len(header):
        return "\n".join(lines) + "\n"
    return "\n".join(",".join(row.split(",")[i] for i in keep) for row in lines) + "\n"


def run(name: str, out_dir: Path) -> Path:
    """Runs golden run ``name`` uninterrupted; returns its run directory."""
    import dha_core

    result = dha_core.build(config=load_config(name, out_dir)).fit()
    assert result.run_dir is not None
    return result.run_dir


def run_resumed(name: str, out_dir: Path) -> Path:
    """Runs golden run ``name``, stops it at step :data:`RESUMED` ``[name]`` with an error (the
    last checkpoint is a mid-epoch one) and resumes it from its run directory."""
    from unittest import mock

    import dha_core
    from dha_core.joint_step import JointStep
    from dha_core.searcher import Searcher

    stop_at = RESUMED[name]
    original = JointStep.__call__

    def failing(self: JointStep, batch: Any, step: int) -> Any:
        if step == stop_at:
            raise StopHere(f"stopped at step {step}")
        return original(self, batch, step)

    searcher = dha_core.build(config=load_config(name, out_dir))
    with mock.patch.object(JointStep, "__call__", failing):
        try:
            searcher.fit()
        except StopHere:
            pass
        else:
            raise AssertionError(f"golden run {name!r} ended before step {stop_at}")
    run_dir = out_dir / name
    assert not (run_dir / "summary.json").exists()
    Searcher.from_run_dir(run_dir).fit()
    return run_dir
