"""DHA vs Sequential DHA vs ISTA one-stage vs DARTS under the same wall-clock budget (CPU).

Data: from ``../shared/data/cifar10-jpeg.tar.gz``, the first 1,000 training images of
each class (10,000; 10% of them held out as the val split) and the full 10,000-image
test split are extracted to a temporary folder (or pass ``--data-root``) and read through
``dataset=imagefolder``.

Methods (same small DARTS supernet, same budget ``B`` of search+training wall time each):

* ``dha``: ``relax=ista`` + ``aug=kornia`` + ``hpo=hypergrad`` (held_out), one stage of ``B``;
  the derived child is evaluated as is.
* ``sequential_dha``: ``ista`` + ``standard`` + ``fixed`` for ``B/2``, then the derived
  architecture retrained from scratch with ``kornia`` + ``hypergrad`` for ``B/2``.
* ``ista_one_stage``: ``ista`` + ``standard`` + ``fixed`` for ``B``.
* ``darts``: ``softmax`` second order + ``standard`` + ``fixed`` for ``B/2``, then retrain
  with ``standard`` + ``fixed`` for ``B/2``.

Fixed schedules (cosine) need an epoch count: each stage's epochs are calibrated from a
few timed steps so that the schedule ends near the budget; ``train.time_budget_s`` (and
``retrain.time_budget_s``) stop a stage hard at its budget either way.

Usage::

    python benchmarks/bench_search.py [--quick] [--budget 480] [--seeds 2] [--json docs/results/search.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dha_core.config import resolve_config
from dha_core.searcher import Searcher

# The scripts run as files, not as a package: put this folder on the path so `common`
# imports however the script is started (``python benchmarks/...``, ``runpy``, ``-m``).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

SHARED_TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
DOC = Path(__file__).resolve().parents[1] / "docs" / "results.md"
MARKERS = ("<!-- bench_search:start -->", "<!-- bench_search:end -->")
METHODS = ("dha", "sequential_dha", "ista_one_stage", "darts")
OPS7 = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
        "dil_conv_5x5"]


def method_config(method: str, args: argparse.Namespace, data_root: Path, seed: int, out: Path) -> dict[str, Any]:
    space = {"name": "darts", "C": args.C, "layers": args.layers, "nodes": 4,
             "ops": (["none", *OPS7] if method == "darts" else OPS7)}
    standard, fixed = {"name": "standard"}, {"name": "fixed", "lr": 0.025, "lr_min": 0.001, "wd": 3e-4}
    kornia, hypergrad = {"name": "kornia"}, {"name": "hypergrad", "hyper_batch": "held_out"}
    raw: dict[str, Any] = {
        "space": space,
        "data": {"name": "imagefolder", "root": str(data_root), "image_size": 32, "val_fraction": 0.1, "split_seed": 0,
                 "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
        "train": {"epochs": 1, "batch_size": args.batch, "device": "cpu", "seed": seed, "progress": False,
                  "checkpoint_every": 10_000, "time_budget_s": args.budget},
        "output": {"dir": str(out), "plots": False},
    }
    if method == "dha":
        raw.update(relax={"name": "ista"}, aug=kornia, hpo=hypergrad)
    elif method == "ista_one_stage":
        raw.update(relax={"name": "ista"}, aug=standard, hpo=fixed)
    elif method == "sequential_dha":
        raw.update(relax={"name": "ista"}, aug=standard, hpo=fixed,
                   retrain={"epochs": 1, "aug": kornia, "hpo": hypergrad, "time_budget_s": args.budget / 2})
        raw["train"]["time_budget_s"] = args.budget / 2
    elif method == "darts":
        raw.update(relax={"name": "softmax", "order": "second"}, aug=standard, hpo=fixed,
                   retrain={"epochs": 1, "aug": standard, "hpo": fixed, "time_budget_s": args.budget / 2})
        raw["train"]["time_budget_s"] = args.budget / 2
        raw["data"]["val_fraction"] = 0.5  # DARTS splits train in halves for the bilevel problem
    return raw


def seconds_per_step(raw: dict[str, Any], steps: int = 2) -> tuple[float, int]:
    """Times a few search-stage steps; returns (seconds per step, steps per epoch)."""
    searcher = Searcher(resolve_config(raw))
    searcher.prepare()
    stage = searcher.search_stage()
    stage.step_fn(stage.train_stream.next(), 0)  # warm-up
    start = time.perf_counter()
    for i in range(steps):
        stage.step_fn(stage.train_stream.next(), i + 1)
    return (time.perf_counter() - start) / steps, stage.steps_per_epoch


def calibrate(method: str, raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Sets epochs so that each stage's cosine schedule ends near its budget."""
    if args.quick:  # one epoch per stage; the hard time budget still applies
        return {"seconds_per_search_step": None, "steps_per_epoch": None}
    sec, per_epoch = seconds_per_step(raw)
    search_budget = raw["train"]["time_budget_s"]
    raw["train"]["epochs"] = max(1, math.floor(search_budget / (sec * per_epoch)))
    if "retrain" in raw:
        # A derived child costs about what the sparse ISTA supernet costs per step.
        child_raw = json.loads(json.dumps(raw))
        child_raw.pop("retrain")
        child_raw["relax"], child_raw["aug"], child_raw["hpo"] = {"name": "ista"}, raw["retrain"]["aug"], {
            "name": "fixed"}
        child_sec, _ = seconds_per_step(child_raw)
        raw["retrain"]["epochs"] = max(1, math.floor(raw["retrain"]["time_budget_s"] / (child_sec * per_epoch)))
    return {"seconds_per_search_step": sec, "steps_per_epoch": per_epoch}


