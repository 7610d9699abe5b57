"""``channels_last: auto`` on CPU under a time budget: the faster memory format, by measurement.

Which memory format runs a CPU training step faster depends on the CPU and on the network:
on the AMD EPYC that recorded bench_search, channels_last ran the bench's C=16 DARTS_V2
network 1.53x faster and its ISTA supernet 1.67x faster (3x3 max pooling alone: 15 ms
contiguous against 2 ms channels_last), while at the quickstart's C=8 the two formats were
within 10% of each other either way, and an earlier Intel machine ran C=4 0.92x as fast in
channels_last (docs/results.md). No fixed rule fits, so a time-budgeted CPU run times one
forward and backward pass of each stage's network in both formats when the stage is built
and keeps the faster one. A run bounded by epochs keeps contiguous tensors: timing would make
its result depend on the machine's load, and such runs are reproducible bit for bit.

The timing runs on a random batch, outside the training budget, with the torch RNG state,
the network's buffers (batch-norm statistics) and its gradients restored afterwards, so the
training that follows sees exactly what it would have seen without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["FormatTiming", "time_memory_formats", "MIN_SPEEDUP"]

MIN_SPEEDUP = 1.05
"""channels_last is kept only if it is at least this much faster (timings are noisy)."""


@dataclass(frozen=True)
class FormatTiming:
    """Seconds of one forward and backward pass of a network in each memory format.

    Attributes:
        contiguous_s: Fastest seconds with contiguous (NCHW) tensors.
        channels_last_s: Fastest seconds with channels_last (NHWC) tensors.
    """

    contiguous_s: float
    channels_last_s: float

    @property
    def channels_last(self) -> bool:
        """Whether channels_last is the faster format (by at least ``MIN_SPEEDUP``)."""
        return self.contiguous_s >= MIN_SPEEDUP * self.channels_last_s

    def describe(self) -> dict[str, Any]:
        return {"channels_last": self.channels_last, "contiguous_s": round(self.contiguous_s, 4),
                "channels_last_s": round(self.channels_last_s, 4)}


def time_memory_formats(net: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                        input_shape: tuple[int, ...], repeats: int = 2,
                        clock: Callable[[], float] = time.perf_counter) -> FormatTiming:
    """Times a training forward and backward pass of ``net`` in both memory formats.

    Args:
        net: The network, in training mode; left contiguous, with its buffers, gradients
            and the torch RNG state as they were.
        forward: ``forward(net, x)`` -> a tensor whose sum is backpropagated (the logits).
        input_shape: Shape of a training batch ``(N, C, H, W)``.
        repeats: Timed passes per format after one untimed warm-up pass; the fastest counts
            (noise only ever adds time).
        clock: Time source.

    Returns:
        The timings.
    """
    params = list(net.parameters())
    grads = [p.grad for p in params]
    net.zero_grad(set_to_none=True)  # else the timed backward passes would accumulate into them
    buffers = {name: b.clone() for name, b in net.named_buffers()}
    device = params[0].device if params else torch.device("cpu")
    seconds: dict[bool, float] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        x = torch.rand(input_shape, device=device)
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            net.to(memory_format=fmt)
            xf = x.contiguous(memory_format=fmt)
            times = []
            for i in range(repeats + 1):
                start = clock()
                forward(net, xf).float().sum().backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i > 0:
                    times.append(clock() - start)
                net.zero_grad(set_to_none=True)
            seconds[channels_last] = min(times)
    net.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        for name, b in net.named_buffers():  # new objects after .to(memory_format)
            b.copy_(buffers[name])
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    return FormatTiming(seconds[False], seconds[True])
