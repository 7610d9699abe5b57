"""DHA vs Sequential DHA vs ISTA one-stage vs DARTS vs a fixed DARTS_V2 cell, at one budget (CPU).

Data: from ``../shared/data/cifar10-jpeg.tar.gz``, the first 1,000 training images of
each class (10,000; 10% of them held out as the val split) and the full 10,000-image
test split are extracted to a temporary folder (or pass ``--data-root``) and read through
``dataset=imagefolder``.

Every run gets the same budget ``B`` of *training* seconds (``train.time_budget_s``;
validation and the final test are timed separately), on all cores unless ``--threads``
says otherwise. Every schedule follows the spent fraction of the budget, so no run is
rounded to whole epochs:

* ``dha``: ``relax=ista`` + ``aug=kornia`` + ``hpo=hypergrad``, one stage of ``B``; the
  architecture is fixed at ``train.search_fraction`` of it and the rest trains that child;
  the derived child is evaluated as is (no retraining).
* ``sequential_dha``: ``ista`` + ``standard`` + ``fixed`` searching for ``B/2``, then the
  derived architecture retrained from scratch with ``kornia`` + ``hypergrad`` for ``B/2``.
* ``ista_one_stage``: ``ista`` + ``standard`` + ``fixed`` for ``B`` (one stage, as DHA).
* ``darts``: ``softmax`` second order + ``standard`` + ``fixed`` for ``B/2``, then retrain
  with ``standard`` + ``fixed`` for ``B/2``.
* ``fixed_darts_v2``: the published DARTS_V2 cell (``relax=fixed``, C=16, 8 cells) trained
  for ``B`` with ``standard`` augmentation and cosine SGD: what a user gets without search.

A diagnostic row, run only when ``--methods`` names it (after ``dha``):

* ``dha_cell_fixed``: the genotype the same seed's ``dha`` run found, trained from scratch
  as a fixed network for ``B`` with the ``fixed_darts_v2`` row's recipe. It separates the
  cell a search finds from what the one-stage procedure makes of it.

Next to each run the script records how fast the machine ran: a fixed-work probe (one
training step of the DARTS_V2 row's network on in-memory data, ``machine_speed.py``)
before and after the run, and the CPU share the hypervisor stole during it. A shared
machine's speed drifts over hours, and a time-budgeted run's accuracy follows it.

Usage::

    python benchmarks/bench_search.py [--quick] [--budget 480] [--seeds 2] [--json docs/results/search.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import torch

from dha_core.config import resolve_config
from dha_core.config_files import apply_overrides
from dha_core.runtime import cpu_model
from dha_core.searcher import Searcher

# The scripts run as files, not as a package: put this folder on the path so `common`
# imports however the script is started (``python benchmarks/...``, ``runpy``, ``-m``).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402
from machine_speed import CpuSteal, reference_step_s  # noqa: E402

SHARED_TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
DOC = Path(__file__).resolve().parents[1] / "docs" / "results.md"
MARKERS = ("<!-- bench_search:start -->", "<!-- bench_search:end -->")
METHODS = ("dha", "sequential_dha", "ista_one_stage", "darts", "fixed_darts_v2")
# Opt-in diagnostic rows (not run by default, not in the ratios).
DIAGNOSTICS = ("dha_cell_fixed",)
BASELINES = ("sequential_dha", "ista_one_stage", "darts")
OPS7 = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
        "dil_conv_5x5"]


def method_config(method: str, args: argparse.Namespace, data_root: Path, seed: int, out: Path) -> dict[str, Any]:
    """The run config of one method; every run has the same training budget."""
    C, layers = (args.fixed_C, args.fixed_layers) if method == "fixed_darts_v2" else (args.C, args.layers)
    # dha_cell_fixed trains the dha row's genotype, so it takes the searched networks' size.
    space = {"name": "darts", "C": C, "layers": layers, "nodes": 4,
             "ops": (["none", *OPS7] if method == "darts" else OPS7)}
    standard, fixed = {"name": "standard"}, {"name": "fixed", "lr": 0.05, "lr_min": 0.0, "wd": 3e-4}
    kornia, hypergrad = {"name": "kornia"}, {"name": "hypergrad"}
    raw: dict[str, Any] = {
        "space": space,
        "data": {"name": "imagefolder", "root": str(data_root), "image_size": 32, "val_fraction": 0.1, "split_seed": 0,
                 "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
        "train": {"batch_size": args.batch, "device": "cpu", "seed": seed, "progress": False,
                  "checkpoint_every": 10_000, "time_budget_s": args.budget, "eval_every": 1000},
        "output": {"dir": str(out), "plots": False},
    }
    half = args.budget / 2
    if method == "dha":
        raw.update(relax={"name": "ista"}, aug=kornia, hpo=hypergrad)
    elif method == "ista_one_stage":
        raw.update(relax={"name": "ista"}, aug=standard, hpo=fixed)
    elif method == "sequential_dha":
        raw.update(relax={"name": "ista"}, aug=standard, hpo=fixed,
                   retrain={"aug": kornia, "hpo": hypergrad, "time_budget_s": half})
        raw["train"]["time_budget_s"] = half
    elif method == "darts":
        raw.update(relax={"name": "softmax", "order": "second"}, aug=standard, hpo=fixed,
                   retrain={"aug": standard, "hpo": fixed, "time_budget_s": half})
        raw["train"]["time_budget_s"] = half
        raw["data"]["val_fraction"] = 0.5  # DARTS splits train in halves for the bilevel problem
    elif method == "fixed_darts_v2":
        raw.update(relax={"name": "fixed", "genotype": "DARTS_V2"}, aug=standard, hpo=fixed)
    elif method == "dha_cell_fixed":
        raw.update(relax={"name": "fixed", "genotype": str(out / f"dha-seed{seed}" / "genotype.json")},
                   aug=standard, hpo=fixed)
    else:
        raise ValueError(f"unknown method {method!r}")
    return raw


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


def method_overrides(method: str, overrides: list[str]) -> list[str]:
    """The ``--set`` items addressed to ``method``, without the method prefix: the CLI's
    ``section.key=value`` form, applied by :func:`dha_core.config_files.apply_overrides`."""
    prefix = f"{method}."
    return [item[len(prefix):] for item in overrides if item.startswith(prefix)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="dha-bench-search-") as tmp:
        data_root = args.data_root or extract(
            args.tar, Path(tmp) / "data", args.train_subset // 10,
            None if args.test_subset is None else max(1, args.test_subset // 10))
        runs_dir = args.runs_dir or Path(tmp) / "runs"
        rows: list[dict[str, Any]] = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for method in args.methods:
                raw = method_config(method, args, data_root, seed, runs_dir)
                raw, _ = apply_overrides(raw, method_overrides(method, args.set))
                raw["output"]["name"] = f"{method}-seed{seed}"
                config = resolve_config(raw)
                speed = MachineSpeed(args)
                summary = Searcher(config).fit().summary
                speed.finish(Path(config.output.dir) / config.output.name)
                row = summary_row(method, seed, summary, raw) | speed.record
                rows.append(row)
                print(f"{method} seed {seed}: test acc {100 * row['test_acc']:.2f}%, steps {row['steps']}, "
                      f"train {row['train_s']:.0f}s of {args.budget:.0f}s", flush=True)
    return aggregate(rows, args)


class MachineSpeed:
    """The machine's speed around one run: the fixed-work probe before and after it
    (:func:`machine_speed.reference_step_s` on the DARTS_V2 row's network and batch) and
    the CPU share stolen by the hypervisor during it. Written next to the run as
    ``machine_speed.json``, so ``--from-runs`` finds it again."""

    FILE = "machine_speed.json"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.record: dict[str, Any] = {"probe_step_s_before": self._probe()}
        self._steal = CpuSteal()

    def _probe(self) -> float | None:
        a = self.args
        if a.probe_steps == 0:
            return None
        return reference_step_s(a.probe_steps, warmup=2, C=a.fixed_C, layers=a.fixed_layers, batch=a.batch)

    def finish(self, run_dir: Path) -> None:
        self.record["cpu_steal"] = self._steal.fraction()
        self.record["probe_step_s_after"] = self._probe()
        (run_dir / self.FILE).write_text(json.dumps(self.record, indent=2) + "\n")


def probe_step_s(row: dict[str, Any]) -> float | None:
    """The mean of a run's probes before and after it, or ``None`` if it was not probed."""
    probes = [row[k] for k in ("probe_step_s_before", "probe_step_s_after") if row.get(k) is not None]
    return statistics.fmean(probes) if probes else None


def summary_row(method: str, seed: int, summary: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """One table row from a run's summary."""
    budget = raw["train"]["time_budget_s"] + ((raw.get("retrain") or {}).get("time_budget_s") or 0.0)
    train_s = sum(summary.get("stage_train_s", {}).values())
    policy = summary.get("policy", {})
    return {
        "method": method, "seed": seed, "test_acc": summary["test_acc"], "val_acc": summary["val_acc"],
        "params": summary["params"], "flops": summary["flops"], "wall_s": summary["wall_s"],
        "stage_wall_s": summary["stage_wall_s"], "stage_train_s": summary.get("stage_train_s", {}),
        "train_s": train_s, "budget_s": budget, "budget_used": train_s / budget if budget else math.nan,
        "steps": summary["steps"],
        "final_lr": summary.get("retrain_final", {}).get("lr", summary["final_lr"]),
        "final_wd": summary.get("retrain_final", {}).get("wd", summary["final_wd"]),
        "learned_lr": (summary.get("hpo") or {}).get("learned_lr"),
        "policy_entropy": policy.get("entropy"), "policy_max_entropy": policy.get("max_entropy"),
        "policy_top": [t["ops"] for t in policy.get("top", [])[:3]],
        "arch_changed_groups": (summary.get("arch") or {}).get("changed_groups"),
        "arch_finalized": (summary.get("arch") or {}).get("finalized"),
        "genotype": summary["genotype"],
        "channels_last": (summary.get("performance") or {}).get("channels_last"),
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
        speed_path = summary_path.parent / MachineSpeed.FILE
        speed = json.loads(speed_path.read_text()) if speed_path.is_file() else {}
        rows.append(summary_row(method, int(seed), summary, raw) | speed)
    return rows


def added_rows(rows: list[dict[str, Any]], earlier: list[dict[str, Any]], source: Path) -> list[dict[str, Any]]:
    """The runs of an earlier result whose (method, seed) ``rows`` lacks, marked with ``source``
    (a run that result had itself taken from another keeps that first source)."""
    have = {(r["method"], r["seed"]) for r in rows}
    return [{**r, "source": r.get("source", str(source))} for r in earlier if (r["method"], r["seed"]) not in have]


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    table: dict[str, dict[str, Any]] = {}
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        acc_m, acc_s = _ms([r["test_acc"] for r in mine])
        entropies = [r["policy_entropy"] for r in mine if r.get("policy_entropy") is not None]
        probes = [p for p in map(probe_step_s, mine) if p is not None]
        table[method] = {
            "test_acc_mean": acc_m, "test_acc_std": acc_s, "wall_s_mean": _ms([r["wall_s"] for r in mine])[0],
            "train_s_mean": _ms([r["train_s"] for r in mine])[0],
            "budget_used_min": min(r["budget_used"] for r in mine),
            "params_mean": _ms([float(r["params"]) for r in mine])[0],
            "final_lr_mean": _ms([float(r["final_lr"]) for r in mine if r["final_lr"] is not None] or [math.nan])[0],
            "final_wd_mean": _ms([float(r["final_wd"]) for r in mine if r["final_wd"] is not None] or [math.nan])[0],
            "steps_mean": _ms([float(r["steps"]) for r in mine])[0], "seeds": len(mine),
            "policy_entropy_mean": _ms(entropies)[0] if entropies else None,
            "arch_changed_mean": _ms([float(r["arch_changed_groups"]) for r in mine
                                      if r.get("arch_changed_groups") is not None] or [math.nan])[0],
            "probe_step_s_mean": _ms(probes)[0] if probes else None,
        }
    ratios: dict[str, float] = {}
    if "dha" in table:
        dha = table["dha"]["test_acc_mean"]
        ratios["dha_acc"] = dha
        baselines = [table[m]["test_acc_mean"] for m in BASELINES if m in table]
        if baselines:
            ratios["dha_minus_best_baseline"] = dha - max(baselines)
        if "fixed_darts_v2" in table and table["fixed_darts_v2"]["test_acc_mean"] > 0:
            ratios["dha_vs_fixed_darts_v2"] = dha / table["fixed_darts_v2"]["test_acc_mean"]
    ratios["budget_used_min"] = min(r["budget_used"] for r in rows)
    order = sorted(args.methods, key=lambda m: -table[m]["test_acc_mean"])
    paper = [m for m in ("dha", "sequential_dha", "ista_one_stage", "darts") if m in args.methods]
    return {
        "benchmark": "bench_search",
        "goals": {"dha_acc": ">= 0.60", "dha_minus_best_baseline": ">= 0", "dha_vs_fixed_darts_v2": ">= 0.9",
                  "budget_used_min": ">= 0.95"},
        "settings": {"budget_s": args.budget, "seeds": args.seeds, "C": args.C, "layers": args.layers,
                     "fixed_C": args.fixed_C, "fixed_layers": args.fixed_layers,
                     "batch": args.batch, "train_subset": args.train_subset, "test_subset": args.test_subset,
                     "threads": torch.get_num_threads(), "quick": args.quick,
                     "overrides": list(args.set)},
        "machine": {"platform": platform.platform(), "cpu_model": cpu_model(), "torch": torch.__version__,
                    "cpus": os.cpu_count()},
        "table": table, "ratios": ratios, "observed_order": order,
        "paper_order": paper,
        "paper_order_reproduced": [m for m in order if m in paper] == paper,
        "runs": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    model = result.get("machine", {}).get("cpu_model")
    lines = [
        f"Budget {s['budget_s']:.0f}s of training per run (validation and test excluded), {s['seeds']} seed(s), "
        f"CPU ({s['threads']} thread(s){', ' + model if model else ''}); searched DARTS networks C={s['C']}, {s['layers']} cells; DARTS_V2 row "
        f"C={s['fixed_C']}, {s['fixed_layers']} cells; batch {s['batch']}; {s['train_subset']} training images "
        f"(10% as val), {s['test_subset'] or 10000} test images.",
        "",
        "| method | test acc (%) | params | steps | budget used | final lr | final wd | policy entropy | "
        "groups changed | probe s/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, row in result["table"].items():
        entropy = "-" if row["policy_entropy_mean"] is None else f"{row['policy_entropy_mean']:.2f}"
        changed = "-" if math.isnan(row["arch_changed_mean"]) else f"{row['arch_changed_mean']:.1f}"
        fewer = f" ({row['seeds']} seed)" if row["seeds"] < s["seeds"] else ""
        probe = "-" if row.get("probe_step_s_mean") is None else f"{row['probe_step_s_mean']:.3f}"
        lines.append(f"| {method} | {100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f}{fewer} | "
                     f"{row['params_mean']:,.0f} | {row['steps_mean']:.0f} | {100 * row['budget_used_min']:.0f}% | "
                     f"{row['final_lr_mean']:.4g} | {row['final_wd_mean']:.3g} | {entropy} | {changed} | {probe} |")
    r = result["ratios"]
    earlier = [f"{x['method']} seed {x['seed']}" for x in result["runs"] if x.get("source")]
    if earlier:
        lines += ["", f"Taken from an earlier recording (same settings; not re-run here): {', '.join(earlier)}."]
    if any(row.get("probe_step_s_mean") is not None for row in result["table"].values()):
        lines += ["", "Probe: seconds per training step of the DARTS_V2 row's network on in-memory data, the mean "
                  "of one probe before and one after each run (the machine's speed at the time; lower is "
                  "faster)."]
    lines += ["", "Ratios: " + ", ".join(f"`{k}` = {v:.3f}" for k, v in r.items())
              + f" (goals: {', '.join(f'{k} {v}' for k, v in result['goals'].items())}).",
              f"Observed order: {' > '.join(result['observed_order'])}; paper order "
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
    colors = ["tab:green", "tab:blue", "tab:orange", "tab:gray", "tab:purple", "tab:olive"][:len(methods)]
    ax.bar(methods, means, yerr=stds, capsize=4, color=colors)
    ax.tick_params(axis="x", labelrotation=20)
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
    parser.add_argument("--budget", type=float, default=None, help="training seconds per run (default 480; 4 with --quick)")
    parser.add_argument("--seeds", type=int, default=None, help="default 2; 1 with --quick")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + DIAGNOSTICS,
                        help="default: the five compared methods; dha_cell_fixed (diagnostic) needs dha before it")
    parser.add_argument("--C", type=int, default=None, help="searched supernets' width (default 16; 4 with --quick)")
    parser.add_argument("--layers", type=int, default=None, help="searched supernets' cells (default 8; 3 with --quick)")
    parser.add_argument("--fixed-C", type=int, default=None, help="DARTS_V2 row width (default 16; 4 with --quick)")
    parser.add_argument("--fixed-layers", type=int, default=None, help="DARTS_V2 row cells (default 8; 3 with --quick)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-subset", type=int, default=None, help="default 10000; 500 with --quick")
    parser.add_argument("--test-subset", type=int, default=None, help="default: all 10000; 200 with --quick")
    parser.add_argument("--threads", type=int, default=None, help="default: torch's choice (all cores)")
    parser.add_argument("--probe-steps", type=int, default=None,
                        help="steps of the machine-speed probe before and after each run (default 10; 2 with "
                             "--quick; 0: no probe)")
    parser.add_argument("--add-rows", type=Path, action="append", default=[], metavar="JSON",
                        help="with --from-runs: also tabulate the runs of an earlier --json result for the "
                             "(method, seed) pairs the folder lacks; each is marked with its source")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed+seeds-1")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="keep the run directories here (default: a temporary folder); --from-runs reads them")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.SECTION.KEY=VALUE",
                        help="override one method's config, e.g. dha.hpo.lr_low=0.025 (repeatable; value as YAML)")
    args = parser.parse_args(argv)
    if args.add_rows and args.from_runs is None:
        parser.error("--add-rows needs --from-runs")
    earlier: dict[Path, list[dict[str, Any]]] = {}
    for path in args.add_rows:
        try:
            earlier[path] = list(json.loads(path.read_text())["runs"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--add-rows {path}: not a bench_search --json result ({type(exc).__name__})")
    for item in args.set:
        who = item.partition(".")[0]
        if "=" not in item or who not in METHODS + DIAGNOSTICS or item.count(".") < 2:
            parser.error(f"--set {item!r}: expected METHOD.SECTION.KEY=VALUE with METHOD one of "
                         f"{', '.join(METHODS + DIAGNOSTICS)}")
    if "dha_cell_fixed" in args.methods and ("dha" not in args.methods
                                             or args.methods.index("dha") > args.methods.index("dha_cell_fixed")):
        parser.error("--methods dha_cell_fixed trains the genotype of the dha run: name dha before it")
    if args.data_root is None and args.from_runs is None and not args.tar.is_file():
        parser.error(f"data not found: {args.tar} (pass --tar or --data-root)")
    args.budget = args.budget or (4.0 if args.quick else 480.0)
    args.seeds = args.seeds or (1 if args.quick else 2)
    args.C = args.C or (4 if args.quick else 16)
    args.layers = args.layers or (3 if args.quick else 8)
    args.fixed_C = args.fixed_C or (4 if args.quick else 16)
    args.fixed_layers = args.fixed_layers or (3 if args.quick else 8)
    args.train_subset = args.train_subset or (500 if args.quick else 10_000)
    args.test_subset = args.test_subset or (200 if args.quick else None)
    if args.probe_steps is None:
        args.probe_steps = 2 if args.quick else 10
    if args.probe_steps < 0:
        parser.error(f"--probe-steps {args.probe_steps}: must be >= 0")
    if args.quick:
        args.batch = min(args.batch, 16)
    if args.from_runs is not None:
        rows = rows_from_runs(args.from_runs)
        if not rows:
            parser.error(f"no finished runs under {args.from_runs}")
        for path, runs in earlier.items():
            rows += added_rows(rows, runs, path)
        args.methods = [m for m in METHODS + DIAGNOSTICS if any(r["method"] == m for r in rows)]
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
