"""``dha ablate``: a grid of searches that swap components, repeated over seeds."""

from __future__ import annotations

import csv
import io
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

from dha_core.config import COMPONENT_FIELDS, apply_overrides, load_yaml, resolve_config
from dha_core.errors import UserInputError
from dha_core.rundir import atomic_write_text

__all__ = ["parse_swaps", "run_ablation", "ablation_table"]


def parse_swaps(swaps: list[str]) -> list[tuple[str, list[str]]]:
    """``["aug=kornia,none"]`` -> ``[("aug", ["kornia", "none"])]``."""
    out: list[tuple[str, list[str]]] = []
    for item in swaps:
        kind, sep, values = item.partition("=")
        kind = kind.strip()
        if not sep or not values.strip():
            raise UserInputError(f"--swap {item!r}: expected KIND=A,B,...")
        if kind == "dataset":
            kind = "data"
        if kind not in COMPONENT_FIELDS:
            raise UserInputError(f"--swap {item!r}: unknown kind {kind!r}; expected one of "
                                 f"{', '.join(COMPONENT_FIELDS)}")
        names = [v.strip() for v in values.split(",") if v.strip()]
        out.append((kind, names))
    return out


def run_ablation(config_path: str, swaps: list[str], seeds: int, overrides: list[str], out: Path | None,
                 progress: bool = True) -> str:
    """Runs the grid and writes ``ablation.md`` and ``ablation.csv`` into ``out``.

    Every cell's config is validated before the first search starts.

    Returns:
        The markdown table.
    """
    from dha_core.searcher import Searcher

    if seeds < 1:
        raise UserInputError("--seeds: must be at least 1")
    grid = parse_swaps(swaps)
    base = load_yaml(config_path)
    base_cfg = resolve_config(*_with_sets(base, overrides))
    out = out or Path(base_cfg.output.dir) / f"ablate-{time.strftime('%Y%m%d-%H%M%S')}"
    cells = []
    for combo in itertools.product(*[[(kind, v) for v in values] for kind, values in grid]):
        label = ", ".join(f"{k}={v}" for k, v in combo)
        for seed in range(seeds):
            sets = list(overrides) + [f"{k}.name={v}" for k, v in combo] + [f"train.seed={base_cfg.train.seed + seed}"]
            if not progress:
                sets.append("train.progress=false")
            config = resolve_config(*_with_sets(base, sets))
            slug = "-".join(f"{k}_{v}" for k, v in combo) + f"-seed{seed}"
            cells.append((label, seed, config, out / slug))
    for _, _, _, run_dir in cells:
        if run_dir.exists():
            raise UserInputError(f"--out: {run_dir} already exists")
    results: list[dict[str, Any]] = []
    for label, seed, config, run_dir in cells:
        summary = Searcher(config, run_dir=run_dir).fit().summary
        results.append({"cell": label, "seed": seed, "test_acc": summary["test_acc"], "params": summary["params"],
                        "wall_s": summary["wall_s"], "run_dir": str(run_dir)})
    table = ablation_table(results)
    atomic_write_text(out / "ablation.md", table + "\n")
    atomic_write_text(out / "ablation.csv", _csv(results))
    return table


def _with_sets(base: dict[str, Any], sets: list[str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    return apply_overrides(base, sets)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def ablation_table(results: list[dict[str, Any]]) -> str:
    """Markdown table with mean +- std per cell (sample std over seeds)."""
    cells: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        cells.setdefault(r["cell"], []).append(r)
    lines = ["| cell | seeds | test acc (%) | params | wall (s) |", "|---|---|---|---|---|"]
    for cell, rows in cells.items():
        acc_m, acc_s = _mean_std([100 * r["test_acc"] for r in rows])
        wall_m, wall_s = _mean_std([r["wall_s"] for r in rows])
        params = statistics.fmean(r["params"] for r in rows)
        lines.append(f"| {cell} | {len(rows)} | {acc_m:.2f} ± {acc_s:.2f} | {params:,.0f} | {wall_m:.1f} ± {wall_s:.1f} |")
    return "\n".join(lines)


def _csv(results: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(results[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(results)
    return buf.getvalue()
