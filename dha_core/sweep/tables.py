"""The sweep's tables: mean +- std over seeds per grid cell (``sweep.md``, ``sweep.csv``) and ``trials.csv``."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["sweep_table", "sweep_csv", "trials_csv"]


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
