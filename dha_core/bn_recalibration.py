"""Batch-norm recalibration: re-estimate a trained model's running statistics on clean images.

A DHA child is trained on augmented batches (the learned policy, drop-path, a supernet
that changed under it), so its batch-norm running statistics describe that distribution
and were averaged with momentum over a moving network. Before export they can be
re-estimated as the exact mean over clean training batches with the final weights: the
usual fix for weight-sharing children (e.g. the recalibration in single-path one-shot NAS).
Weights are not touched.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["recalibrate_batchnorm"]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                          device: torch.device, max_batches: int) -> int:
    """Replaces the running mean and variance of every batch-norm layer the eval forward uses.

    Only the batch-norm layers switch to training mode, so dropout and drop-path stay off
    and the forward takes its eval path (an auxiliary head keeps its statistics). Each layer's
    statistics are reset on its first call and then accumulated as a cumulative average
    (``momentum=None``), so the result is the mean over the batches, independent of order.

    Args:
        model: The model, called on the batches' images.
        batches: ``(images, labels)`` batches of clean (unaugmented) training images.
        device: Where to run.
        max_batches: At most this many batches are used.

    Returns:
        The number of batches used (0 leaves the model unchanged).
    """
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or max_batches <= 0:
        return 0
    was_training = model.training
    momenta = {m: m.momentum for m in norms}
    seen: set[nn.Module] = set()

    def reset_on_first_call(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if module not in seen:
            seen.add(module)
            module.reset_running_stats()  # type: ignore[operator]
            module.momentum = None  # type: ignore[assignment]

    hooks = [m.register_forward_pre_hook(reset_on_first_call) for m in norms]
    used = 0
    try:
        model.eval()
        for m in norms:
            m.train()
        for x, _ in batches:
            if used >= max_batches:
                break
            model(x.to(device))
            used += 1
    finally:
        for h in hooks:
            h.remove()
        for m, momentum in momenta.items():
            m.momentum = momentum
        model.train(was_training)
    return used
