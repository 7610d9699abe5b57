"""Per-iteration cost of the DHA joint step versus a plain step and the DARTS 2nd-order step.

All variants use the same DARTS supernet (same config and seed) and batch, built through
``dha_core.Searcher`` exactly as a search builds them:

* ``plain``: ``relax=ista`` weights (sparse), ``aug=kornia`` applied, ``hpo=fixed``; the
  architecture and policy updates are switched off: forward, backward, clip, SGD step.
* ``dha_held_out``: the full joint step (ISTA arch step, policy step, hypergradient with a
  held-out batch as large as the training batch).
* ``dha_next_train``: the same with the hypergradient from the next training gradient.
* ``darts2``: ``relax=softmax`` second order (dense supernet, unrolled step), ``aug=standard``,
  ``hpo=fixed``: a DARTS iteration.

Variants run interleaved in rounds (order reversed every other round) on one torch
thread; the headline figure is the minimum over rounds of the mean process-CPU time per
step (interference from other jobs only adds time). Wall-clock figures are recorded too.
The policy's share of the DHA step (augmentation + policy step) is measured by timing
those calls inside the held-out step.

Goals: DHA held_out <= 2.2x plain, next_train <= 1.15x plain, DHA cheaper than DARTS 2nd order.

**Throughput settings** (``train.precision``, ``channels_last``, ``threads``, ``compile``): the
DHA joint step (held_out and next_train) runs at

* ``fp32``, ``fp32_cl`` (channels_last), ``bf16``, ``bf16_cl`` (bf16 + channels_last) on all
  cores (a combination that ``dha`` refuses on this machine because its convolution check
  fails is recorded as refused, with the reason),
* ``fp32_1t``, ``bf16_1t``: on one thread (on a shared machine, one-thread timings suffer
  least from other jobs, so they also give the cleaner precision comparison),
* ``compile``: fp32 with ``torch.compile`` (only with ``--compile``: the first step compiles
  for minutes on CPU),

interleaved in rounds like the variants above, timed by wall clock (threads make process
CPU time meaningless), min over rounds of the per-round mean. On a CUDA device the same
settings (without the thread rows) run there too. Ratios: ``bf16_cl_vs_fp32`` (goal <= 0.8)
and ``all_cores_vs_one`` (goal <= 0.65 on 2 cores), on the summed held_out + next_train
step time; per-mode ratios are recorded too.

Usage::

    python benchmarks/bench_step.py [--quick] [--json docs/results/step.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dha_core.config import resolve_config
from dha_core.errors import UserInputError
from dha_core.precision import thread_scope
from dha_core.searcher import Searcher
from dha_core.stage import Stage

# The scripts run as files, not as a package: put this folder on the path so `common`
# imports however the script is started (``python benchmarks/...``, ``runpy``, ``-m``).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

GOALS = {"dha_held_out_vs_plain": 2.2, "dha_next_train_vs_plain": 1.15, "bf16_cl_vs_fp32": 0.8,
         "all_cores_vs_one": 0.65}
ALL_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
DHA_MODES = ("dha_held_out", "dha_next_train")
# setting -> (train.precision, train.channels_last, threads (None: all cores), train.compile)
SETTINGS: dict[str, tuple[str, bool, int | None, bool]] = {
    "fp32": ("fp32", False, None, False),
    "fp32_cl": ("fp32", True, None, False),
    "bf16": ("bf16", False, None, False),
    "bf16_cl": ("bf16", True, None, False),
    "fp32_1t": ("fp32", False, 1, False),
    "bf16_1t": ("bf16", False, 1, False),
    "compile": ("fp32", False, None, True),
}
VARIANTS = ("plain", "dha_held_out", "dha_next_train", "darts2")
DOC = Path(__file__).resolve().parents[1] / "docs" / "results.md"
MARKERS = ("<!-- bench_step:start -->", "<!-- bench_step:end -->")


def variant_config(name: str, c: int, layers: int, batch: int, image_size: int, device: str = "cpu",
                   **train: Any) -> dict[str, Any]:
    relax, aug, hpo = {"name": "ista"}, {"name": "kornia"}, {"name": "fixed"}
    if name == "dha_held_out":
        hpo = {"name": "hypergrad", "hyper_batch": "held_out"}
    elif name == "dha_next_train":
        hpo = {"name": "hypergrad", "hyper_batch": "next_train"}
    elif name == "darts2":
        relax, aug = {"name": "softmax", "order": "second"}, {"name": "standard"}
    return {
        "space": {"name": "darts", "C": c, "layers": layers},
        "relax": relax,
        "aug": aug,
        "hpo": hpo,
        "data": {"name": "synthetic", "num_train": 8 * batch, "num_test": 8, "image_size": image_size,
                 "val_fraction": 0.5},
        "train": {"batch_size": batch, "device": device, "progress": False, "seed": 0, **train},
    }


def build_stage(name: str, args: argparse.Namespace) -> Stage:
    searcher = Searcher(resolve_config(variant_config(name, args.C, args.layers, args.batch, args.image_size)))
    searcher.prepare()
    stage = searcher.builder.build(searcher.plan[0])
    if name == "plain":
        stage.aug.learnable = False  # policy applied, not updated
        stage.relax.arch_parameters = lambda: []  # type: ignore[method-assign]  # architecture fixed
    return stage


class CallTimer:
    """Wraps a bound method and accumulates its process-CPU time."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - start


