"""Dense versus sparse mixing in the DARTS supernet: forward+backward time and memory (issue 3).

One DARTS search network (``space=darts``, all 8 candidate ops) runs forward and backward
on the same batch under three kinds of mixing weights:

* ``dense``: every candidate of every edge is computed (``active = None``), as in DARTS;
* ``sparse``: 2 active ``(edge, op)`` pairs per node, drawn at random among the 7
  non-``none`` ops (fixed seed), the way an ISTA/top-k relaxation drives the space;
* ``sparse_heavy``: 2 active pairs per node that are both ``sep_conv_5x5`` (the most
  expensive op): the worst case of 2 active ops per node.

Time is the wall-clock of ``forward + backward`` (set-to-none gradients in between). The
variants run interleaved in rounds on one network, and the figure is the median over the
rounds, so a drifting shared machine does not favour one variant.

Memory on CPU is the **autograd activation memory**: the bytes of every distinct tensor
storage that autograd saves for the backward pass, recorded with
``torch.autograd.graph.saved_tensors_hooks`` during one forward pass. It is the part of
peak memory that grows with the number of computed candidates (parameters are the same
for all variants). Two more figures are reported for context: the bytes of the parameter
gradients the backward pass produces, and the growth of the process' peak resident set
(``ru_maxrss``; sparse variants run first, so each figure is that variant's own peak).
With ``--device cuda`` the memory figure is ``torch.cuda.max_memory_allocated`` instead.

Forward FLOPs (``torch.utils.flop_counter``) are reported as the device-independent
reference for the time ratio.

Goal: sparse costs at most 0.25x dense in time and memory.

Usage::

    python benchmarks/bench_spaces.py [--quick] [--json docs/results/spaces.json] [--markdown docs/spaces.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from dha_core import get_registry
from dha_core.types import ChoiceGroup, DataSpec, MixingWeights

# The scripts run as files, not as a package: put this folder on the path so `common`
# imports however the script is started (``python benchmarks/...``, ``runpy``, ``-m``).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

GOAL = 0.25
VARIANTS = ("sparse", "sparse_heavy", "dense")
BEGIN, END = "<!-- bench_spaces:begin -->", "<!-- bench_spaces:end -->"


def build(c: int, layers: int, image_size: int, device: torch.device) -> tuple[Any, Any]:
    """The darts space (all 8 ops) and its supernet, through the registry."""
    registry = get_registry()
    cfg = registry.get("space", "darts").config(C=c, layers=layers)
    space = registry.create("space", cfg, data_spec=DataSpec(num_classes=10, channels=3, image_size=image_size))
    return space, space.build_supernet().to(device).train()


def mixing_weights(groups: list[ChoiceGroup], kind: str, seed: int, device: torch.device) -> MixingWeights:
    """Random positive weights; ``active`` per ``kind`` (see the module docstring)."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    values, active = {}, {}
    for g in groups:
        w = torch.softmax(torch.randn(g.shape, generator=gen), dim=-1)
        if kind == "dense":
            pairs = None
        elif kind == "sparse":
            candidates = [(e, o) for e in range(len(g.edges)) for o, n in enumerate(g.ops) if n != g.none_op]
            pairs = sorted(rng.sample(candidates, 2))
        else:
            heavy = g.ops.index("sep_conv_5x5")
            pairs = [(e, heavy) for e in sorted(rng.sample(range(len(g.edges)), 2))]
        if pairs is not None:
            mask = torch.zeros(g.shape)
            for e, o in pairs:
                mask[e, o] = 1.0
            w = w * mask
        values[g.name] = w.to(device).requires_grad_()
        active[g.name] = pairs
    return MixingWeights(values, active)


