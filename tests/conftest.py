"""Shared fixtures: tiny configs that run in seconds on CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

# Tests use tiny tensors: one intra-op thread avoids thread hand-off overhead that dominates
# at this size (and subprocesses inherit it through the environment).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def tiny_raw_config(out_dir: Path, **sections: Any) -> dict[str, Any]:
    """A config for the toy components on synthetic data: a search takes about a second."""
    raw: dict[str, Any] = {
        "space": {"name": "tiny", "channels": 4},
        "relax": "uniform",
        "aug": "none",
        "hpo": "fixed",
        "data": {"name": "synthetic", "num_train": 96, "num_test": 32, "image_size": 8},
        "train": {"epochs": 2, "batch_size": 16, "device": "cpu", "progress": False, "checkpoint_every": 2},
        "output": {"dir": str(out_dir)},
    }
    for key, value in sections.items():
        raw[key] = value
    return raw


def random_batch(seed: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch of ``n`` random 8x8 images with labels in 0..9 (the tiny configs' shape)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture
def tiny_config(tmp_path: Path) -> dict[str, Any]:
    return tiny_raw_config(tmp_path / "runs")


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DHA_DISABLED_PLUGINS", raising=False)
    os.environ.setdefault("MPLBACKEND", "Agg")
