"""``dha ablate``: swap components over seeds; a thin alias of :mod:`dha_core.sweep`.

``--swap KIND=A,B`` is the grid axis ``KIND.name=A,B``; everything else (engines, tables,
resume) is the sweep's. The tables are also written under their former names,
``ablation.md`` and ``ablation.csv`` (one row per search).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dha_core.config import COMPONENT_FIELDS
from dha_core.errors import UserInputError
from dha_core.rundir import atomic_write_text
from dha_core.sweep import Sweep, run_sweep, sweep_table

__all__ = ["parse_swaps", "swaps_to_grid", "run_ablation", "ablation_table", "write_ablation_files"]


def parse_swaps(swaps: Sequence[str]) -> list[tuple[str, list[str]]]:
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


def swaps_to_grid(swaps: Sequence[str]) -> list[str]:
    """``["aug=kornia,none"]`` -> ``["aug.name=kornia,none"]`` (sweep grid axes)."""
    return [f"{kind}.name={','.join(names)}" for kind, names in parse_swaps(swaps)]


def run_ablation(config_path: str, swaps: list[str], seeds: int, overrides: list[str], out: Path | None,
                 progress: bool = True) -> str:
    """Runs the swaps locally and writes the sweep's tables into ``out``.

    Returns:
        The markdown table.
    """
    sweep = Sweep.from_file(config_path, swaps_to_grid(swaps), seeds, overrides, out, progress=progress)
    table, _ = run_sweep(sweep, "local")
    write_ablation_files(sweep.out)
    return table


def write_ablation_files(out: Path) -> None:
    """``ablation.md`` / ``ablation.csv``: the former names of ``sweep.md`` / ``trials.csv``."""
    for old, new in (("ablation.md", "sweep.md"), ("ablation.csv", "trials.csv")):
        if (out / new).is_file():
            atomic_write_text(out / old, (out / new).read_text(encoding="utf-8"))


def ablation_table(results: list[dict[str, Any]]) -> str:
    """The sweep's table (kept for callers of the former ablation module)."""
    return sweep_table([{"status": "done", **r} for r in results])
