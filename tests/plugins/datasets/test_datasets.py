"""Built-in datasets: shipped sample, deterministic splits, imagefolder layouts, CIFAR roots."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from dha_core.errors import UserInputError
from dha_core.interfaces import deterministic_split
from dha_core.registry import get_registry
from dha_plugins.datasets.make_sample import OUTPUT as SAMPLE_ZIP
from dha_plugins.datasets.make_sample import build_sample

SHARED_TAR = Path(__file__).resolve().parents[4] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def create(name: str, **fields):
    component = get_registry().get("dataset", name)
    return component.create(component.config(**fields))


def test_sample_is_small_real_and_balanced() -> None:
    assert SAMPLE_ZIP.stat().st_size <= 5 * 1024 * 1024
    ds = create("sample")
    train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
    assert (len(train), len(val), len(test)) == (1800, 200, 500)
    x, y = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    labels = torch.tensor([test[i][1] for i in range(len(test))])
    assert labels.bincount().tolist() == [50] * 10
    assert x.std() > 0.05  # real image content, not a constant


@pytest.mark.skipif(not SHARED_TAR.is_file(), reason=f"needs {SHARED_TAR} (CIFAR-10 JPEG tarball) to rebuild the sample")
def test_sample_zip_rebuilds_identically(tmp_path: Path) -> None:
    out = tmp_path / "sample.zip"
    counts = build_sample(SHARED_TAR, out, 200, 50)
    assert counts == {"train": 2000, "test": 500}
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(out) == digest(SAMPLE_ZIP)


def test_split_is_deterministic_and_disjoint() -> None:
    a_train, a_val = deterministic_split(100, 0.2, seed=3)
    b_train, b_val = deterministic_split(100, 0.2, seed=3)
    c_train, _ = deterministic_split(100, 0.2, seed=4)
    assert (a_train, a_val) == (b_train, b_val)
    assert a_train != c_train
    assert len(a_val) == 20 and not set(a_train) & set(a_val) and len(a_train) + len(a_val) == 100


def test_synthetic_is_seeded() -> None:
    a = create("synthetic", num_train=20, num_test=5, image_size=8).split("train")
    b = create("synthetic", num_train=20, num_test=5, image_size=8).split("train")
    torch.testing.assert_close(a[3][0], b[3][0])
    assert a[3][1] == b[3][1]


def _folder(root: Path, splits: tuple[str, ...], per_class: int = 3) -> Path:
    for split in splits:
        for c, cls in enumerate(("cat", "dog")):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (20, 14), color=(60 * c, 10 * i, 90)).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("splits, sizes", [
    (("train", "val"), (5, 1, 6)),          # val/ becomes test; val carved from train
    (("train", "test"), (5, 1, 6)),
    (("train", "val", "test"), (6, 6, 6)),  # both provided
])
def test_imagefolder_layouts(tmp_path: Path, splits: tuple[str, ...], sizes: tuple[int, int, int]) -> None:
    ds = create("imagefolder", root=str(_folder(tmp_path, splits)), image_size=8, val_fraction=0.2)
    assert tuple(len(ds.split(s)) for s in ("train", "val", "test")) == sizes
    x, y = ds.split("train")[0]
    assert x.shape == (3, 8, 8) and ds.classes == ["cat", "dog"]


def test_imagefolder_lazy_matches_cached(tmp_path: Path) -> None:
    root = str(_folder(tmp_path, ("train", "test")))
    cached = create("imagefolder", root=root, image_size=8).split("test")
    lazy = create("imagefolder", root=root, image_size=8, cache=False).split("test")
    torch.testing.assert_close(cached[2][0], lazy[2][0])


@pytest.mark.parametrize("make, match", [
    (lambda r: r, "data root not found"),
    (lambda r: (r / "x").mkdir(parents=True) or r, "expected a train/ folder"),
    (lambda r: _folder(r, ("train",)), "expected a val/ or test/ folder"),
])
def test_imagefolder_bad_roots(tmp_path: Path, make, match: str) -> None:
    root = make(tmp_path / "data")
    with pytest.raises(UserInputError, match=match):
        create("imagefolder", root=str(root)).split("train")


def test_imagefolder_bad_image_named_or_skipped(tmp_path: Path) -> None:
    root = _folder(tmp_path, ("train", "test"))
    bad = root / "test" / "dog" / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserInputError, match=str(bad)):
        create("imagefolder", root=str(root)).split("test")
    assert len(create("imagefolder", root=str(root), skip_bad_images=True).split("test")) == 6


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_needs_local_root_and_never_downloads_by_default(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserInputError, match="data.root"):
        create(name, root=str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserInputError, match="not found or corrupted"):
        create(name, root=str(empty)).split("train")
