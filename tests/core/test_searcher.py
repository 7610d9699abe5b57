"""The orchestrator: build/fit, the run directory contract, resume, non-finite steps, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import dha_core
from dha_core.checkpoint import load_checkpoint
from dha_core.errors import NonFiniteError
from tests.conftest import tiny_raw_config

RUN_FILES = ["config.yaml", "summary.json", "model.pt", "genotype.json", "metrics.csv", "checkpoints/last.pt"]
TIMING_KEYS = {"wall_s", "stage_wall_s", "stage_train_s", "budget_used"}


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """Drops wall-clock fields, which legitimately differ between runs."""
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


def test_build_fit_writes_run_dir(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path / "runs")
    searcher = dha_core.build(**{k: raw[k] for k in ("space", "relax", "aug", "hpo")}, dataset=raw["data"],
                              train=raw["train"], output={"dir": str(tmp_path / "runs"), "name": "r"})
    result = searcher.fit()
    run = tmp_path / "runs" / "r"
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert list((run / "plots").glob("*.png"))
    summary = json.loads((run / "summary.json").read_text())
    for key in ("test_acc", "val_acc", "params", "flops", "genotype", "final_lr", "final_wd", "policy", "wall_s"):
        assert key in summary
    assert result.summary["test_acc"] == summary["test_acc"]
    assert set(result.genotype) == {"cell/node0", "cell/node1"}
    # model.pt reloads without pickled code and reproduces the outputs.
    loaded = dha_core.load_model(run)
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(loaded(x), result.model.cpu()(x), rtol=0, atol=0)
    blob = torch.load(run / "model.pt", weights_only=True)
    assert blob["format"] == "dha.model/1"
    # the model normalises with the dataset statistics it was trained with
    mean = torch.tensor(blob["data_spec"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(blob["data_spec"]["std"]).view(1, -1, 1, 1)
    assert not torch.allclose(mean, torch.zeros_like(mean)) or not torch.allclose(std, torch.ones_like(std))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), loaded.net((x - mean) / std), atol=1e-6, rtol=0)


def test_dotted_overrides_in_build(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path)
    searcher = dha_core.build(config=raw, **{"train.epochs": 3, "space.channels": 5})
    assert searcher.config.train.epochs == 3 and searcher.config.space.channels == 5


def test_same_seed_same_result(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path / "a")
    first = dha_core.build(config=raw).fit().summary
    raw = tiny_raw_config(tmp_path / "b")
    second = dha_core.build(config=raw).fit().summary
    assert comparable(first) == comparable(second)


def test_nonfinite_steps_stop_with_good_checkpoint(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path / "runs", hpo={"name": "fixed", "lr": 1e12, "schedule": "constant"})
    raw["train"].update({"max_nonfinite_steps": 3, "checkpoint_every": 1, "grad_clip": None, "epochs": 4})
    searcher = dha_core.build(config=raw, output={"dir": str(tmp_path / "runs"), "name": "nan"})
    with pytest.raises(NonFiniteError, match="3 consecutive non-finite"):
        searcher.fit()
    run = tmp_path / "runs" / "nan"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    weights = state["stage_state"]["net"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert not (run / "summary.json").exists()


def test_nonfinite_stop_exits_1_and_keeps_a_loadable_checkpoint(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`dha search` that diverges: exit 1, one line, no model or summary, the last good checkpoint
    loads (and `dha resume` starts from it)."""
    from dha_core.cli import main
    from dha_core.searcher import Searcher

    raw = tiny_raw_config(tmp_path / "runs", hpo={"name": "fixed", "lr": 1e12, "schedule": "constant"})
    raw["train"].update({"max_nonfinite_steps": 2, "checkpoint_every": 1, "grad_clip": None, "epochs": 4})
    raw["output"]["plots"] = False
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "diverged"
    code = main(["-q", "search", "--config", str(config), "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("dha: ")]
    assert len(lines) == 1 and "2 consecutive non-finite steps" in lines[0] and "last good checkpoint" in lines[0]
    assert "Traceback" not in err
    assert not (run / "summary.json").exists() and not (run / "model.pt").exists()
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["global_step"] >= 1
    assert all(torch.isfinite(v).all() for v in state["stage_state"]["net"].values() if v.is_floating_point())
    resumed = Searcher.from_run_dir(run)  # the checkpoint is a valid starting point
    assert resumed._resume_state is not None and resumed._resume_state["global_step"] == state["global_step"]
    assert main(["-q", "resume", str(run)]) == 1  # same lr, same divergence: exit 1 again, nothing written
    assert not (run / "summary.json").exists()


def _cli(log: Path, *args: str) -> subprocess.Popen[str]:
    """``dha -q ARGS`` in a subprocess; stdout and stderr go to ``log.out`` / ``log.err`` (files, not
    pipes: a full pipe that nobody reads would block the child)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.with_suffix(".out").open("w") as out, log.with_suffix(".err").open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "dha_core.cli", "-q", *args], stdout=out, stderr=err,
                                text=True, env=env, preexec_fn=_default_sigint if os.name == "posix" else None)


def _default_sigint() -> None:
    """Gives the child the default Ctrl-C: a suite started in the background (``cmd &`` in a
    non-interactive shell) ignores SIGINT, and Python keeps an inherited ``SIG_IGN``, so the
    Ctrl-C test would otherwise see its run finish."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _err(log: Path) -> str:
    return log.with_suffix(".err").read_text()


DHA_COMPONENTS = {
    "space": {"name": "darts", "C": 4, "layers": 3, "nodes": 2},
    "relax": {"name": "ista", "recover_every": 4},
    "aug": {"name": "kornia"},
    "hpo": {"name": "hypergrad", "hyper_batch": "held_out"},
}


def _long_tiny_config(tmp_path: Path, components: dict[str, Any] | None = None) -> Path:
    raw = tiny_raw_config(tmp_path / "runs")
    raw["data"].update({"num_train": 320, "image_size": 16})
    raw["space"]["channels"] = 8
    raw["train"].update({"epochs": 4, "checkpoint_every": 2})
    if components:
        components = dict(components)
        train = components.pop("train", {})
        raw.update(components)
        raw["train"].update(train)
        raw["data"].update({"num_train": 128})
        raw["train"].update({"epochs": 2, "batch_size": 16})
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _wait_for_checkpoint(run: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + timeout
    while not ckpt.exists():
        assert proc.poll() is None, f"exited with {proc.returncode} before a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


DHA_BF16 = {**DHA_COMPONENTS, "train": {"precision": "bf16"}}


@pytest.mark.parametrize("components", [None, DHA_COMPONENTS, DHA_BF16], ids=["toy", "dha", "dha-bf16"])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path, components: dict[str, Any] | None) -> None:
    config = _long_tiny_config(tmp_path, components)
    full = _cli(tmp_path / "full-log", "search", "--config", str(config), "--out", str(tmp_path / "full"))
    assert full.wait(timeout=300) == 0, _err(tmp_path / "full-log")
    reference = json.loads((tmp_path / "full" / "summary.json").read_text())
    if components and "train" in components:  # the run really used the setting under test
        assert reference["performance"]["precision"] == components["train"]["precision"]

    run = tmp_path / "killed"
    proc = _cli(tmp_path / "killed-log", "search", "--config", str(config), "--out", str(run))
    _wait_for_checkpoint(run, proc)
    time.sleep(0.05)  # land between checkpoints, mid-epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (run / "summary.json").exists(), "the run finished before it could be killed; enlarge it"
    resumed = _cli(tmp_path / "resume-log", "resume", str(run))
    assert resumed.wait(timeout=300) == 0, _err(tmp_path / "resume-log")
    assert comparable(json.loads((run / "summary.json").read_text())) == comparable(reference)
    full_rows = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    assert (run / "metrics.csv").read_text().splitlines() == full_rows


def test_ctrl_c_writes_checkpoint_and_resumes(tmp_path: Path) -> None:
    config = _long_tiny_config(tmp_path)
    run = tmp_path / "interrupted"
    proc = _cli(tmp_path / "search-log", "search", "--config", str(config), "--out", str(run))
    _wait_for_checkpoint(run, proc)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    if proc.returncode == 0:
        pytest.fail("the run finished before Ctrl-C arrived; enlarge it")
    err = _err(tmp_path / "search-log")
    assert proc.returncode == 130, err
    assert "dha resume" in err
    assert (run / "checkpoints" / "last.pt").is_file()
    resumed = _cli(tmp_path / "resume-log", "resume", str(run))
    assert resumed.wait(timeout=300) == 0, _err(tmp_path / "resume-log")
    assert (run / "summary.json").is_file()


def test_time_budget_stops_search(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path / "runs")
    raw["train"].update({"epochs": 10_000, "time_budget_s": 1.0})
    result = dha_core.build(config=raw).fit()
    assert result.summary["stopped_early"] == "time_budget"
    assert result.summary["stage_wall_s"]["search"] >= 1.0  # the budget was used, not cut short
    assert result.summary["steps"] < 10_000 * 5
