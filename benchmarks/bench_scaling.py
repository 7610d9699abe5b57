"""Scaling on CPU (issue 8): one search on 1 vs 2 gloo ranks, and a sweep locally vs on Ray Tune.

**Step time.** The DHA joint step (``space=darts`` small supernet, ``relax=ista``,
``aug=kornia``, ``hpo=hypergrad`` held-out) on synthetic 32x32 images, timed per step
after a warm-up, in three layouts on the same 2 cores:

* ``1rank_B``: one process (this one), batch ``B``, one torch thread;
* ``2ranks_B``: two gloo processes started by torchrun, batch ``B`` each (effective
  ``2B``), one thread each: what ``dha search --nproc 2`` does;
* ``1rank_2B``: one process (this one), batch ``2B``, two threads: the same work per step as
  ``2ranks_B`` with the cores given to intra-op parallelism instead.

The step time of a distributed run is rank 0's (every rank waits for the others in the
all-reduces). Statistic: the median over the timed steps.

**Sweep throughput.** ``N`` small searches (``space=tiny``), each a trial of
``dha sweep``: ``local`` runs them one after another in this process with two torch
threads (and again with one); ``ray`` runs them as Ray Tune trials on a local instance
with ``num_cpus=2`` and one CPU (one thread) per trial. Throughput is trials per second of the whole
``run_sweep`` call; Ray's instance start-up is timed separately and reported both
ways.

The machine may be shared with other jobs: the environment records the load average.

Usage::

    python benchmarks/bench_scaling.py [--quick] [--json docs/results/scaling.json] [--markdown docs/scaling.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

# The scripts run as files, not as a package: put this folder on the path so `common`
# imports however the script is started (``python benchmarks/...``, ``runpy``, ``-m``).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scaling.md"
MARKERS = ("<!-- bench_scaling:begin -->", "<!-- bench_scaling:end -->")


# --------------------------------------------------------------------------- step time
def step_config(out: Path, batch: int, width: int = 8) -> dict[str, Any]:
    return {
        "space": {"name": "darts", "C": width, "layers": 3, "nodes": 2, "auxiliary": False},
        "relax": {"name": "ista"},
        "aug": {"name": "kornia"},
        "hpo": {"name": "hypergrad"},
        "data": {"name": "synthetic", "num_train": 4096, "num_test": 16, "image_size": 32},
        "train": {"batch_size": batch, "device": "cpu", "progress": False, "epochs": 1},
        "output": {"dir": str(out), "plots": False},
    }


def run_steps(batch: int, threads: int, steps: int, warmup: int, width: int) -> dict[str, Any] | None:
    """Times ``steps`` joint steps in this process (one rank under torchrun, or alone).

    Returns:
        ``{"world", "batch", "threads", "step_s"}`` on rank 0, None on other ranks.
    """
    import dha_core
    from dha_core.distributed import DistContext

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        searcher = dha_core.build(config=step_config(Path(tmp), batch, width))
        searcher.dist = DistContext.start(searcher.device)
        searcher.prepare()
        stage = searcher.builder.build(searcher.plan[0])
        times = []
        for step in range(warmup + steps):
            data = stage.train_stream.next()
            if searcher.dist is not None:
                torch.distributed.barrier()  # start every step together: time the step, not the skew
            start = time.perf_counter()
            stage.step_fn(data, step)
            if step >= warmup:
                times.append(time.perf_counter() - start)
        world = 1 if searcher.dist is None else searcher.dist.world_size
        rank = 0 if searcher.dist is None else searcher.dist.rank
        if searcher.dist is not None:
            searcher.dist.close()
    return {"world": world, "batch": batch, "threads": threads, "step_s": times} if rank == 0 else None


def worker(args: argparse.Namespace) -> None:
    """One rank of the torchrun layout; rank 0 writes the step times to ``--out``."""
    record = run_steps(args.batch, args.threads, args.steps, args.warmup, args.C)
    if record is not None:
        Path(args.out).write_text(json.dumps(record))


def measure_steps(layout: str, batch: int, steps: int, warmup: int, width: int) -> dict[str, Any]:
    """One layout's step times; single-process layouts run here, the 2-rank one under torchrun."""
    world, per_rank, threads = {"1rank_B": (1, batch, 1), "2ranks_B": (2, batch, 1),
                                "1rank_2B": (1, 2 * batch, 2)}[layout]
    if world == 1:
        # In this process: no interpreter start-up, torch and the plugins are already imported.
        record = run_steps(per_rank, threads, steps, warmup, width)
        assert record is not None
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "steps.json"
            script = [str(Path(__file__).resolve()), "--worker", "--batch", str(per_rank), "--threads",
                      str(threads), "--steps", str(steps), "--warmup", str(warmup), "--C", str(width),
                      "--out", str(out)]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            env.pop("WORLD_SIZE", None)
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
                       *script]
            subprocess.run(command, check=True, env=env, cwd=ROOT, capture_output=True)
            record = json.loads(out.read_text())
    median = statistics.median(record["step_s"])
    return {"processes": world, "batch_per_process": per_rank, "global_batch": world * per_rank,
            "threads_per_process": threads, "supernet_C": width, "step_ms_median": 1000 * median,
            "step_ms_min": 1000 * min(record["step_s"]), "samples_per_s": world * per_rank / median,
            "steps_timed": len(record["step_s"])}


