"""``dataset=cifar10`` and ``dataset=cifar100`` through torchvision, from a local root.

Downloading is off by default: set ``download: true`` to let torchvision fetch the data.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from dha_core.errors import UserInputError
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import Dataset
from dha_plugins.datasets.common import DatasetConfig, require_dir
from dha_plugins.datasets.sample import CIFAR10_MEAN, CIFAR10_STD
from dha_plugins.datasets.tensors import UInt8ImageDataset

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class CifarConfig(DatasetConfig):
    """Location of the torchvision CIFAR files."""

    root: str = Field("data", description="Folder holding cifar-10-batches-py / cifar-100-python.")
    download: bool = Field(False, description="Let torchvision download the data if missing.")


class CifarDataset(Dataset):
    """CIFAR-10/100 held in memory as uint8."""

    image_size = 32

    def __init__(self, config: CifarConfig, variant: str) -> None:
        super().__init__(config.val_fraction, config.split_seed, config.train_subset, config.test_subset)
        self.config = config
        self.variant = variant
        self.num_classes = 10 if variant == "cifar10" else 100
        self.mean = CIFAR10_MEAN if variant == "cifar10" else CIFAR100_MEAN
        self.std = CIFAR10_STD if variant == "cifar10" else CIFAR100_STD
        if not config.download:
            require_dir(config.root, "data.root")
        from torchvision import datasets as tv_datasets  # deferred: a slow import

        self._cls = tv_datasets.CIFAR10 if variant == "cifar10" else tv_datasets.CIFAR100

    def _load(self, train: bool) -> UInt8ImageDataset:
        try:
            ds = self._cls(self.config.root, train=train, download=self.config.download)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
            raise UserInputError(f"data.root: {self.variant} not found or corrupted under {self.config.root} "
                                 f"({exc}); set data.download=true to fetch it") from None
        self.classes = tuple(ds.classes)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return UInt8ImageDataset(images, torch.tensor(ds.targets))

    def train_source(self) -> UInt8ImageDataset:
        return self._load(True)

    def test_source(self) -> UInt8ImageDataset:
        return self._load(False)


def create_cifar10(config: CifarConfig) -> CifarDataset:
    """CIFAR-10 from a local torchvision root (download off by default)."""
    return CifarDataset(config, "cifar10")


def create_cifar100(config: CifarConfig) -> CifarDataset:
    """CIFAR-100 from a local torchvision root (download off by default)."""
    return CifarDataset(config, "cifar100")


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("dataset", "cifar10", create_cifar10, config=CifarConfig)
    registry.add("dataset", "cifar100", create_cifar100, config=CifarConfig)
