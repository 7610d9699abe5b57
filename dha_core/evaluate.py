"""Evaluation of a model on a split."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy.

    Args:
        forward: Maps a ``[0, 1]`` image batch to logits (the caller sets eval mode).
        batches: In-order ``(images, labels)`` batches.
        device: Where to run.

    Returns:
        ``{"acc": ..., "loss": ..., "n": ...}``; accuracy in ``[0, 1]``.
    """
    correct, total, loss_sum = 0, 0, 0.0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = forward(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
    return {"acc": correct / max(total, 1), "loss": loss_sum / max(total, 1), "n": float(total)}
