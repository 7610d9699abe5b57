"""The sweep's grid: ``KEY=v1,v2`` axes, the trials they expand to, and the sweep's configs."""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dha_core.config import resolve_config
from dha_core.config_files import apply_overrides, load_yaml
from dha_core.errors import UserInputError
from dha_core.kinds import CONFIG_FIELDS
from dha_core.kinds import kind as kind_named

__all__ = ["Sweep", "Trial", "parse_grid"]


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
