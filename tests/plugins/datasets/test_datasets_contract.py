"""Contract tests run against every registered dataset (built-in or third-party).

A dataset whose config has a ``root`` is pointed at a tiny ImageFolder tree. One that
cannot read such a tree (CIFAR's pickled batches) must then fail with a one-line
:class:`UserInputError` naming ``data.root``; that is the bad-input contract, and the
rest of the contract is skipped for it with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from dha_core import get_registry
from dha_core.errors import UserInputError
from dha_core.interfaces import Dataset

DATASETS = get_registry().names("dataset")
SMALL = {"num_train": 24, "num_test": 8, "image_size": 8}  # fields the synthetic dataset has


def _tiny_tree(root: Path) -> Path:
    for split in ("train", "test"):
        for c, cls in enumerate(("ant", "bee")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (10, 12), color=(100 * c, 30 * i, 50)).save(folder / f"{i}.png")
    return root


def _create(name: str, tmp_path: Path) -> Dataset:
    component = get_registry().get("dataset", name)
    known = component.config.model_fields
    fields: dict[str, Any] = {k: v for k, v in SMALL.items() if k in known}
    if "root" in known:
        fields["root"] = str(_tiny_tree(tmp_path / "data"))
    if "image_size" in known and "image_size" not in fields:
        fields["image_size"] = 8
    try:
        dataset = component.create(component.config(**fields))
        dataset.split("train")
    except UserInputError as exc:
        message = str(exc)
        assert "\n" not in message and "data.root" in message, f"bad-root error must be one line naming data.root: {message!r}"
        pytest.skip(f"dataset={name} cannot read an ImageFolder tree ({message})")
    return dataset


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_contract(name: str, tmp_path: Path) -> None:
    dataset = _create(name, tmp_path)
    assert isinstance(dataset, Dataset)
    assert dataset.num_classes >= 2
    assert len(dataset.mean) == len(dataset.std) == dataset.channels
    sizes = {}
    for split in ("train", "val", "test"):
        data = dataset.split(split)
        sizes[split] = len(data)
        assert len(data) > 0, f"empty {split} split"
        for i in sorted({0, len(data) - 1}):
            image, label = data[i]
            assert image.dtype == torch.float32 and image.shape == (dataset.channels, dataset.image_size, dataset.image_size)
            assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
            assert isinstance(label, int) and 0 <= label < dataset.num_classes
    # a second instance from the same config holds the same splits (a function of the config)
    second = _create(name, tmp_path / "again")
    assert sizes == {s: len(second.split(s)) for s in sizes}
    torch.testing.assert_close(second.split("val")[0][0], dataset.split("val")[0][0])
