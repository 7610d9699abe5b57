"""Throughput of DHA's batched augmentation policy against per-image and batched AutoAugment.

On CPU, with batches of 32x32 RGB images, one run measures:

* ``dha_kornia``: ``aug=kornia`` (two ops per sample, per-sample magnitudes, sampling
  included; no crop/flip/cutout) on a float batch; the headline figure;
* ``dha_kornia_per_op_calls``: the same with ``fuse_geometric=false`` (exactly one call per
  op present);
* ``dha_torchvision``: the same policy through the per-image torchvision backend;
* ``torchvision_autoaugment``: ``torchvision.transforms.v2.AutoAugment(CIFAR10)`` applied to
  each PIL image in turn, as a data-loader worker does (the PIL-to-tensor conversion a worker
  also needs is *not* timed, which favours this baseline);
* ``kornia_autoaugment``: ``kornia.augmentation.auto.AutoAugment("cifar10")`` on the batch
  (one sub-policy drawn per batch, so it does less per image than the other two policies).

The methods run round-robin, so drift in machine load hits them alike, and the median
time per batch is reported, as wall time (the ``ratios`` in the JSON) and as process CPU
time (``ratios_cpu_time``; steadier on a shared machine). Every method gets the same number of intra-op threads (1 by
default: one data-loader worker's worth of CPU).

Usage::

    python benchmarks/bench_aug.py                    # full run, prints a markdown table
    python benchmarks/bench_aug.py --quick            # same comparisons, smaller (< 1 min)
    python benchmarks/bench_aug.py --json docs/results/aug.json --markdown docs/augmentation.md
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

import kornia
import torch
import torchvision
from kornia.augmentation import auto as kauto
from PIL import Image
from torchvision.transforms import v2

from dha_plugins.aug.kornia_policy import KorniaPolicy, KorniaPolicyConfig
from dha_plugins.aug.torchvision_policy import TorchvisionPolicy, TorchvisionPolicyConfig

# The scripts run as files, not as a package: put this folder on the path so `common`
# imports however the script is started (``python benchmarks/...``, ``runpy``, ``-m``).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

GOAL_VS_TORCHVISION = 3.0
BEGIN, END = "<!-- bench_aug:begin -->", "<!-- bench_aug:end -->"

LABELS = {
    "dha_kornia": "DHA policy, `aug=kornia` (batched, fused geometric warp)",
    "dha_kornia_per_op_calls": "DHA policy, `aug=kornia`, one call per op (`fuse_geometric=false`)",
    "dha_torchvision": "DHA policy, `aug=torchvision` (per image, tensors)",
    "torchvision_autoaugment": "torchvision v2 `AutoAugment(CIFAR10)`, per PIL image",
    "kornia_autoaugment": "Kornia `AutoAugment('cifar10')`, batched",
}


def build_methods(batch: int, size: int, seed: int) -> dict[str, Callable[[], Any]]:
    """The timed callables, each augmenting one batch of ``batch`` images."""
    g = torch.Generator().manual_seed(seed)
    u8 = torch.randint(0, 256, (batch, 3, size, size), generator=g, dtype=torch.uint8)
    x = u8.float() / 255
    pil_images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in u8]
    no_fixed = {"crop": False, "flip": False, "cutout": 0}
    fused = KorniaPolicy(KorniaPolicyConfig(**no_fixed))
    per_op = KorniaPolicy(KorniaPolicyConfig(fuse_geometric=False, **no_fixed))
    per_image = TorchvisionPolicy(TorchvisionPolicyConfig(**no_fixed))
    tv_autoaugment = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    kornia_autoaugment = kauto.AutoAugment("cifar10")
    policy_gen = torch.Generator().manual_seed(seed + 1)

    def torchvision_autoaugment() -> list[Image.Image]:
        return [tv_autoaugment(img) for img in pil_images]

    return {
        "dha_kornia": lambda: fused(x, policy_gen),
        "dha_kornia_per_op_calls": lambda: per_op(x, policy_gen),
        "dha_torchvision": lambda: per_image(x, policy_gen),
        "torchvision_autoaugment": torchvision_autoaugment,
        "kornia_autoaugment": lambda: kornia_autoaugment(x),
    }


def measure(
    methods: dict[str, Callable[[], Any]], repeats: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU seconds per batch for each method, ``repeats`` times, round-robin.

    On a shared machine the wall time includes waiting for a core; the CPU time does not,
    so it is the steadier figure of the work each method does.
    """
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    return wall, cpu


