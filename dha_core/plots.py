"""Run-directory plots (matplotlib, headless): policy heatmaps, lr/wd, curves, selection, cells."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dha_core.interfaces import PairProbabilities, SearchSpace  # noqa: E402
from dha_core.rundir import MetricsLog  # noqa: E402
from dha_core.types import Selection  # noqa: E402

__all__ = ["write_plots", "plot_policy_heatmaps", "plot_hyperparameters", "plot_curves", "plot_selection",
           "plot_cells"]

log = logging.getLogger(__name__)


def write_plots(folder: Path, metrics: MetricsLog, reports: dict[str, Any], space: SearchSpace,
                selection: Selection) -> list[Path]:
    """Writes every plot that has data; returns the written paths."""
    folder.mkdir(parents=True, exist_ok=True)
    history = reports.get("search_history", {})
    written: list[Path] = []
    for fn, args in (
        (plot_policy_heatmaps, (PairProbabilities.from_report(history.get("policy_start", {})),
                                PairProbabilities.from_report(reports.get("policy", {})))),
        (plot_hyperparameters, (metrics,)),
        (plot_curves, (metrics,)),
        (plot_selection, (space, history.get("selection", []), history.get("initial_selection"))),
        (plot_cells, (space, selection)),
    ):
        try:
            written.extend(fn(folder, *args))
        except Exception as exc:  # noqa: BLE001 - a plot must never fail a finished search
            log.warning("plot %s failed: %s", fn.__name__, exc)
    plt.close("all")
    return written


def plot_policy_heatmaps(folder: Path, start: PairProbabilities | None, end: PairProbabilities | None) -> list[Path]:
    """The pair-probability matrix at the start and at the end (policies that report one)."""
    if end is None:
        return []
    ops = end.ops
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), constrained_layout=True)
    matrices = [(start or end).probs, end.probs]
    # One colour scale for both panels, so the change from start to end is visible.
    vmin = min(min(row) for m in matrices for row in m)
    vmax = max(max(row) for m in matrices for row in m)
    for ax, matrix, title in ((axes[0], matrices[0], "start"), (axes[1], matrices[1], "end")):
        im = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(f"policy pair probabilities ({title})")
        ax.set_xlabel("op 2")
        ax.set_ylabel("op 1")
        if ops and len(ops) == len(matrix[0]):
            ax.set_xticks(range(len(ops)), ops, rotation=90, fontsize=7)
        if ops and len(ops) == len(matrix):
            ax.set_yticks(range(len(ops)), ops, fontsize=7)
        fig.colorbar(im, ax=ax, shrink=0.8)
    path = folder / "policy_tau.png"
    fig.savefig(path, dpi=100)
    return [path]


def plot_hyperparameters(folder: Path, metrics: MetricsLog) -> list[Path]:
    """lr and wd against step."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    drawn = False
    for ax, key in zip(axes, ("lr", "wd"), strict=True):
        xs, ys = metrics.series(key)
        if xs:
            ax.plot(xs, ys)
            drawn = True
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
    if not drawn:
        return []
    path = folder / "hyperparameters.png"
    fig.savefig(path, dpi=100)
    return [path]


