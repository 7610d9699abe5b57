"""An in-memory image dataset over a uint8 tensor, shared by the small built-in datasets."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset as TorchDataset


class UInt8ImageDataset(TorchDataset):
    """Items ``(float image in [0, 1], label)`` from a ``(N, C, H, W)`` uint8 tensor.

    Keeping uint8 in memory costs a quarter of float32; conversion happens per item.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a (N, C, H, W) uint8 tensor")
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])