def run_steps(stage: Stage, steps: int, step0: int) -> tuple[float, float]:
    """Mean CPU and wall seconds per step over ``steps`` steps (synchronising a GPU)."""
    sync = torch.cuda.synchronize if stage.step_fn.device.type == "cuda" else (lambda: None)
    sync()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(steps):
        stage.step_fn(stage.train_stream.next(), step0 + i)
    sync()
    return (time.process_time() - cpu0) / steps, (time.perf_counter() - wall0) / steps


def measure_throughput(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Wall ms per DHA step under each throughput setting on ``device`` (see the module doc)."""
    names = [n for n in SETTINGS if (args.compile or n != "compile") and (device == "cpu" or not n.endswith("_1t"))]
    stages: dict[tuple[str, str], Stage] = {}
    threads: dict[str, int] = {}
    refused: dict[str, str] = {}
    for setting in list(names):
        precision, channels_last, n_threads, compile_ = SETTINGS[setting]
        threads[setting] = n_threads or ALL_CORES
        for mode in DHA_MODES:
            cfg = variant_config(mode, args.C, args.layers, args.batch, args.image_size, device,
                                 precision=precision, channels_last=channels_last, compile=compile_)
            try:
                searcher = Searcher(resolve_config(cfg))
            except UserInputError as exc:  # the device's convolution check failed for this combination
                refused[setting] = str(exc)
                names.remove(setting)
                break
            searcher.prepare()
            stages[(setting, mode)] = searcher.builder.build(searcher.plan[0])

    def scope(setting: str) -> contextlib.AbstractContextManager[None]:
        return thread_scope(threads[setting]) if device == "cpu" else contextlib.nullcontext()

    for (setting, _), stage in stages.items():
        with scope(setting):
            run_steps(stage, args.warmup + (1 if setting == "compile" else 0), 0)
    wall: dict[str, dict[str, list[float]]] = {s: {m: [] for m in DHA_MODES} for s in names}
    keys = list(stages)
    for r in range(args.rounds):
        for setting, mode in keys if r % 2 == 0 else reversed(keys):
            with scope(setting):
                _, w = run_steps(stages[(setting, mode)], args.steps, args.warmup + 1 + r * args.steps)
            wall[setting][mode].append(w)
    best = {s: {m: 1000 * min(v) for m, v in per.items()} for s, per in wall.items()}
    total = {s: sum(per.values()) for s, per in best.items()}
    pairs = {"bf16_cl_vs_fp32": ("bf16_cl", "fp32"), "bf16_vs_fp32": ("bf16", "fp32"),
             "fp32_cl_vs_fp32": ("fp32_cl", "fp32"), "all_cores_vs_one": ("fp32", "fp32_1t"),
             "bf16_vs_fp32_one_thread": ("bf16_1t", "fp32_1t"),
             "compile_vs_fp32": ("compile", "fp32")}
    ratios: dict[str, Any] = {"per_mode": {m: {} for m in DHA_MODES}}
    for key, (a, b) in pairs.items():
        if a in best and b in best:
            ratios[key] = total[a] / total[b]
            for m in DHA_MODES:
                ratios["per_mode"][m][key] = best[a][m] / best[b][m]
        elif key in ("bf16_cl_vs_fp32", "all_cores_vs_one"):
            ratios[key] = None  # not measurable here (refused or no thread rows on this device)
    return {"device": device, "threads": threads, "refused": refused, "ms_per_step_wall": best,
            "ms_per_step_wall_median": {s: {m: 1000 * statistics.median(v) for m, v in per.items()}
                                        for s, per in wall.items()},
            "ratios": ratios}


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and the flags that matter for bf16 and vector width."""
    info: dict[str, Any] = {"cores": ALL_CORES}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "model" not in info:
            info["model"] = value.strip()
        if key.strip() == "flags" and "flags" not in info:
            flags = value.split()
            info["flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma", "f16c"))]
    return info


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    stages = {name: build_stage(name, args) for name in VARIANTS}
    timers = {"aug": CallTimer(stages["dha_held_out"].aug.forward),
              "policy": CallTimer(stages["dha_held_out"].aug.policy_step)}
    stages["dha_held_out"].aug.forward = timers["aug"]  # type: ignore[method-assign]
    stages["dha_held_out"].aug.policy_step = timers["policy"]  # type: ignore[method-assign]
    for stage in stages.values():
        run_steps(stage, args.warmup, 0)
    for t in timers.values():
        t.seconds = 0.0
    cpu: dict[str, list[float]] = {n: [] for n in VARIANTS}
    wall: dict[str, list[float]] = {n: [] for n in VARIANTS}
    held_out_cpu_total = 0.0
    for r in range(args.rounds):
        order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
        for name in order:
            c, w = run_steps(stages[name], args.steps, args.warmup + r * args.steps)
            cpu[name].append(c)
            wall[name].append(w)
            if name == "dha_held_out":
                held_out_cpu_total += c * args.steps
    best = {n: min(v) for n, v in cpu.items()}
    throughput = {"cpu": measure_throughput(args, "cpu")}
    if torch.cuda.is_available() and not args.no_cuda:
        throughput["cuda"] = measure_throughput(args, "cuda")
    torch.set_num_threads(args.threads)
    cpu_ratios = throughput["cpu"]["ratios"]
    ratios = {
        "dha_held_out_vs_plain": best["dha_held_out"] / best["plain"],
        "dha_next_train_vs_plain": best["dha_next_train"] / best["plain"],
        "darts2_vs_plain": best["darts2"] / best["plain"],
        "dha_held_out_vs_darts2": best["dha_held_out"] / best["darts2"],
        "policy_share_of_dha_step": (timers["aug"].seconds + timers["policy"].seconds) / held_out_cpu_total,
    }
    return {
        "benchmark": "bench_step",
        "settings": {"C": args.C, "layers": args.layers, "batch": args.batch, "image_size": args.image_size,
                     "rounds": args.rounds, "steps_per_round": args.steps, "threads": args.threads,
                     "quick": args.quick, "clock": "process CPU time, min over rounds of the per-round mean"},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "cpu": cpu_info(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "note": args.note},
        "ms_per_step_cpu": {n: 1000 * best[n] for n in VARIANTS},
        "ms_per_step_cpu_median": {n: 1000 * statistics.median(cpu[n]) for n in VARIANTS},
        "ms_per_step_wall_median": {n: 1000 * statistics.median(wall[n]) for n in VARIANTS},
        "ratios": {**ratios, "bf16_cl_vs_fp32": cpu_ratios["bf16_cl_vs_fp32"],
                   "all_cores_vs_one": cpu_ratios["all_cores_vs_one"]},
        "throughput": throughput,
        "goals": GOALS,
        "goals_met": {
            "dha_held_out_vs_plain": ratios["dha_held_out_vs_plain"] <= GOALS["dha_held_out_vs_plain"],
            "dha_next_train_vs_plain": ratios["dha_next_train_vs_plain"] <= GOALS["dha_next_train_vs_plain"],
            "dha_cheaper_than_darts2": ratios["dha_held_out_vs_darts2"] < 1.0,
            "bf16_cl_vs_fp32": _at_most(cpu_ratios["bf16_cl_vs_fp32"], GOALS["bf16_cl_vs_fp32"]),
            "all_cores_vs_one": _at_most(cpu_ratios["all_cores_vs_one"], GOALS["all_cores_vs_one"]),
        },
    }