def plot_curves(folder: Path, metrics: MetricsLog) -> list[Path]:
    """Training loss/accuracy per step and validation loss/accuracy per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    for ax, (train_key, val_key, label) in zip(axes, (("loss", "val_loss", "loss"), ("acc", "val_acc", "accuracy")),
                                               strict=True):
        xs, ys = metrics.series(train_key)
        ax.plot(xs, ys, label="train", alpha=0.7)
        vx, vy = metrics.series(val_key)
        ax.plot(vx, vy, "o-", label="val")
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.legend()
    path = folder / "curves.png"
    fig.savefig(path, dpi=100)
    return [path]


def plot_selection(folder: Path, space: SearchSpace, history: list[dict[str, Any]],
                   initial: dict[str, Any] | None = None) -> list[Path]:
    """Selected op per (group, kept slot) over epochs, from the initial selection on; the
    title counts the groups whose selection differs at the end from the start."""
    groups = space.choice_groups()
    if not groups or not history:
        return []
    changed = None
    if initial is not None:
        history = [{"epoch": "start", "selection": initial}, *history]
        last = history[-1]["selection"]
        changed = sum(sorted((p[0], p[1]) for p in initial.get(g.name, []))
                      != sorted((p[0], p[1]) for p in last.get(g.name, [])) for g in groups)
    rows: list[str] = []
    for g in groups:
        rows.extend(f"{g.name}[{k}]" for k in range(g.keep))
    grid = [[float("nan")] * len(history) for _ in rows]
    for col, entry in enumerate(history):
        r = 0
        for g in groups:
            picks = entry["selection"].get(g.name, [])
            for k in range(g.keep):
                if k < len(picks):
                    grid[r][col] = picks[k][1]
                r += 1
    ops = list(groups[0].ops)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(history) + 3), max(3, 0.25 * len(rows) + 1)),
                           constrained_layout=True)
    im = ax.imshow(grid, aspect="auto", cmap="tab10", vmin=-0.5, vmax=9.5, interpolation="nearest")
    ax.set_yticks(range(len(rows)), rows, fontsize=6)
    ax.set_xticks(range(len(history)), [str(h["epoch"]) for h in history], fontsize=7)
    ax.set_xlabel("epoch")
    title = "selected op per choice point"
    if changed is not None:
        title += f" ({changed} of {len(groups)} groups changed since the start)"
    ax.set_title(title, fontsize=9)
    cbar = fig.colorbar(im, ax=ax, ticks=range(min(len(ops), 10)))
    cbar.ax.set_yticklabels(ops[:10], fontsize=7)
    path = folder / "selection.png"
    fig.savefig(path, dpi=100)
    return [path]


def plot_cells(folder: Path, space: SearchSpace, selection: Selection) -> list[Path]:
    """Draws the selected cell(s) as DAGs: one panel per group prefix (e.g. normal, reduce)."""
    groups = space.choice_groups()
    if not groups or not selection:
        return []
    prefixes: dict[str, list[Any]] = {}
    for g in groups:
        prefixes.setdefault(g.name.split("/")[0], []).append(g)
    fig, axes = plt.subplots(1, len(prefixes), figsize=(6 * len(prefixes), 4.5), constrained_layout=True, squeeze=False)
    for ax, (prefix, gs) in zip(axes[0], prefixes.items(), strict=True):
        n_inputs = len(gs[0].edges)
        chain = all(len(g.edges) == 1 for g in gs)  # e.g. MobileNet blocks: each reads the previous one
        positions: dict[int, tuple[float, float]] = {}
        for i in range(n_inputs):
            positions[i] = (0.0, float(i))
        for j, _g in enumerate(gs):
            positions[n_inputs + j] = (1.0 + j, (j % 2) * 0.8)
        for j, g in enumerate(gs):
            target = n_inputs + j
            for pick in selection.get(g.name, []):
                if chain:
                    src = target - 1
                else:
                    src = g.edge_inputs[pick.edge] if g.edge_inputs else pick.edge
                if src not in positions:
                    positions[src] = (-1.0, float(src))
                (x0, y0), (x1, y1) = positions[src], positions[target]
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "-|>", "color": "0.4", "shrinkA": 12, "shrinkB": 12})
                ax.text((x0 + x1) / 2, (y0 + y1) / 2, g.ops[pick.op], fontsize=7, ha="center",
                        bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
        for node, (x, y) in positions.items():
            label = f"in{node}" if node < n_inputs else f"n{node - n_inputs}"
            ax.scatter([x], [y], s=500, c="lightsteelblue" if node < n_inputs else "lightgreen", zorder=3)
            ax.text(x, y, label, ha="center", va="center", fontsize=8, zorder=4)
        ax.set_title(f"{prefix}")
        ax.axis("off")
    path = folder / "cells.png"
    fig.savefig(path, dpi=100)
    return [path]
