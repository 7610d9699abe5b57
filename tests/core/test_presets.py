"""Every preset in configs/ validates, and runs end to end when shrunk to a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dha_core.cli import main
from dha_core.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
SHRINK = [
    "data.name=sample", "data.train_subset=96", "data.test_subset=32",
    "space.C=4", "space.layers=3", "space.auxiliary=false",
    "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=8", "train.eval_batch_size=64",
    "train.device=cpu", "train.workers=0",
]


def test_presets_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {"quickstart.yaml", "dha.yaml", "sequential-dha.yaml", "darts.yaml", "ista-one-stage.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_preset_validates(path: Path) -> None:
    config = load_config(path)
    assert config.space.name and config.relax.name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_preset_runs_shrunk(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sets = list(SHRINK)
    if load_config(path).retrain is not None:
        sets.append("retrain.epochs=1")
    argv = ["-q", "search", "--config", str(path), "--out", str(tmp_path / "run")]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["components"]["data"] == "sample"
    stages = set(summary["stage_wall_s"])
    assert ("retrain" in stages) == (load_config(path).retrain is not None)
