"""Per-candidate parameter, FLOP and latency costs, measured on the supernet's own modules.

The input shape of every candidate is recorded with forward pre-hooks during one dense,
batch-1, eval-mode forward pass, so a space never has to restate its shape arithmetic.
FLOPs then come from :func:`dha_core.costs.count_flops` (``torch.utils.flop_counter``:
convolutions and matrix products, 2 FLOPs per multiply-accumulate; pooling, batch-norm
and element-wise ops count as 0). Candidates that share an op type, shape and stride are
measured once.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dha_core.costs import count_flops, count_params
from dha_core.types import ChoiceGroup

__all__ = ["COST_METRICS", "CandidateRef", "measure_candidate_costs"]


@dataclass(frozen=True)
class CandidateRef:
    """One candidate module of the supernet.

    Attributes:
        group: Name of the choice group it belongs to.
        edge: Edge index within the group.
        op: Op index within the group.
        module: The module computing the candidate, or ``None`` for an op that computes
            nothing (DARTS' ``none``, MobileNet's ``zero``): its cost is 0.
        key: Extra identity used to share measurements between modules of the same kind
            (e.g. the op name and stride); modules with equal non-empty keys and equal
            input shapes are measured once.
    """

    group: str
    edge: int
    op: int
    module: nn.Module | None
    key: tuple = ()


COST_METRICS = ("params", "flops", "latency")
LATENCY_BATCH = 32
"""Batch size at which ``"latency"`` times a candidate (per-image overheads stay small)."""


def measure_candidate_costs(
    groups: Sequence[ChoiceGroup],
    candidates: Sequence[CandidateRef],
    run_dense: Callable[[], object],
    metric: str,
) -> dict[str, torch.Tensor]:
    """Sums the cost of every candidate into per-group ``(edges, ops)`` tensors.

    A group shared by several cells (DARTS: every normal cell uses the normal groups) gets
    the sum over all of them, which is the cost the network pays for choosing that op.

    Args:
        groups: The space's choice groups.
        candidates: Every candidate module of the supernet, possibly several per
            ``(group, edge, op)``.
        run_dense: Runs one dense forward pass of the supernet that calls every candidate
            (batch 1, eval mode, no grad); only used for ``"flops"`` and ``"latency"``.
        metric: ``"params"``, ``"flops"`` or ``"latency"`` (median seconds of one forward
            and backward pass of the candidate in training mode, at a batch of
            :data:`LATENCY_BATCH` images, on the module's device; a measurement, so it
            varies a little between runs and machines).

    Returns:
        Group name -> float64 tensor of shape ``group.shape``.

    Raises:
        ValueError: Unknown metric.
    """
    if metric not in COST_METRICS:
        raise ValueError(f"unknown cost metric {metric!r}; expected one of {', '.join(COST_METRICS)}")
    costs = {g.name: torch.zeros(g.shape, dtype=torch.float64) for g in groups}
    if metric == "params":
        for c in candidates:
            if c.module is not None:
                costs[c.group][c.edge, c.op] += count_params(c.module)
        return costs

    shapes: dict[int, tuple[int, ...]] = {}
    handles = []
    for idx, c in enumerate(candidates):
        if c.module is None:
            continue

        def record(_m: nn.Module, args: tuple, idx: int = idx) -> None:
            shapes[idx] = tuple(args[0].shape)

        handles.append(c.module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            run_dense()
    finally:
        for h in handles:
            h.remove()

    cache: dict[tuple, int] = {}
    for idx, c in enumerate(candidates):
        if c.module is None:
            continue
        if idx not in shapes:
            raise RuntimeError(f"candidate {c.group}[{c.edge}, {c.op}] was not called by the dense forward pass")
        shape = shapes[idx]
        # Without a key two modules of one class may differ (kernel size, dilation), so
        # only explicitly keyed candidates share a measurement.
        key = (type(c.module).__name__, c.key, shape) if c.key else ("module", idx)
        if key not in cache:
            param = next(c.module.parameters(), None)
            device = param.device if param is not None else None
            if metric == "flops":
                cache[key] = count_flops(c.module, torch.zeros(shape, device=device))
            else:
                cache[key] = _latency(c.module, (LATENCY_BATCH, *shape[1:]), device)
        costs[c.group][c.edge, c.op] += cache[key]
    return costs


def _latency(module: nn.Module, shape: tuple[int, ...], device: torch.device | None, repeats: int = 5) -> float:
    """Median seconds of a training-mode forward and backward pass (after one warm-up)."""
    was_training = module.training
    module.train()
    # A zero input draws nothing from the run's RNG. On zeros, pooling and ReLU'd convolutions
    # time faster than on random values (1.5x on this CPU), so costs are relative to that;
    # random inputs were measured and gave slower searched cells (docs/relaxations.md, "Cost").
    x = torch.zeros(shape, device=device, requires_grad=True)
    times = []
    try:
        for i in range(repeats + 1):
            if device is not None and device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            out = module(x)
            out.float().sum().backward()
            if device is not None and device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                times.append(time.perf_counter() - start)
    finally:
        module.train(was_training)
        module.zero_grad(set_to_none=True)
    return float(statistics.median(times))