def _at_most(value: float | None, goal: float) -> bool:
    return value is not None and value <= goal


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def markdown(result: dict[str, Any]) -> str:
    s, ms, r = result["settings"], result["ms_per_step_cpu"], result["ratios"]
    lines = [
        f"Darts supernet C={s['C']}, {s['layers']} cells, batch {s['batch']} at {s['image_size']}x{s['image_size']}, "
        f"CPU, {s['threads']} thread(s); {s['clock']}.",
        "",
        "| step | ms/step (CPU) | ms/step (wall, median) | vs plain |",
        "|---|---:|---:|---:|",
    ]
    for name in VARIANTS:
        lines.append(f"| {name} | {ms[name]:.1f} | {result['ms_per_step_wall_median'][name]:.1f} | "
                     f"{ms[name] / ms['plain']:.2f}x |")
    met = result["goals_met"]
    lines += [
        "",
        f"- DHA held_out vs plain: **{r['dha_held_out_vs_plain']:.2f}x** (goal <= 2.2x: "
        f"{'met' if met['dha_held_out_vs_plain'] else 'missed'})",
        f"- DHA next_train vs plain: **{r['dha_next_train_vs_plain']:.2f}x** (goal <= 1.15x: "
        f"{'met' if met['dha_next_train_vs_plain'] else 'missed'})",
        f"- DHA held_out vs DARTS 2nd order: **{r['dha_held_out_vs_darts2']:.2f}x** (goal < 1: "
        f"{'met' if met['dha_cheaper_than_darts2'] else 'missed'})",
        f"- Policy (augmentation + policy step) share of the DHA step: **{100 * r['policy_share_of_dha_step']:.1f}%**"
        " (goal <= 10%)",
    ]
    for device, t in result["throughput"].items():
        lines += ["", f"Throughput settings on {device} (wall ms per DHA step, min over rounds; threads: all = "
                  f"{ALL_CORES if device == 'cpu' else '-'}):", "",
                  "| setting | threads | held_out | next_train | vs fp32 |", "|---|---:|---:|---:|---:|"]
        ms = t["ms_per_step_wall"]
        fp32 = sum(ms["fp32"].values())
        for setting, per in ms.items():
            lines.append(f"| {setting} | {t['threads'][setting] if device == 'cpu' else '-'} | "
                         f"{per['dha_held_out']:.1f} | {per['dha_next_train']:.1f} | "
                         f"{sum(per.values()) / fp32:.2f}x |")
        for setting, why in t["refused"].items():
            lines.append(f"| {setting} | refused | - | - | - |")
        tr = t["ratios"]
        lines += ["", f"- bf16 + channels_last vs fp32: **{_ratio(tr['bf16_cl_vs_fp32'])}** (goal <= 0.8: "
                  f"{'met' if _at_most(tr['bf16_cl_vs_fp32'], 0.8) else 'missed'})"]
        for key, label in (("bf16_vs_fp32", "bf16 vs fp32"), ("bf16_vs_fp32_one_thread", "bf16 vs fp32, one thread"),
                           ("fp32_cl_vs_fp32", "fp32 channels_last vs fp32"),
                           ("compile_vs_fp32", "compile vs fp32 (after compiling)")):
            if key in tr:
                lines.append(f"- {label}: **{tr[key]:.2f}x**")
        if tr.get("all_cores_vs_one") is not None or device == "cpu":
            lines.append(f"- all {ALL_CORES} cores vs one: **{_ratio(tr.get('all_cores_vs_one'))}** (goal <= 0.65 on "
                         f"2 cores: {'met' if _at_most(tr.get('all_cores_vs_one'), 0.65) else 'missed'})")
        for setting, why in t["refused"].items():
            lines.append(f"- {setting} refused: {why}")
    cpu = result["machine"]["cpu"]
    lines += ["", f"CPU: {cpu.get('model', '?')}, {cpu['cores']} cores; flags: {' '.join(cpu.get('flags', []))}."]
    if result["machine"].get("note"):
        lines.append(f"Note: {result['machine']['note']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same comparisons, smaller (< 1 min on 2 cores)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help=f"update the table in this file (e.g. {DOC})")
    parser.add_argument("--C", type=int, default=None, help="supernet width (default 8; 4 with --quick)")
    parser.add_argument("--layers", type=int, default=None, help="cells (default 5; 3 with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="batch (default 64; 16 with --quick)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 5; 2 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 3; 1 with --quick)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="threads of the plain/DHA/DARTS comparison")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile row (compiles for minutes)")
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA rows even when a GPU is present")
    parser.add_argument("--note", default="", help="a remark stored with the results (e.g. machine load)")
    args = parser.parse_args(argv)
    args.C = args.C or (4 if args.quick else 8)
    args.layers = args.layers or (3 if args.quick else 5)
    args.batch = args.batch or (16 if args.quick else 64)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.steps = args.steps or (1 if args.quick else 3)
    result = measure(args)
    emit(result, markdown(result), args.json, args.markdown, MARKERS, heading="Step cost (`benchmarks/bench_step.py`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