def markdown_table(result: dict[str, Any]) -> str:
    """The results as a markdown table plus the ratios and the goal."""
    cfg = result["config"]
    rows = [
        f"CPU, batch {cfg['batch']} of {cfg['image_size']}x{cfg['image_size']} RGB, {cfg['threads']} intra-op "
        f"thread(s), median of {cfg['repeats']} round-robin repeats; torch {cfg['torch']}, "
        f"torchvision {cfg['torchvision']}, kornia {cfg['kornia']}; `{cfg['command']}`.",
        "",
        "| method | ms / batch | images / s | vs torchvision AutoAugment | images / CPU-s | vs torchvision (CPU time) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    tv = result["images_per_s"]["torchvision_autoaugment"]
    tv_cpu = result["images_per_cpu_s"]["torchvision_autoaugment"]
    for name, label in LABELS.items():
        ips, cps = result["images_per_s"][name], result["images_per_cpu_s"][name]
        rows.append(
            f"| {label} | {result['ms_per_batch'][name]:.1f} | {ips:,.0f} | {ips / tv:.2f}x | {cps:,.0f} | {cps / tv_cpu:.2f}x |"
        )
    ratios = result["ratios"]
    met = "met" if result["goal"]["met"] else "**missed**"
    rows += [
        "",
        f"- `dha_vs_torchvision` = {ratios['dha_vs_torchvision']:.2f} (wall time; goal >= {GOAL_VS_TORCHVISION:.0f}x: {met}); "
        f"{result['ratios_cpu_time']['dha_vs_torchvision']:.2f} by CPU time",
        f"- `dha_vs_kornia_autoaugment` = {ratios['dha_vs_kornia_autoaugment']:.2f} (wall time); "
        f"{result['ratios_cpu_time']['dha_vs_kornia_autoaugment']:.2f} by CPU time",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same comparisons, smaller (under a minute)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 256; 128 with --quick)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 15; 3 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for every method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="update the table between the bench markers")
    args = parser.parse_args(argv)

    batch = args.batch or (128 if args.quick else 256)
    repeats = args.repeats or (3 if args.quick else 15)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the per-image and Kornia AutoAugment draw from the global RNG
    methods = build_methods(batch, args.image_size, args.seed)
    times, cpu_times = measure(methods, repeats, warmup=1 if args.quick else 3)

    median = {name: statistics.median(t) for name, t in times.items()}
    ips = {name: batch / t for name, t in median.items()}
    cpu_ips = {name: batch / max(statistics.median(t), 1e-9) for name, t in cpu_times.items()}
    ratios = {
        "dha_vs_torchvision": ips["dha_kornia"] / ips["torchvision_autoaugment"],
        "dha_vs_kornia_autoaugment": ips["dha_kornia"] / ips["kornia_autoaugment"],
    }
    command = "python benchmarks/bench_aug.py" + (" --quick" if args.quick else "")
    result = {
        "config": {
            "batch": batch,
            "image_size": args.image_size,
            "repeats": repeats,
            "threads": args.threads,
            "quick": args.quick,
            "device": "cpu",
            "command": command,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "kornia": kornia.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "ms_per_batch": {name: 1e3 * t for name, t in median.items()},
        "ms_per_batch_min": {name: 1e3 * min(t) for name, t in times.items()},
        "images_per_s": ips,
        "images_per_cpu_s": cpu_ips,
        "ratios": ratios,
        "ratios_cpu_time": {
            "dha_vs_torchvision": cpu_ips["dha_kornia"] / cpu_ips["torchvision_autoaugment"],
            "dha_vs_kornia_autoaugment": cpu_ips["dha_kornia"] / cpu_ips["kornia_autoaugment"],
        },
        "goal": {"dha_vs_torchvision_min": GOAL_VS_TORCHVISION, "met": ratios["dha_vs_torchvision"] >= GOAL_VS_TORCHVISION},
    }
    # required: the table sits at a chosen place in docs/augmentation.md, never appended.
    emit(result, markdown_table(result), args.json, args.markdown, (BEGIN, END), required=True)
    return result


if __name__ == "__main__":
    main()