# --------------------------------------------------------------------------- sweeps
def sweep_config(path: Path, out: Path, epochs: int, num_train: int) -> Path:
    import yaml

    raw = {
        "space": {"name": "tiny", "channels": 16},
        "relax": "ista",
        "aug": "kornia",
        "hpo": "hypergrad",
        "data": {"name": "synthetic", "num_train": num_train, "num_test": 64, "image_size": 16},
        "train": {"epochs": epochs, "batch_size": 32, "device": "cpu", "progress": False},
        "output": {"dir": str(out), "plots": False},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def measure_sweeps(trials: int, epochs: int, num_train: int) -> dict[str, Any]:
    import ray

    from dha_core.sweep import RayOptions, Sweep, run_sweep

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    grid = [f"space.channels={','.join(str(12 + i) for i in range(trials))}"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = sweep_config(Path(tmp) / "sweep.yaml", Path(tmp), epochs, num_train)
        for name, threads in (("local", 2), ("local_1thread", 1)):
            torch.set_num_threads(threads)
            sweep = Sweep.from_file(config, grid, out=Path(tmp) / name, progress=False)
            start = time.perf_counter()
            _, rows = run_sweep(sweep, "local")
            local_s = time.perf_counter() - start
            results[name] = {"wall_s": local_s, "trials_per_s": trials / local_s, "threads": threads,
                             "trial_wall_s_mean": statistics.fmean(r["wall_s"] for r in rows)}

        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start_s = time.perf_counter() - start
        try:
            sweep = Sweep.from_file(config, grid, out=Path(tmp) / "ray", progress=False)
            start = time.perf_counter()
            _, rows = run_sweep(sweep, "ray", ray_options=RayOptions(cpus_per_trial=1))
            ray_s = time.perf_counter() - start
        finally:
            ray.shutdown()
        results["ray"] = {"wall_s": ray_s, "instance_start_s": ray_start_s, "trials_per_s": trials / ray_s,
                          "trials_per_s_with_start": trials / (ray_s + ray_start_s), "cpus_per_trial": 1,
                          "num_cpus": 2, "trial_wall_s_mean": statistics.fmean(r["wall_s"] for r in rows),
                          "all_done": all(r["status"] == "done" for r in rows)}
    results["trials"] = trials
    results["epochs_per_trial"] = epochs
    results["num_train"] = num_train
    return results


# --------------------------------------------------------------------------- report
def table(result: dict[str, Any]) -> str:
    steps = result["step_time"]
    lines = ["| layout | processes x threads | global batch | step (ms, median) | samples/s |",
             "|---|---|---|---|---|"]
    for name, r in steps.items():
        lines.append(f"| {name} | {r['processes']} x {r['threads_per_process']} | {r['global_batch']} | "
                     f"{r['step_ms_median']:.0f} | {r['samples_per_s']:.0f} |")
    sw = result["sweep"]
    lines += ["", f"Sweep: {sw['trials']} searches of {sw['epochs_per_trial']} epoch(s) on {sw['num_train']} "
              "synthetic images (space=tiny, ista, kornia, hypergrad).", "",
              "| engine | trials | wall (s) | trials/s | note |", "|---|---|---|---|---|",
              f"| local | {sw['trials']} | {sw['local']['wall_s']:.1f} | {sw['local']['trials_per_s']:.3f} | "
              "sequential, 2 threads |",
              f"| local | {sw['trials']} | {sw['local_1thread']['wall_s']:.1f} | "
              f"{sw['local_1thread']['trials_per_s']:.3f} | sequential, 1 thread |",
              f"| ray | {sw['trials']} | {sw['ray']['wall_s']:.1f} | {sw['ray']['trials_per_s']:.3f} | "
              f"2 concurrent trials x 1 CPU; + {sw['ray']['instance_start_s']:.1f} s instance start "
              f"({sw['ray']['trials_per_s_with_start']:.3f} trials/s with it) |"]
    ratios = result["ratios"]
    lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="narrower supernet, fewer steps and trials (under a minute)")
    parser.add_argument("--json", type=Path, help="write the full result here")
    parser.add_argument("--markdown", type=Path, default=None, help=f"update the table in this file (e.g. {DOC})")
    parser.add_argument("--batch", type=int, default=None, help="per-process batch B (default 32; 16 with --quick)")
    # Worker mode (internal).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--C", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    steps, warmup, width = (4, 1, 4) if args.quick else (30, 3, 8)
    batch = args.batch or (16 if args.quick else 32)
    # Full mode: trials of several seconds each, so that running two at once can pay for
    # Ray's per-trial overhead; quick mode mostly measures that overhead.
    trials, epochs, num_train = (2, 1, 256) if args.quick else (8, 2, 3584)
    step_time = {layout: measure_steps(layout, batch, steps, warmup, width)
                 for layout in ("1rank_B", "2ranks_B", "1rank_2B")}
    sweep = measure_sweeps(trials, epochs, num_train)
    one, two, wide = step_time["1rank_B"], step_time["2ranks_B"], step_time["1rank_2B"]
    result: dict[str, Any] = {
        "benchmark": "bench_scaling",
        "mode": "quick" if args.quick else "full",
        "step_time": step_time,
        "sweep": sweep,
        "ratios": {
            "two_ranks_vs_one_step_time": two["step_ms_median"] / one["step_ms_median"],
            "two_ranks_vs_one_throughput": two["samples_per_s"] / one["samples_per_s"],
            "two_ranks_vs_one_rank_2B_step_time": two["step_ms_median"] / wide["step_ms_median"],
            "ray_vs_local_sweep_throughput": sweep["ray"]["trials_per_s"] / sweep["local"]["trials_per_s"],
            "ray_vs_local_1thread_sweep_throughput": sweep["ray"]["trials_per_s"]
            / sweep["local_1thread"]["trials_per_s"],
            "ray_vs_local_sweep_throughput_with_start": sweep["ray"]["trials_per_s_with_start"]
            / sweep["local"]["trials_per_s"],
        },
        "environment": {
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "load_average_1m_at_end": os.getloadavg()[0],
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
    }
    try:
        import ray

        result["environment"]["ray"] = ray.__version__
    except ImportError:
        pass
    emit(result, table(result), args.json, args.markdown, MARKERS, required=True)


if __name__ == "__main__":
    main()
