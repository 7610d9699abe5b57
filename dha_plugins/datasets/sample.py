"""``dataset=sample``: 2,000 train / 500 test CIFAR-10 images shipped inside the package.

Built by :mod:`dha_plugins.datasets.make_sample` from the CIFAR-10 JPEG set; it lets the
quickstart run with no download.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from dha_core.errors import UserInputError
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import Dataset
from dha_plugins.datasets.common import DatasetConfig
from dha_plugins.datasets.tensors import UInt8ImageDataset

SAMPLE_ZIP = Path(__file__).parent / "data" / "sample-cifar10.zip"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class SampleConfig(DatasetConfig):
    """The sample has a fixed size; only the common split fields apply."""


@functools.lru_cache(maxsize=2)
def load_sample_split(split: str, path: Path = SAMPLE_ZIP) -> tuple[torch.Tensor, torch.Tensor]:
    """Decodes one split of the sample zip into ``(uint8 images, labels)``."""
    if not path.is_file():
        raise UserInputError(f"data: the shipped sample dataset is missing: {path} (reinstall dha)")
    from torchvision.transforms.v2.functional import pil_to_tensor  # deferred: a slow import

    images, labels = [], []
    with zipfile.ZipFile(path) as zf:
        for name in sorted(n for n in zf.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg")):
            cls = name.split("/")[1]
            with Image.open(io.BytesIO(zf.read(name))) as img:
                images.append(pil_to_tensor(img.convert("RGB")))
            labels.append(CIFAR10_CLASSES.index(cls))
    return torch.stack(images), torch.tensor(labels)


class SampleDataset(Dataset):
    """A 2,500-image CIFAR-10 subset (32x32 RGB, 10 classes) shipped with dha."""

    num_classes = 10
    image_size = 32
    mean = CIFAR10_MEAN
    std = CIFAR10_STD
    classes = CIFAR10_CLASSES

    def __init__(self, config: SampleConfig) -> None:
        super().__init__(config.val_fraction, config.split_seed, config.train_subset, config.test_subset)

    def train_source(self) -> UInt8ImageDataset:
        return UInt8ImageDataset(*load_sample_split("train"))

    def test_source(self) -> UInt8ImageDataset:
        return UInt8ImageDataset(*load_sample_split("test"))


def create_sample(config: SampleConfig) -> SampleDataset:
    """2,000/500 CIFAR-10 images shipped in the package (no download)."""
    return SampleDataset(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("dataset", "sample", create_sample, config=SampleConfig)
