"""``dha ablate``: swap components over seeds; a thin alias of :mod:`dha_core.sweep`.

``--swap KIND=A,B`` is the grid axis ``KIND.name=A,B``; everything else (engines, tables,
resume) is the sweep's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dha_core.config import COMPONENT_FIELDS
from dha_core.errors import UserInputError
from dha_core.sweep import Sweep, run_sweep, sweep_table

__all__ = ["parse_swaps", "swaps_to_grid", "run_ablation", "ablation_table"]


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
    return table


def ablation_table(results: list[dict[str, Any]]) -> str:
    """The sweep's table (kept for callers of the former ablation module)."""
    return sweep_table([{"status": "done", **r} for r in results])
