"""``dataset=synthetic``: seeded random images with a learnable class signal, for tests."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from dha_core.hookspecs import hookimpl
from dha_core.interfaces import Dataset
from dha_plugins.datasets.common import DatasetConfig


class SyntheticConfig(DatasetConfig):
    """Sizes of the generated splits."""

    num_train: int = Field(256, ge=2)
    num_test: int = Field(64, ge=1)
    num_classes: int = Field(10, ge=2)
    image_size: int = Field(16, ge=4)
    channels: int = Field(3, ge=1)
    data_seed: int = Field(0, ge=0)


class LabelledImages(TensorDataset):
    """``(float image, int label)`` items, as the :class:`Dataset` contract asks (a plain
    ``TensorDataset`` would give 0-dim tensor labels)."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = super().__getitem__(index)
        return image, int(label)


def make_synthetic(n: int, num_classes: int, channels: int, size: int, seed: int) -> LabelledImages:
    """Images whose mean colour and a stripe position depend on the label, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    protos = torch.rand(num_classes, channels, 1, 1, generator=torch.Generator().manual_seed(1234))
    images = 0.35 * torch.rand(n, channels, size, size, generator=g) + 0.5 * protos[labels]
    rows = (labels * size) // num_classes
    images[torch.arange(n), :, rows, :] += 0.15
    return LabelledImages(images.clamp_(0, 1), labels)


class SyntheticDataset(Dataset):
    """Generated in memory; identical for a given ``data_seed``."""

    def __init__(self, config: SyntheticConfig) -> None:
        super().__init__(config.val_fraction, config.split_seed, config.train_subset, config.test_subset)
        self.config = config
        self.num_classes = config.num_classes
        self.image_size = config.image_size
        self.channels = config.channels
        self.mean = (0.5,) * config.channels
        self.std = (0.25,) * config.channels
        self.classes = [f"class{i}" for i in range(config.num_classes)]

    def train_source(self) -> LabelledImages:
        c = self.config
        return make_synthetic(c.num_train, c.num_classes, c.channels, c.image_size, c.data_seed)

    def test_source(self) -> LabelledImages:
        c = self.config
        return make_synthetic(c.num_test, c.num_classes, c.channels, c.image_size, c.data_seed + 1)


def create_synthetic(config: SyntheticConfig) -> SyntheticDataset:
    """Seeded random images with a learnable class signal (tests)."""
    return SyntheticDataset(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("dataset", "synthetic", create_synthetic, config=SyntheticConfig)
