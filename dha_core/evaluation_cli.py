"""``dha eval``: reload a run's ``model.pt`` and evaluate it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dha_core import components as comp
from dha_core.config import resolve_config
from dha_core.config_files import load_yaml
from dha_core.data import eval_batches
from dha_core.errors import UserInputError
from dha_core.evaluate import evaluate
from dha_core.model_io import load_model
from dha_core.runtime import resolve_device

__all__ = ["evaluate_run"]


def evaluate_run(run_dir: Path, data: str | None = None, split: str = "test") -> dict[str, Any]:
    """Evaluates ``run_dir/model.pt`` on a split of the run's dataset (or ``data``).

    Uses the run's device and eval batch size, so the reported test accuracy is reproduced.

    Returns:
        ``{"acc", "loss", "n", "split", "reported_test_acc"}``.
    """
    if not run_dir.is_dir():
        raise UserInputError(f"run directory not found: {run_dir}")
    if not (run_dir / "model.pt").is_file():
        raise UserInputError(f"{run_dir}: no model.pt (did the search finish?)")
    raw = load_yaml(run_dir / "config.yaml")
    if data is not None:
        raw["data"] = {"name": data}
    config = resolve_config(raw)
    device = resolve_device(config.train.device)
    model = load_model(run_dir / "model.pt", map_location=device)
    bundle = comp.build_dataset(config)
    if bundle.spec.num_classes != _model_classes(run_dir):
        raise UserInputError(f"data: {config.data.name} has {bundle.spec['num_classes']} classes, "
                             f"the model {_model_classes(run_dir)}")
    batches = eval_batches(bundle.dataset.split(split), config.train.eval_batch_size, config.train.workers)
    out: dict[str, Any] = {**evaluate(model, batches, device), "split": split}
    summary = run_dir / "summary.json"
    if summary.is_file():
        out["reported_test_acc"] = json.loads(summary.read_text())["test_acc"]
    return out


def _model_classes(run_dir: Path) -> int:
    from dha_core.checkpoint import load_checkpoint

    return int(load_checkpoint(run_dir / "model.pt")["data_spec"]["num_classes"])