def step(net: Any, x: torch.Tensor, y: torch.Tensor, weights: MixingWeights) -> None:
    """One forward + backward pass."""
    for w in weights.values.values():
        w.grad = None
    net.zero_grad(set_to_none=True)
    out = net(x, weights)
    logits = out[0] if isinstance(out, tuple) else out
    torch.nn.functional.cross_entropy(logits, y).backward()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def saved_activation_bytes(net: Any, x: torch.Tensor, weights: MixingWeights) -> int:
    """Bytes of the distinct storages autograd saves for backward during one forward pass."""
    seen: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[(str(t.device), storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(x, weights)
    del out
    return sum(seen.values())


def peak_rss_bytes() -> int:
    """The process' peak resident set so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def forward_flops(net: Any, x: torch.Tensor, weights: MixingWeights) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, weights)
    return int(counter.get_total_flops())


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    space, net = build(args.C, args.layers, args.image_size, device)
    groups = space.choice_groups()
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    weights = {k: mixing_weights(groups, k, args.seed, device) for k in VARIANTS}
    results: dict[str, dict[str, Any]] = {k: {} for k in VARIANTS}

    # Memory first (sparse variants before dense, so the monotonic peak RSS is per variant).
    base_rss = peak_rss_bytes()
    for k in VARIANTS:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        step(net, x, y, weights[k])
        sync(device)
        results[k]["param_grad_bytes"] = sum(
            p.grad.numel() * p.grad.element_size() for p in net.parameters() if p.grad is not None
        )
        if device.type == "cuda":
            results[k]["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(device) - base)
        results[k]["peak_rss_growth_bytes"] = peak_rss_bytes() - base_rss
        net.zero_grad(set_to_none=True)
        results[k]["saved_activation_bytes"] = saved_activation_bytes(net, x, weights[k])
        results[k]["forward_flops"] = forward_flops(net, x, weights[k])
        pairs = weights[k].active
        results[k]["computed_candidates_per_cell_type"] = {
            t: sum(
                (len(pairs[g.name]) if pairs[g.name] is not None else (g.size - len(g.edges)))
                for g in groups if g.name.startswith(f"{t}/")
            )
            for t in ("normal", "reduce")
        }

    # Time: warm-up, then interleaved rounds.
    for _ in range(args.warmup):
        for k in VARIANTS:
            step(net, x, y, weights[k])
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(args.repeats):
        for k in VARIANTS:
            sync(device)
            t0 = time.perf_counter()
            step(net, x, y, weights[k])
            sync(device)
            times[k].append(time.perf_counter() - t0)
    for k in VARIANTS:
        results[k]["time_s_median"] = statistics.median(times[k])
        results[k]["time_s_min"] = min(times[k])
        results[k]["times_s"] = times[k]

    mem_key = "cuda_peak_bytes" if device.type == "cuda" else "saved_activation_bytes"

    def ratio(a: str, b: str, key: str) -> float:
        return float(results[a][key]) / float(results[b][key])

    ratios = {
        "sparse_vs_dense_time": ratio("sparse", "dense", "time_s_median"),
        "sparse_vs_dense_mem": ratio("sparse", "dense", mem_key),
    }
    return {
        "benchmark": "bench_spaces",
        "mode": "quick" if args.quick else "full",
        "settings": {
            "space": "darts", "ops": list(groups[0].ops), "C": args.C, "layers": args.layers,
            "nodes": len([g for g in groups if g.name.startswith("normal/")]), "batch": args.batch,
            "image_size": args.image_size, "device": str(device), "threads": torch.get_num_threads(),
            "warmup": args.warmup, "repeats": args.repeats, "seed": args.seed,
            "sparse_pairs": {k: {g: p for g, p in weights[k].active.items()} for k in ("sparse", "sparse_heavy")},
        },
        "memory_measure": (
            "torch.cuda.max_memory_allocated during one forward+backward, minus memory allocated before"
            if device.type == "cuda"
            else "autograd saved-tensor bytes (distinct storages) of one forward pass, via "
            "torch.autograd.graph.saved_tensors_hooks"
        ),
        "results": results,
        "ratios": ratios,
        "other_ratios": {
            "sparse_vs_dense_forward_flops": ratio("sparse", "dense", "forward_flops"),
            "sparse_vs_dense_time_min": ratio("sparse", "dense", "time_s_min"),
            "sparse_vs_dense_param_grad_bytes": ratio("sparse", "dense", "param_grad_bytes"),
            "sparse_vs_dense_peak_rss_growth": ratio("sparse", "dense", "peak_rss_growth_bytes"),
            "sparse_heavy_vs_dense_time": ratio("sparse_heavy", "dense", "time_s_median"),
            "sparse_heavy_vs_dense_mem": ratio("sparse_heavy", "dense", mem_key),
            "sparse_heavy_vs_dense_forward_flops": ratio("sparse_heavy", "dense", "forward_flops"),
        },
        "goal": {
            "max_ratio": GOAL,
            "time_met": ratios["sparse_vs_dense_time"] <= GOAL,
            "mem_met": ratios["sparse_vs_dense_mem"] <= GOAL,
        },
        "environment": {
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def markdown_table(result: dict[str, Any]) -> str:
    """The measured figures, ratios and goal as markdown."""
    s, r = result["settings"], result["results"]
    mem_label = "CUDA peak MiB" if "cuda" in s["device"] else "saved activations MiB"
    lines = [
        f"Measured by `benchmarks/bench_spaces.py{' --quick' if result['mode'] == 'quick' else ''}`: "
        f"darts supernet, C={s['C']}, layers={s['layers']}, nodes={s['nodes']}, batch {s['batch']}, "
        f"{s['image_size']}x{s['image_size']}, {s['device']} ({s['threads']} thread(s)), "
        f"median of {s['repeats']} interleaved rounds after {s['warmup']} warm-up.",
        "",
        f"| variant | candidates computed per normal / reduce cell | fwd+bwd time (s) | {mem_label} "
        "| param-grad MiB | peak RSS growth MiB | forward GFLOPs |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in ("dense", "sparse", "sparse_heavy"):
        v = r[k]
        cc = v["computed_candidates_per_cell_type"]
        mem = v.get("cuda_peak_bytes", v["saved_activation_bytes"])
        lines.append(
            f"| {k} | {cc['normal']} / {cc['reduce']} | {v['time_s_median']:.3f} | {_mib(mem)} "
            f"| {_mib(v['param_grad_bytes'])} | {_mib(v['peak_rss_growth_bytes'])} | {v['forward_flops'] / 1e9:.3f} |"
        )
    ra, oth, goal = result["ratios"], result["other_ratios"], result["goal"]
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    lines += [
        "",
        "| ratio (sparse / dense) | value | goal <= 0.25 |",
        "|---|---|---|",
        f"| time (`ratios.sparse_vs_dense_time`) | {ra['sparse_vs_dense_time']:.3f} | {verdict(goal['time_met'])} |",
        f"| memory (`ratios.sparse_vs_dense_mem`) | {ra['sparse_vs_dense_mem']:.3f} | {verdict(goal['mem_met'])} |",
        f"| forward FLOPs | {oth['sparse_vs_dense_forward_flops']:.3f} | |",
        f"| parameter-gradient bytes | {oth['sparse_vs_dense_param_grad_bytes']:.3f} | |",
        f"| process peak RSS growth | {oth['sparse_vs_dense_peak_rss_growth']:.3f} | |",
        f"| worst case (2 x sep_conv_5x5 per node): time | {oth['sparse_heavy_vs_dense_time']:.3f} | |",
        f"| worst case: memory | {oth['sparse_heavy_vs_dense_mem']:.3f} | |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same comparisons, smaller (under a minute on 2 cores)")
    parser.add_argument("--C", type=int, default=None, help="channels (default 16, DARTS search; 8 with --quick)")
    parser.add_argument("--layers", type=int, default=None, help="cells (default 8; 5 with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 32; 8 with --quick)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1)
    # One thread by default: on a small shared machine, OpenMP threads that spin-wait make
    # small convolutions far slower and the timings erratic.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="update the table between the bench markers")
    args = parser.parse_args(argv)
    args.C = args.C or (8 if args.quick else 16)
    args.layers = args.layers or (5 if args.quick else 8)
    args.batch = args.batch or (8 if args.quick else 32)

    result = run(args)
    emit(result, markdown_table(result), args.json, args.markdown, (BEGIN, END))
    return result


if __name__ == "__main__":
    main()
