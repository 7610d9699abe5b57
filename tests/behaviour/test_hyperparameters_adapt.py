"""The hypergradient moves the learning rate of a real network, not only of a convex toy.

Started far too low (lr = 0.001) on a small CNN, consecutive gradients agree, so the
one-step hypergradient says "larger": within a quickstart-sized run the learned lr must
rise at least threefold, in every seed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dha_core.searcher import build
from tests.conftest import tiny_raw_config


@pytest.mark.parametrize("hyper_batch", ["held_out", "next_train"])
@pytest.mark.parametrize("seed", [0, 1])
def test_lr_started_too_low_rises_threefold(tmp_path: Path, hyper_batch: str, seed: int) -> None:
    raw = tiny_raw_config(
        tmp_path / "runs",
        hpo={"name": "hypergrad", "lr_low": 1e-4, "lr_init": 0.001, "hyper_batch": hyper_batch, "decay": "none"},
        data={"name": "synthetic", "num_train": 512, "num_test": 64, "image_size": 8},
        space={"name": "tiny", "channels": 8},
    )
    raw["train"].update(epochs=6, batch_size=32, seed=seed, checkpoint_every=10_000)
    result = build(config=raw).fit()
    with open(result.run_dir / "metrics.csv", newline="") as fh:
        learned = [float(r["lr_learned"]) for r in csv.DictReader(fh) if r.get("lr_learned")]
    assert len(learned) >= 80
    assert learned[-1] >= 3 * 0.001, f"learned lr went from 0.001 to {learned[-1]:.4g}"
    assert result.summary["hpo"]["learned_lr"][0] == pytest.approx(learned[-1], rel=0.3)


def test_lr_started_too_high_falls(tmp_path: Path) -> None:
    """The other direction: started at a bound far too high for the network, it falls."""
    raw = tiny_raw_config(
        tmp_path / "runs",
        hpo={"name": "hypergrad", "lr_init": 3.0, "lr_up": 3.0, "decay": "none", "hyper_batch": "held_out"},
        data={"name": "synthetic", "num_train": 512, "num_test": 64, "image_size": 8},
        space={"name": "tiny", "channels": 8},
    )
    raw["train"].update(epochs=3, batch_size=32, checkpoint_every=10_000, grad_clip=None)
    summary = build(config=raw).fit().summary
    assert summary["hpo"]["learned_lr"][0] < 0.6 * 3.0
