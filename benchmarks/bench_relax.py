"""Relaxation costs on one DARTS supernet: ISTA (sparse) versus softmax (dense), and
softmax's second-order architecture step versus its first-order one (issue 4).

Every comparison uses the same ``space=darts`` search network (all 8 candidate ops),
batch and input size:

* **training step**: ``relax.mixing_weights()``, forward, cross-entropy, backward, SGD
  (momentum 0.9) on the weights, and, for ISTA, its single-level Adam step on the codes
  ``b`` (taken from that same backward). ISTA mixes ``s = 2`` (edge, op) pairs per node,
  softmax all of them;
* **architecture step** of ``relax=softmax``: ``order=first`` (one validation
  forward/backward) versus ``order=second`` (virtual step, validation gradient at the
  unrolled weights, two finite-difference gradients).

Time is process CPU time (``time.process_time``) per call with one intra-op thread by
default, the median over interleaved rounds, so that a busy shared machine inflates
neither variant; wall time is reported too. On CPU, memory is the step's **autograd
memory**: the bytes of the distinct tensor storages saved for the backward pass during
the forward, plus the weight gradients the backward allocates. That is the part of peak
memory that depends on the relaxation; parameters, identical for both, are left out. With
``--device cuda`` it is ``torch.cuda.max_memory_allocated`` during the step, minus what was
allocated before.

Goals (issue 4): ista at most 0.25x softmax in time and 0.4x in memory.

Usage::

    python benchmarks/bench_relax.py [--quick] [--json docs/results/relax.json] [--markdown docs/relaxations.md]

With ``--markdown`` the table goes between the bench markers of that file; without it no
doc is touched (so a ``--quick`` run cannot overwrite the recorded full-run table).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dha_core import get_registry
from dha_core.interfaces import ArchStepContext, DataSpec

# The scripts run as files, not as a package: put this folder on the path so `common`
# imports however the script is started (``python benchmarks/...``, ``runpy``, ``-m``).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

GOALS = {"ista_vs_softmax_time": 0.25, "ista_vs_softmax_mem": 0.4}
BEGIN, END = "<!-- bench_relax:begin -->", "<!-- bench_relax:end -->"
DOC = Path(__file__).resolve().parents[1] / "docs" / "relaxations.md"
Batch = tuple[torch.Tensor, torch.Tensor]


def build_space(c: int, layers: int, image_size: int) -> Any:
    """The darts space from the registry, with a validated config."""
    reg = get_registry()
    if "darts" not in reg.names("space"):
        raise SystemExit("bench_relax: space=darts is not registered")
    cfg = reg.get("space", "darts").config(C=c, layers=layers)
    return reg.create("space", cfg, data_spec=DataSpec(num_classes=10, channels=3, image_size=image_size))


def build_relax(name: str, space: Any, device: torch.device, **fields: Any) -> Any:
    reg = get_registry()
    relax = reg.create("relax", reg.get("relax", name).config(**fields))
    relax.setup(space.choice_groups(), space)
    return relax.to(device)


def logits_of(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_train_step(net: torch.nn.Module, relax: Any, opt: torch.optim.Optimizer, batch: Batch) -> Callable[[], None]:
    """One weight-training step under ``relax`` (ISTA's own arch step included)."""
    x, y = batch
    ctx = ArchStepContext(loss=lambda b: torch.zeros(()), weight_params=[], weight_lr=0.025)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        relax.zero_grad(set_to_none=True)
        loss = F.cross_entropy(logits_of(net(x, relax.mixing_weights())), y)
        loss.backward()
        if not relax.bilevel:
            relax.arch_step(ctx)
        opt.step()

    return step


def make_arch_step(net: torch.nn.Module, relax: Any, train: Batch, val: Batch) -> Callable[[], None]:
    """One bilevel architecture step of ``relax`` (softmax) on the validation batch."""
    weights = [p for p in net.parameters() if p.requires_grad]

    def loss(batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits_of(net(batch[0], relax.mixing_weights())), batch[1])

    ctx = ArchStepContext(loss=loss, weight_params=weights, weight_lr=0.025, weight_momentum=0.9,
                          weight_decay=3e-4, train_batch=train, val_batch=val)
    return lambda: relax.arch_step(ctx)


def autograd_bytes(net: torch.nn.Module, relax: Any, batch: Batch) -> dict[str, int]:
    """Saved-for-backward bytes (distinct storages) of one forward, and the weight-gradient bytes."""
    storages: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[(str(t.device), s.data_ptr())] = s.nbytes()
        return t

    net.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(logits_of(net(batch[0], relax.mixing_weights())), batch[1])
    loss.backward()
    grads = sum(p.grad.nbytes for p in net.parameters() if p.grad is not None)
    net.zero_grad(set_to_none=True)
    relax.zero_grad(set_to_none=True)
    saved = sum(storages.values())
    return {"saved_bytes": saved, "grad_bytes": int(grads), "autograd_bytes": saved + int(grads)}


def cuda_peak_bytes(fn: Callable[[], None], device: torch.device) -> int:
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def timed_rounds(fns: dict[str, Callable[[], None]], repeats: int, warmup: int,
                 device: torch.device) -> dict[str, dict[str, float]]:
    """Median CPU and wall seconds per call; the variants alternate within every round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            sync(device)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    return {k: {"time_s": statistics.median(cpu[k]), "wall_s": statistics.median(wall[k])} for k in fns}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    space = build_space(args.C, args.layers, args.image_size)
    net = space.build_supernet().to(device).train()
    gen = torch.Generator().manual_seed(args.seed)

    def batch() -> Batch:
        x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=gen)
        y = torch.randint(0, 10, (args.batch,), generator=gen)
        return x.to(device), y.to(device)

    train, val = batch(), batch()
    ista = build_relax("ista", space, device, sparsity=2)
    softmax = build_relax("softmax", space, device, order="first")
    second = build_relax("softmax", space, device, order="second")
    opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)

    active = ista.mixing_weights().active
    groups = space.choice_groups()
    # Which ops ISTA's (initial) support computes: the time ratio depends on it.
    ista_ops: dict[str, int] = {}
    for g in groups:
        for _, o in active[g.name]:
            ista_ops[g.ops[o]] = ista_ops.get(g.ops[o], 0) + 1
    computed = {
        "ista": sum(len(active[g.name]) for g in groups),
        "softmax": sum(len(g.edges) * len([o for o in g.ops if o != g.none_op]) for g in groups),
    }

    train_steps = {
        "ista": make_train_step(net, ista, opt, train),
        "softmax": make_train_step(net, softmax, opt, train),
    }
    arch_steps = {
        "first": make_arch_step(net, softmax, train, val),
        "second": make_arch_step(net, second, train, val),
    }
    results: dict[str, Any] = {"train_step": {}, "arch_step": {}}
    for name, relax in (("ista", ista), ("softmax", softmax)):
        results["train_step"][name] = autograd_bytes(net, relax, train)
        results["train_step"][name]["candidates_per_cell_type"] = computed[name]
        if device.type == "cuda":
            results["train_step"][name]["cuda_peak_bytes"] = cuda_peak_bytes(train_steps[name], device)
    results["train_step"]["ista"]["active_ops"] = dict(sorted(ista_ops.items()))
    for name, timing in timed_rounds(train_steps, args.repeats, args.warmup, device).items():
        results["train_step"][name].update(timing)
    for name, timing in timed_rounds(arch_steps, args.repeats, args.warmup, device).items():
        results["arch_step"][name] = timing

    c0 = time.process_time()
    ista.recover(epoch=0)
    results["ista_recovery_s"] = time.process_time() - c0
    results["ista_nodes"] = len(groups)

    mem_key = "cuda_peak_bytes" if device.type == "cuda" else "autograd_bytes"
    ts, ar = results["train_step"], results["arch_step"]
    ratios = {
        "ista_vs_softmax_time": ts["ista"]["time_s"] / ts["softmax"]["time_s"],
        "ista_vs_softmax_mem": ts["ista"][mem_key] / ts["softmax"][mem_key],
        "second_vs_first_order_time": ar["second"]["time_s"] / ar["first"]["time_s"],
    }
    return {
        "benchmark": "relax",
        "quick": args.quick,
        "setup": {
            "space": {"name": "darts", "C": args.C, "layers": args.layers, "ops": list(groups[0].ops)},
            "batch": args.batch,
            "image_size": args.image_size,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "time_measure": "median process CPU seconds per call (wall seconds alongside)",
            "memory_measure": mem_key,
        },
        "results": results,
        "ratios": ratios,
        "goals": dict(GOALS),
        "goals_met": {k: ratios[k] <= v for k, v in GOALS.items()},
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def markdown_table(result: dict[str, Any]) -> str:
    """The results as markdown: setup line, two tables and the goal verdicts."""
    s, r, ra, met = result["setup"], result["results"], result["ratios"], result["goals_met"]
    mem_label = "CUDA peak MiB" if s["memory_measure"] == "cuda_peak_bytes" else "autograd MiB (saved + grads)"
    ts, ar = r["train_step"], r["arch_step"]
    verdict = {True: "met", False: "**missed**"}
    lines = [
        f"darts supernet C={s['space']['C']}, layers={s['space']['layers']}, {len(s['space']['ops'])} ops, "
        f"batch {s['batch']}, {s['image_size']}x{s['image_size']}, {s['device']}, {s['threads']} thread(s), "
        f"median of {s['repeats']} rounds{' (--quick)' if result['quick'] else ''}; "
        f"1-min load average {s['load_avg_1m']:.1f} on {s['cpu_count']} cores.",
        "",
        f"| training step | candidates computed (normal + reduce nodes) | CPU s | wall s | {mem_label} |",
        "|---|---|---|---|---|",
    ]
    for name in ("ista", "softmax"):
        v = ts[name]
        mem = v.get("cuda_peak_bytes", v["autograd_bytes"])
        lines.append(f"| {name} | {v['candidates_per_cell_type']} | {v['time_s']:.3f} | {v['wall_s']:.3f} | "
                     f"{_mib(mem)} |")
    lines += [
        "",
        "| softmax arch step | CPU s | wall s |",
        "|---|---|---|",
        f"| first order | {ar['first']['time_s']:.3f} | {ar['first']['wall_s']:.3f} |",
        f"| second order | {ar['second']['time_s']:.3f} | {ar['second']['wall_s']:.3f} |",
        "",
        "| ratio | value | goal |",
        "|---|---|---|",
        f"| `ista_vs_softmax_time` | {ra['ista_vs_softmax_time']:.3f} | "
        f"<= 0.25: {verdict[met['ista_vs_softmax_time']]} |",
        f"| `ista_vs_softmax_mem` | {ra['ista_vs_softmax_mem']:.3f} | <= 0.4: {verdict[met['ista_vs_softmax_mem']]} |",
        f"| `second_vs_first_order_time` | {ra['second_vs_first_order_time']:.2f} | (informational) |",
        "",
        f"ISTA's support computes {', '.join(f'{n} x{k}' for n, k in ts['ista']['active_ops'].items())} "
        "(over the normal and reduce nodes).",
        f"One ISTA recovery (one batched FISTA call for all {r['ista_nodes']} nodes): "
        f"{r['ista_recovery_s']:.3f} CPU s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same comparisons, smaller (under a minute on 2 cores)")
    parser.add_argument("--C", type=int, default=None, help="channels (default 16, DARTS search; 4 with --quick)")
    parser.add_argument("--layers", type=int, default=None, help="cells (default 8; 3 with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 16; 8 with --quick)")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default 32; 16 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3; 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=1)
    # One thread by default: on a small shared machine, spinning OpenMP threads make small
    # convolutions slow and the timings erratic.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None,
                        help=f"update the table between the bench markers of this file (e.g. {DOC})")
    args = parser.parse_args(argv)
    args.C = args.C or (4 if args.quick else 16)
    args.layers = args.layers or (3 if args.quick else 8)
    args.batch = args.batch or (8 if args.quick else 16)
    args.image_size = args.image_size or (16 if args.quick else 32)
    args.repeats = args.repeats or (2 if args.quick else 3)

    result = run(args)
    emit(result, markdown_table(result), args.json, args.markdown, (BEGIN, END))
    return result


if __name__ == "__main__":
    main()
