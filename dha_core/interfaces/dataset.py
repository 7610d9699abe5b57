"""The :class:`Dataset` interface: train/val/test splits as float image tensors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Subset

__all__ = ["Dataset", "deterministic_split"]


def deterministic_split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Splits ``range(n)`` into (train, val) indices, reproducibly for a given seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    return sorted(perm[n_val:]), sorted(perm[:n_val])


class Dataset(ABC):
    """A classification dataset. Items are ``(image, label)``: a ``(C, H, W)`` float
    tensor in ``[0, 1]`` and an int.

    Subclasses implement :meth:`train_source` and :meth:`test_source`. The validation split
    is carved from the training source deterministically (``val_fraction``, ``split_seed``),
    unless the dataset has its own (override :meth:`val_source`).
    """

    num_classes: int
    channels: int = 3
    image_size: int
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.25, 0.25, 0.25)
    classes: Sequence[str] = ()

    def __init__(self, val_fraction: float = 0.1, split_seed: int = 0, train_subset: int | None = None,
                 test_subset: int | None = None) -> None:
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.train_subset = train_subset
        self.test_subset = test_subset
        self._splits: dict[str, TorchDataset] | None = None

    @abstractmethod
    def train_source(self) -> TorchDataset:
        """All labelled training images (the val split is taken from these)."""

    @abstractmethod
    def test_source(self) -> TorchDataset:
        """The test images."""

    def val_source(self) -> TorchDataset | None:
        """A dataset-provided validation split, or None to carve one from train."""
        return None

    def split(self, name: str) -> TorchDataset:
        """Returns the ``"train"``, ``"val"`` or ``"test"`` split."""
        if self._splits is None:
            self._splits = self._make_splits()
        if name not in self._splits:
            raise KeyError(f"unknown split {name!r}; expected train, val or test")
        return self._splits[name]

    def _make_splits(self) -> dict[str, TorchDataset]:
        train = self.train_source()
        test = self.test_source()
        val = self.val_source()
        if self.train_subset is not None and self.train_subset < len(train):
            train = Subset(train, _first_balanced(train, self.train_subset, self.split_seed))
        if val is None:
            train_idx, val_idx = deterministic_split(len(train), self.val_fraction, self.split_seed)
            val = Subset(train, val_idx)
            train = Subset(train, train_idx)
        if self.test_subset is not None and self.test_subset < len(test):
            test = Subset(test, _first_balanced(test, self.test_subset, self.split_seed + 1))
        return {"train": train, "val": val, "test": test}


def _first_balanced(ds: TorchDataset, n: int, seed: int) -> list[int]:
    """A seeded random subset of ``n`` indices, in order (class balance is left to chance;
    folders are sorted by class, so the first ``n`` would hold few classes)."""
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed + 1))
    return sorted(perm[:n].tolist())
