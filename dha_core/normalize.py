"""Input normalisation with the dataset statistics: the one place it is written.

The training step, the evaluation passes and the saved model (:class:`~dha_core.model_io.NormalizedModel`)
all map ``[0, 1]`` images to the network's input with :func:`normalize`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["channel_stats", "normalize", "Normalizer"]


def channel_stats(values: Sequence[float], device: torch.device | str | None = None) -> torch.Tensor:
    """Per-channel statistics as a float32 ``(1, C, 1, 1)`` tensor, broadcastable over a batch."""
    return torch.tensor(list(values), dtype=torch.float32, device=device).view(1, -1, 1, 1)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std``."""
    return (x - mean) / std


class Normalizer:
    """:func:`normalize` with fixed statistics on one device.

    Args:
        mean: Per-channel means.
        std: Per-channel standard deviations.
        device: Where the batches are.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str | None = None) -> None:
        self.mean = channel_stats(mean, device)
        self.std = channel_stats(std, device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.mean, self.std)
