"""bf16 vs fp32 searches on the sample: does autocast change the accuracy a search reaches?

Runs the quickstart's search (DARTS cells, ISTA, the Kornia policy, hypergradients, the
``sample`` dataset) for a fixed number of steps under ``train.precision: fp32`` and
``bf16``, over several seeds, in one process and one after the other. A fixed step count
(not a time budget) makes both precisions do the same work, so the comparison is about
numerics, not speed (step times are in ``bench_step.py``).

The answer is the difference of the mean test accuracies against the seed-to-seed spread:
``bf16_minus_fp32_acc`` and ``seed_std_acc`` (the pooled standard deviation over seeds).
bf16 is "within noise" when ``|difference| <= 2 * standard error of the difference``.

Usage::

    python benchmarks/bench_precision.py [--quick] [--seeds 3] [--json docs/results/precision.json] [--markdown docs/results.md]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from dha_core.config import resolve_config
from dha_core.searcher import Searcher

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

MARKERS = ("<!-- bench_precision:start -->", "<!-- bench_precision:end -->")
PRECISIONS = ("fp32", "bf16")


def run_config(precision: str, seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The quickstart's components at a fixed step count."""
    return {
        "space": {"name": "darts", "C": args.C, "layers": args.layers, "nodes": 4},
        "relax": {"name": "ista"}, "aug": {"name": "kornia"}, "hpo": {"name": "hypergrad"},
        "data": {"name": "sample", "val_fraction": 0.1},
        "train": {"epochs": args.epochs, "max_steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch,
                  "device": "cpu", "seed": seed, "precision": precision, "channels_last": False,
                  "progress": False, "eval_every": 1000, "checkpoint_every": 10_000},
        "output": {"dir": str(out), "name": f"{precision}-seed{seed}", "plots": False, "overwrite": True},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dha-bench-precision-") as tmp:
        for seed in range(args.seeds):
            for precision in PRECISIONS:
                summary = Searcher(resolve_config(run_config(precision, seed, args, Path(tmp)))).fit().summary
                rows.append({"precision": precision, "seed": seed, "test_acc": summary["test_acc"],
                             "steps": summary["steps"], "wall_s": summary["wall_s"],
                             "genotype": summary["genotype"]})
                print(f"{precision} seed {seed}: test acc {100 * summary['test_acc']:.2f}% "
                      f"({summary['steps']} steps, {summary['wall_s']:.0f}s)", flush=True)
    accs = {p: [r["test_acc"] for r in rows if r["precision"] == p] for p in PRECISIONS}
    means = {p: statistics.fmean(a) for p, a in accs.items()}
    stds = {p: statistics.stdev(a) if len(a) > 1 else math.nan for p, a in accs.items()}
    pooled = math.sqrt((stds["fp32"] ** 2 + stds["bf16"] ** 2) / 2)
    diff = means["bf16"] - means["fp32"]
    stderr = pooled * math.sqrt(2 / args.seeds)
    same_genotype = sum(
        a["genotype"] == b["genotype"]
        for a in rows if a["precision"] == "fp32"
        for b in rows if b["precision"] == "bf16" and b["seed"] == a["seed"])
    return {
        "benchmark": "bench_precision",
        "settings": {"seeds": args.seeds, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                     "C": args.C, "layers": args.layers, "batch": args.batch, "threads": torch.get_num_threads(),
                     "quick": args.quick},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "cpus": os.cpu_count()},
        "table": {p: {"test_acc_mean": means[p], "test_acc_std": stds[p]} for p in PRECISIONS},
        "ratios": {"bf16_minus_fp32_acc": diff, "seed_std_acc": pooled,
                   "within_noise": float(abs(diff) <= 2 * stderr) if not math.isnan(stderr) else math.nan,
                   "same_genotype_fraction": same_genotype / args.seeds},
        "runs": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    s, r = result["settings"], result["ratios"]
    lines = [
        f"Quickstart search (DARTS C={s['C']}, {s['layers']} cells, ISTA, Kornia policy, hypergradients) on "
        f"`sample`, {s['epochs']} epoch(s) of at most {s['steps_per_epoch'] or 'all'} steps, batch {s['batch']}, "
        f"{s['seeds']} seeds, CPU ({s['threads']} thread(s)).",
        "",
        "| precision | test acc (%) mean ± std over seeds | per seed (%) |",
        "|---|---:|---|",
    ]
    for precision, row in result["table"].items():
        per_seed = ", ".join(f"{100 * x['test_acc']:.1f}" for x in result["runs"] if x["precision"] == precision)
        lines.append(f"| {precision} | {100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f} | "
                     f"{per_seed} |")
    verdict = {1.0: "within noise", 0.0: "outside noise"}.get(r["within_noise"], "noise not measurable (1 seed)")
    lines += ["", f"`bf16_minus_fp32_acc` = {100 * r['bf16_minus_fp32_acc']:+.2f} points, seed spread "
                  f"(`seed_std_acc`) = {100 * r['seed_std_acc']:.2f} points: {verdict} (|diff| <= 2 standard "
                  f"errors); same genotype in {100 * r['same_genotype_fraction']:.0f}% of the seeds."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same comparison, tiny (< 1 min on 2 cores)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None, help="update the table in this file")
    parser.add_argument("--seeds", type=int, default=None, help="default 3; 2 with --quick")
    parser.add_argument("--epochs", type=int, default=None, help="default 4; 1 with --quick")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: all; 3 with --quick")
    parser.add_argument("--C", type=int, default=None, help="default 8; 4 with --quick")
    parser.add_argument("--layers", type=int, default=None, help="default 5; 3 with --quick")
    parser.add_argument("--batch", type=int, default=None, help="default 64; 16 with --quick")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (2 if args.quick else 3)
    args.epochs = args.epochs or (1 if args.quick else 4)
    args.steps_per_epoch = args.steps_per_epoch or (3 if args.quick else None)
    args.C = args.C or (4 if args.quick else 8)
    args.layers = args.layers or (3 if args.quick else 5)
    args.batch = args.batch or (16 if args.quick else 64)
    result = run(args)
    emit(result, markdown(result), args.json, args.markdown, MARKERS,
         heading="bf16 vs fp32 searches (`benchmarks/bench_precision.py`)", new_file="# Results\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
