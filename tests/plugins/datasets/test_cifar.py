"""``dataset=cifar10`` / ``cifar100`` on tiny datasets written in torchvision's on-disk format.

The test writes the pickled batches torchvision reads (``cifar-10-batches-py/data_batch_1``
... ``test_batch`` + ``batches.meta``; ``cifar-100-python/train``, ``test``, ``meta``) with
a few images each. torchvision checks every file against the MD5 of the real download,
which a tiny fixture cannot match, so only that check is replaced (by "the file exists");
the reading, the class names and everything in dha are the real code.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from dha_core.cli import main
from dha_core.components import build_dataset
from dha_core.config import resolve_config
from tests.conftest import tiny_raw_config

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_TRAIN_BATCH = 8  # cifar10: 5 train batches of 8 -> 40 train images
N_TEST = 6


def _images(n: int, seed: int) -> np.ndarray:
    """``n`` random images in CIFAR's row layout: uint8, 3072 values (R plane, G, B) per row."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)


def _dump(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(obj, fh)


def write_cifar10(root: Path) -> dict[str, Any]:
    folder = root / "cifar-10-batches-py"
    train_x, train_y = [], []
    for i in range(1, 6):
        x = _images(PER_TRAIN_BATCH, i)
        y = [(i * 3 + j) % 10 for j in range(PER_TRAIN_BATCH)]
        _dump(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": x, "labels": y})
        train_x.append(x)
        train_y += y
    test_x, test_y = _images(N_TEST, 99), [j % 10 for j in range(N_TEST)]
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": test_x, "labels": test_y})
    _dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": PER_TRAIN_BATCH})
    return {"train_x": np.concatenate(train_x), "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "names": CIFAR10_NAMES}


def write_cifar100(root: Path) -> dict[str, Any]:
    folder = root / "cifar-100-python"
    names = [f"class{k:02d}" for k in range(100)]
    train_x, train_y = _images(30, 7), [(7 * j) % 100 for j in range(30)]
    test_x, test_y = _images(N_TEST, 8), [99 - j for j in range(N_TEST)]
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        _dump(folder / split, {"data": x, "fine_labels": y, "coarse_labels": [v // 5 for v in y]})
    _dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"super{k}" for k in range(20)]})
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "names": names}


@pytest.fixture(autouse=True)
def _files_exist_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def _as_float_image(row: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(row.reshape(3, 32, 32).astype(np.float32) / 255)


@pytest.mark.parametrize("variant, writer, mean0", [("cifar10", write_cifar10, 0.4914),
                                                     ("cifar100", write_cifar100, 0.5071)])
def test_cifar_loads_through_the_registry(tmp_path: Path, variant: str, writer: Any, mean0: float) -> None:
    truth = writer(tmp_path / "data")
    raw = tiny_raw_config(tmp_path / "runs", data={"name": variant, "root": str(tmp_path / "data"),
                                                   "val_fraction": 0.25, "split_seed": 3})
    bundle = build_dataset(resolve_config(raw))
    n_classes = len(truth["names"])
    assert bundle.spec.num_classes == n_classes and bundle.spec.image_size == 32
    assert bundle.spec.channels == 3 and bundle.spec.mean[0] == pytest.approx(mean0)
    ds = bundle.dataset
    train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
    assert list(ds.classes) == truth["names"]
    n_train = len(truth["train_y"])
    assert len(val) == round(0.25 * n_train) and len(train) + len(val) == n_train
    assert len(test) == N_TEST
    # The val split is carved from train, disjoint and deterministic.
    train_idx, val_idx = list(train.indices), list(val.indices)
    assert not set(train_idx) & set(val_idx) and sorted(train_idx + val_idx) == list(range(n_train))
    assert val_idx == list(build_dataset(resolve_config(raw)).dataset.split("val").indices)
    # Every image and label is the one written, in [0, 1], CHW.
    for split, indices, xs, ys in (("test", range(N_TEST), truth["test_x"], truth["test_y"]),
                                   ("val", val_idx, truth["train_x"], truth["train_y"])):
        data = ds.split(split)
        for pos, source in enumerate(indices):
            x, y = data[pos]
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32
            assert int(y) == ys[source]
            torch.testing.assert_close(x, _as_float_image(xs[source]), atol=1e-6, rtol=0)
    labels = {int(train[i][1]) for i in range(len(train))}
    assert labels <= set(range(n_classes)) and len(labels) > 1


def test_cifar10_search_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cifar10(tmp_path / "data")
    raw = tiny_raw_config(tmp_path / "runs", data={"name": "cifar10", "root": str(tmp_path / "data")})
    raw["train"].update(epochs=1, batch_size=8)
    raw["output"]["plots"] = False
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["-q", "search", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["components"]["data"] == "cifar10"
    assert summary["steps"] == (40 - 4) // 8  # 10% of 40 held out for val; full batches of 8
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == N_TEST