def extract(tar: Path, dest: Path, train_per_class: int, test_per_class: int | None) -> Path:
    """Extracts the first ``train_per_class`` training and ``test_per_class`` test images of
    each class (sorted file names), so only what the benchmark reads is written."""
    limits = {"train": train_per_class, "test": test_per_class}
    with tarfile.open(tar, "r:gz") as fh:
        members = sorted((m for m in fh.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                         key=lambda m: m.name)
        counts: dict[tuple[str, str], int] = {}
        chosen = []
        for m in members:
            split, cls = Path(m.name).parts[-3], Path(m.name).parts[-2]
            limit = limits.get(split, 0)
            if limit is None or counts.get((split, cls), 0) < limit:
                counts[split, cls] = counts.get((split, cls), 0) + 1
                chosen.append(m)
        fh.extractall(dest, members=chosen, filter="data")
    return next(p.parent for p in dest.rglob("train") if p.is_dir())


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="dha-bench-search-") as tmp:
        data_root = args.data_root or extract(
            args.tar, Path(tmp) / "data", args.train_subset // 10,
            None if args.test_subset is None else max(1, args.test_subset // 10))
        rows: list[dict[str, Any]] = []
        for seed in range(args.seeds):
            for method in args.methods:
                raw = method_config(method, args, data_root, seed, Path(tmp) / "runs")
                calib = calibrate(method, raw, args)
                raw["output"]["name"] = f"{method}-seed{seed}"
                summary = Searcher(resolve_config(raw)).fit().summary
                row = summary_row(method, seed, summary, raw, calib)
                rows.append(row)
                print(f"{method} seed {seed}: test acc {100 * row['test_acc']:.2f}%, steps {row['steps']}, "
                      f"wall {row['wall_s']:.0f}s", flush=True)
    return aggregate(rows, args)


def summary_row(method: str, seed: int, summary: dict[str, Any], raw: dict[str, Any],
                calib: dict[str, Any]) -> dict[str, Any]:
    """One table row from a run's summary."""
    return {
        "method": method, "seed": seed, "test_acc": summary["test_acc"], "val_acc": summary["val_acc"],
        "params": summary["params"], "flops": summary["flops"], "wall_s": summary["wall_s"],
        "stage_wall_s": summary["stage_wall_s"], "steps": summary["steps"],
        "final_lr": summary.get("retrain_final", {}).get("lr", summary["final_lr"]),
        "final_wd": summary.get("retrain_final", {}).get("wd", summary["final_wd"]),
        "epochs": raw["train"]["epochs"], "retrain_epochs": (raw.get("retrain") or {}).get("epochs"),
        "genotype": summary["genotype"], **calib,
    }


def rows_from_runs(folder: Path) -> list[dict[str, Any]]:
    """Rows from finished run directories named ``<method>-seed<k>`` (e.g. left by an
    interrupted benchmark), so a partial benchmark can still be tabulated."""
    import yaml

    rows = []
    for summary_path in sorted(folder.glob("*-seed*/summary.json")):
        method, _, seed = summary_path.parent.name.rpartition("-seed")
        raw = yaml.safe_load((summary_path.parent / "config.yaml").read_text())
        summary = json.loads(summary_path.read_text())
        rows.append(summary_row(method, int(seed), summary, raw, {}))
    return rows


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    table: dict[str, dict[str, Any]] = {}
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        acc_m, acc_s = _ms([r["test_acc"] for r in mine])
        table[method] = {
            "test_acc_mean": acc_m, "test_acc_std": acc_s, "wall_s_mean": _ms([r["wall_s"] for r in mine])[0],
            "params_mean": _ms([float(r["params"]) for r in mine])[0],
            "final_lr_mean": _ms([float(r["final_lr"]) for r in mine if r["final_lr"] is not None] or [math.nan])[0],
            "final_wd_mean": _ms([float(r["final_wd"]) for r in mine if r["final_wd"] is not None] or [math.nan])[0],
            "steps_mean": _ms([float(r["steps"]) for r in mine])[0], "seeds": len(mine),
        }
    dha = table.get("dha", {}).get("test_acc_mean")
    ratios = {f"dha_vs_{m}_acc": dha / table[m]["test_acc_mean"] for m in args.methods
              if m != "dha" and dha is not None and table[m]["test_acc_mean"] > 0}
    order = sorted(args.methods, key=lambda m: -table[m]["test_acc_mean"])
    return {
        "benchmark": "bench_search",
        "settings": {"budget_s": args.budget, "seeds": args.seeds, "C": args.C, "layers": args.layers,
                     "batch": args.batch, "train_subset": args.train_subset, "test_subset": args.test_subset,
                     "threads": args.threads, "quick": args.quick},
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "table": table, "ratios": ratios, "observed_order": order,
        "paper_order": ["dha", "sequential_dha", "ista_one_stage", "darts"],
        "paper_order_reproduced": order == ["dha", "sequential_dha", "ista_one_stage", "darts"],
        "runs": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"Budget {s['budget_s']:.0f}s of search+training wall time per run, {s['seeds']} seed(s), CPU "
        f"({s['threads']} thread(s)); DARTS supernet C={s['C']}, {s['layers']} cells, batch {s['batch']}; "
        f"{s['train_subset']} training images (10% as val), {s['test_subset'] or 10000} test images.",
        "",
        "| method | test acc (%) | params | steps | wall (s) | final lr | final wd |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, row in result["table"].items():
        lines.append(f"| {method} | {100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f} | "
                     f"{row['params_mean']:,.0f} | {row['steps_mean']:.0f} | {row['wall_s_mean']:.0f} | "
                     f"{row['final_lr_mean']:.4g} | {row['final_wd_mean']:.3g} |")
    lines += ["", f"Observed order: {' > '.join(result['observed_order'])}; paper order "
              f"{'reproduced' if result['paper_order_reproduced'] else 'not reproduced'}."]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(result["table"])
    means = [100 * result["table"][m]["test_acc_mean"] for m in methods]
    stds = [100 * result["table"][m]["test_acc_std"] for m in methods]
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    ax.bar(methods, means, yerr=stds, capsize=4, color=["tab:green", "tab:blue", "tab:orange", "tab:gray"][:len(methods)])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"same budget: {result['settings']['budget_s']:.0f}s per run (CPU)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same comparisons, tiny (< 1 min on 2 cores, 1 seed)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None, help=f"update the table in this file (e.g. {DOC})")
    parser.add_argument("--plot", type=Path, default=None, help="write a bar chart here")
    parser.add_argument("--tar", type=Path, default=SHARED_TAR)
    parser.add_argument("--data-root", type=Path, default=None, help="an already extracted ImageFolder root")
    parser.add_argument("--from-runs", type=Path, default=None,
                        help="tabulate finished run directories (<method>-seed<k>) instead of running")
    parser.add_argument("--budget", type=float, default=None, help="seconds per run (default 480; 5 with --quick)")
    parser.add_argument("--seeds", type=int, default=None, help="default 2; 1 with --quick")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--C", type=int, default=None, help="supernet width (default 8; 4 with --quick)")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-subset", type=int, default=None, help="default 10000; 500 with --quick")
    parser.add_argument("--test-subset", type=int, default=None, help="default: all 10000; 200 with --quick")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.data_root is None and args.from_runs is None and not args.tar.is_file():
        parser.error(f"data not found: {args.tar} (pass --tar or --data-root)")
    args.budget = args.budget or (5.0 if args.quick else 480.0)
    args.seeds = args.seeds or (1 if args.quick else 2)
    args.C = args.C or (4 if args.quick else 8)
    args.train_subset = args.train_subset or (500 if args.quick else 10_000)
    args.test_subset = args.test_subset or (200 if args.quick else None)
    if args.quick:
        args.layers = min(args.layers, 3)
        args.batch = min(args.batch, 16)
    if args.from_runs is not None:
        rows = rows_from_runs(args.from_runs)
        if not rows:
            parser.error(f"no finished runs under {args.from_runs}")
        args.methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
        args.seeds = max(r["seed"] for r in rows) + 1
        result = aggregate(rows, args)
    else:
        result = run(args)
    emit(result, markdown(result), args.json, args.markdown, MARKERS,
         heading="Same-budget comparison (`benchmarks/bench_search.py`)", new_file="# Results\n")
    if args.plot is not None:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
