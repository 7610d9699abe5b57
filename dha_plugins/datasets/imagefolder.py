"""``dataset=imagefolder``: any ``root/{train,val,test}/<class>/<image>`` folder.

``train/`` is required, plus ``val/`` or ``test/``. With both, they are the val and test
splits; with only one, it is the test split and val is carved from train. Images are
resized (shorter side) and centre-cropped to ``image_size``.

Unreadable images raise an error that names the file; ``skip_bad_images: true`` logs and
skips them instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from pydantic import Field
from torch.utils.data import Dataset as TorchDataset

from dha_core.errors import UserInputError
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import Dataset
from dha_plugins.datasets.common import DatasetConfig, require_dir
from dha_plugins.datasets.tensors import UInt8ImageDataset

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


class ImageFolderConfig(DatasetConfig):
    """Where the folders are and how images are prepared."""

    root: str = Field(..., description="Folder with train/ and val/ and/or test/.")
    image_size: int = Field(32, ge=8, description="Images are resized and centre-cropped to this size.")
    cache: bool = Field(True, description="Decode every image once into memory (uint8).")
    skip_bad_images: bool = Field(False, description="Log and skip unreadable images instead of failing.")
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def list_images(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(path, label)`` for every image file under ``split_dir/<class>/``."""
    items: list[tuple[Path, int]] = []
    for sub in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if sub.name not in classes:
            raise UserInputError(f"data.root: class folder {sub} is not among the train classes")
        label = classes.index(sub.name)
        items.extend((f, label) for f in sorted(sub.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES)
    if not items:
        raise UserInputError(f"data.root: no images found under {split_dir}")
    return items


def load_image(path: Path, size: int) -> torch.Tensor:
    """Decodes ``path`` to a ``(3, size, size)`` uint8 tensor; errors name the file."""
    from torchvision.transforms.v2 import functional as TF  # deferred: a slow import (cached after)

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            tensor = TF.pil_to_tensor(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserInputError(f"data: cannot read image {path}: {exc}") from None
    tensor = TF.resize(tensor, [size], antialias=True)
    return TF.center_crop(tensor, [size, size])


class LazyImageDataset(TorchDataset):
    """Decodes one image per access (for folders too large to cache)."""

    def __init__(self, items: list[tuple[Path, int]], size: int) -> None:
        self.items = items
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        return load_image(path, self.size).float().div_(255.0), label


class ImageFolderDataset(Dataset):
    """A classification dataset from class sub-folders."""

    def __init__(self, config: ImageFolderConfig) -> None:
        super().__init__(config.val_fraction, config.split_seed, config.train_subset, config.test_subset)
        self.config = config
        self.root = require_dir(config.root, "data.root")
        train_dir = self.root / "train"
        if not train_dir.is_dir():
            raise UserInputError(f"data.root: expected a train/ folder in {self.root}")
        self.classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
        if len(self.classes) < 2:
            raise UserInputError(f"data.root: {train_dir} needs at least two class folders")
        has_val, has_test = (self.root / "val").is_dir(), (self.root / "test").is_dir()
        if not (has_val or has_test):
            raise UserInputError(f"data.root: expected a val/ or test/ folder beside train/ in {self.root}")
        self._test_dir = self.root / ("test" if has_test else "val")
        self._val_dir = self.root / "val" if (has_val and has_test) else None
        self.num_classes = len(self.classes)
        self.image_size = config.image_size
        self.mean, self.std = config.mean, config.std

    def _build(self, split_dir: Path) -> TorchDataset:
        items = list_images(split_dir, list(self.classes))
        if not self.config.cache and not self.config.skip_bad_images:
            return LazyImageDataset(items, self.config.image_size)
        images, labels, good = [], [], []
        for path, label in items:
            try:
                images.append(load_image(path, self.config.image_size))
            except UserInputError as exc:
                if not self.config.skip_bad_images:
                    raise
                log.warning("skipping bad image: %s", exc)
                continue
            labels.append(label)
            good.append((path, label))
        if not good:
            raise UserInputError(f"data.root: no readable images under {split_dir}")
        if not self.config.cache:
            return LazyImageDataset(good, self.config.image_size)
        return UInt8ImageDataset(torch.stack(images), torch.tensor(labels))

    def train_source(self) -> TorchDataset:
        return self._build(self.root / "train")

    def test_source(self) -> TorchDataset:
        return self._build(self._test_dir)

    def val_source(self) -> TorchDataset | None:
        return None if self._val_dir is None else self._build(self._val_dir)


def create_imagefolder(config: ImageFolderConfig) -> ImageFolderDataset:
    """Any root/{train,val,test}/<class>/ image folder (e.g. SPORT8, MIT67)."""
    return ImageFolderDataset(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("dataset", "imagefolder", create_imagefolder, config=ImageFolderConfig)
