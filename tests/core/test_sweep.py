"""Many searches: grid expansion, the local and Ray engines, trial resume, the table, ``dha ablate``."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dha_core.cli import main
from dha_core.errors import UserInputError
from dha_core.sweep import CHECKPOINT_FILES, RayOptions, Sweep, parse_grid, run_trial, sweep_csv, sweep_table
from tests.conftest import tiny_raw_config

TIMING_KEYS = {"wall_s", "stage_wall_s", "stage_train_s", "budget_used"}


def write_config(tmp_path: Path, **train: Any) -> Path:
    raw = tiny_raw_config(tmp_path / "runs")
    raw["output"]["plots"] = False
    raw["train"].update(train)
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- grid
def test_parse_grid() -> None:
    assert parse_grid(["aug.temperature=0.25, 0.5", "dataset.name=synthetic"]) == [
        ("aug.temperature", ["0.25", "0.5"]), ("data.name", ["synthetic"])]
    for bad in (["aug.temperature"], ["=1,2"], ["a..b=1"], ["x=1,1"], ["x=1", "x=2"], ["train.seed=1,2"], ["x="]):
        with pytest.raises(UserInputError, match="--grid"):
            parse_grid(bad)


def test_trials_cover_grid_times_seeds_with_swaps_first(tmp_path: Path) -> None:
    config = write_config(tmp_path, seed=10)
    sweep = Sweep.from_file(config, ["hpo.lr=0.1,0.2", "hpo.name=fixed"], seeds=2,
                            overrides=["hpo.schedule=constant"], out=tmp_path / "sw", progress=False)
    trials = sweep.trials()
    assert [(t.cell, t.seed_index) for t in trials] == [
        ("hpo.lr=0.1, hpo=fixed", 0), ("hpo.lr=0.1, hpo=fixed", 1),
        ("hpo.lr=0.2, hpo=fixed", 0), ("hpo.lr=0.2, hpo=fixed", 1)]
    assert trials[0].slug == "hpo.lr_0.1-hpo_fixed-seed0"
    # The component swap comes before the user's --set, so the set field survives it.
    assert sweep.trial_overrides(trials[3]) == ["hpo.name=fixed", "hpo.schedule=constant", "hpo.lr=0.2",
                                                "train.seed=11", "train.progress=false"]
    config_3 = sweep.config_for(trials[3])
    assert (config_3.hpo.lr, config_3.hpo.schedule, config_3.train.seed) == (0.2, "constant", 11)
    assert len({sweep.run_dir(t) for t in trials}) == 4 and all(sweep.run_dir(t).parent == sweep.out for t in trials)


def test_an_invalid_cell_fails_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    code = main(["sweep", "--config", str(config), "--grid", "space.channels=4,0", "--out", str(tmp_path / "sw")])
    assert code == 2
    err = capsys.readouterr().err
    assert "space.channels=0" in err and "space.channels" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sw").exists()


def test_table_mean_and_std_per_cell() -> None:
    rows = [
        {"cell": "a", "seed": 0, "status": "done", "test_acc": 0.5, "val_acc": 0.4, "params": 10, "final_lr": 0.1,
         "final_wd": 0.0, "wall_s": 1.0},
        {"cell": "a", "seed": 1, "status": "done", "test_acc": 0.7, "val_acc": 0.6, "params": 10, "final_lr": 0.1,
         "final_wd": 0.0, "wall_s": 3.0},
        {"cell": "b", "seed": 0, "status": "stopped", "test_acc": None, "val_acc": 0.3, "params": None,
         "final_lr": None, "final_wd": None, "wall_s": None},
    ]
    table = sweep_table(rows).splitlines()
    assert table[2] == "| a | 2 | 60.00 ± 14.14 | 50.00 ± 14.14 | 10 | 0.1 ± 0 | 2.0 ± 1.4 |"
    assert table[3].startswith("| b | 0 (1 stopped) | - |")
    agg = list(csv.DictReader(sweep_csv(rows).splitlines()))
    assert float(agg[0]["test_acc_mean"]) == pytest.approx(0.6)
    assert float(agg[0]["test_acc_std"]) == pytest.approx(0.1414213562)
    assert agg[1]["runs"] == "0" and agg[1]["stopped"] == "1"


# --------------------------------------------------------------------------- local engine
def test_local_sweep_writes_tables_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, epochs=1)
    out = tmp_path / "sw"
    args = ["-q", "sweep", "--config", str(config), "--grid", "space.channels=3,4", "--seeds", "2", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| space.channels=3 | 2 |" in printed and "| space.channels=4 | 2 |" in printed
    assert (out / "sweep.md").read_text().strip() in printed
    trials = read_csv(out / "trials.csv")
    assert [(t["cell"], t["seed"], t["status"]) for t in trials] == [
        ("space.channels=3", "0", "done"), ("space.channels=3", "1", "done"),
        ("space.channels=4", "0", "done"), ("space.channels=4", "1", "done")]
    for trial in trials:
        summary = json.loads((Path(trial["run_dir"]) / "summary.json").read_text())
        assert float(trial["test_acc"]) == summary["test_acc"]
    cells = read_csv(out / "sweep.csv")
    accs = [float(t["test_acc"]) for t in trials[:2]]
    assert float(cells[0]["test_acc_mean"]) == pytest.approx(sum(accs) / 2)

    assert main(args) == 2  # the folders exist: refuse rather than mix two sweeps
    assert "--resume" in capsys.readouterr().err
    shutil.rmtree(trials[3]["run_dir"])
    assert main([*args, "--resume"]) == 0  # three reused, one run again
    again = read_csv(out / "trials.csv")
    assert again[:3] == trials[:3]  # reused as they were, wall time included
    assert {k: v for k, v in again[3].items() if k != "wall_s"} == {k: v for k, v in trials[3].items() if k != "wall_s"}
    assert (Path(trials[3]["run_dir"]) / "summary.json").is_file()


def test_trial_resumes_from_a_reported_checkpoint(tmp_path: Path) -> None:
    """What Ray Tune does after a trial dies: restore the last reported checkpoint on any node."""
    config = write_config(tmp_path, epochs=3)
    sweep = Sweep.from_file(config, ["space.channels=3"], out=tmp_path / "sw", progress=False)
    (trial,) = sweep.trials()
    reported = tmp_path / "reported"

    class Died(RuntimeError):
        pass

    def report(stage: str, epoch: int, row: dict[str, Any], checkpoint: Path) -> None:
        for name in CHECKPOINT_FILES:  # what the Ray trainable hands to tune.report
            (reported / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkpoint.parents[1] / name, reported / name)
        if epoch == 0:
            raise Died

    with pytest.raises(Died):
        run_trial(sweep, trial, on_epoch=report)
    shutil.rmtree(sweep.run_dir(trial))  # the trial restarts elsewhere, from the reported files only
    epochs: list[int] = []
    resumed = run_trial(sweep, trial, restore_from=reported, on_epoch=lambda s, e, r, c: epochs.append(e))
    assert epochs == [1, 2]

    fresh = Sweep.from_file(config, ["space.channels=3"], out=tmp_path / "fresh", progress=False)
    reference = run_trial(fresh, trial)
    assert {k: v for k, v in resumed.items() if k not in TIMING_KEYS} == {
        k: v for k, v in reference.items() if k not in TIMING_KEYS}


def test_ablate_is_an_alias_of_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, epochs=1)
    out = tmp_path / "ab"
    assert main(["-q", "ablate", "--config", str(config), "--swap", "aug=none,standard", "--out", str(out)]) == 0
    assert [r["cell"] for r in read_csv(out / "sweep.csv")] == ["aug=none", "aug=standard"]
    assert (out / "sweep.md").is_file() and (out / "trials.csv").is_file()
    assert not (out / "ablation.md").exists()  # no copies under other names
    capsys.readouterr()
    assert main(["ablate", "--config", str(config), "--swap", "optimizer=a,b"]) == 2
    assert "unknown kind 'optimizer'" in capsys.readouterr().err


def test_ray_engine_without_ray_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    config = write_config(tmp_path)
    assert main(["sweep", "--config", str(config), "--grid", "space.channels=3,4", "--engine", "ray",
                 "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dha: error: --engine ray needs Ray Tune, which is not installed: pip install 'dha[ray]'"


def test_scheduler_needs_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["sweep", "--config", str(config), "--grid", "space.channels=3,4", "--scheduler", "asha"]) == 2
    assert "--engine ray" in capsys.readouterr().err


# --------------------------------------------------------------------------- Ray Tune
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray[tune] is not installed")


@needs_ray
@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optuna is not installed")
def test_tune_config_search_algorithm_and_scheduler() -> None:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from dha_core.sweep.engines import tune_config

    cfg = tune_config(tune, RayOptions(search_alg="optuna", num_samples=5, scheduler="asha", metric="val_acc",
                                       max_concurrent=2))
    assert isinstance(cfg.search_alg, OptunaSearch) and isinstance(cfg.scheduler, ASHAScheduler)
    assert cfg.num_samples == 5 and cfg.max_concurrent_trials == 2 and cfg.reuse_actors
    assert cfg.scheduler._metric == "val_acc" and cfg.scheduler._mode == "max"


@needs_ray
def test_ray_sweep_two_trials_on_a_local_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    config = write_config(tmp_path, epochs=2)
    out = tmp_path / "sw"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["-q", "sweep", "--config", str(config), "--grid", "space.channels=3,4", "--engine", "ray",
                     "--out", str(out)])
    finally:
        ray.shutdown()
    assert code == 0, capsys.readouterr().err
    trials = read_csv(out / "trials.csv")
    assert [(t["cell"], t["status"]) for t in trials] == [("space.channels=3", "done"), ("space.channels=4", "done")]
    for trial in trials:
        summary = json.loads((Path(trial["run_dir"]) / "summary.json").read_text())
        assert float(trial["test_acc"]) == summary["test_acc"] and int(trial["steps"]) == summary["steps"]
    # Every trial reported its epoch-end checkpoints to Tune (the last one is kept).
    kept = sorted((out / "tune").glob("*/checkpoint_*/checkpoints/last.pt"))
    assert len(kept) == 2
    assert all((p.parents[1] / "config.yaml").is_file() for p in kept)
    assert "| space.channels=3 | 1 |" in (out / "sweep.md").read_text()


# --------------------------------------------------------------------------- failing trials
# hpo.lr=1e12 diverges at once: with max_nonfinite_steps=1 that trial stops (NonFiniteError).
DIVERGING_LR = "1e12"


def test_local_sweep_failing_trial_exits_1_names_it_and_lists_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, epochs=1, max_nonfinite_steps=1, grad_clip=None)
    out = tmp_path / "sw"
    code = main(["-q", "sweep", "--config", str(config), "--grid", f"hpo.lr=0.05,{DIVERGING_LR}", "--set",
                 "hpo.schedule=constant", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    failed = [line for line in captured.err.splitlines() if line.startswith("dha: trial")]
    assert len(failed) == 1 and f"hpo.lr={DIVERGING_LR}" in failed[0] and "NonFiniteError" in failed[0]
    assert "Traceback" not in captured.err
    trials = read_csv(out / "trials.csv")
    assert [(t["cell"], t["status"]) for t in trials] == [("hpo.lr=0.05", "done"), (f"hpo.lr={DIVERGING_LR}", "error")]
    assert "| hpo.lr=0.05 | 1 |" in captured.out and f"| hpo.lr={DIVERGING_LR} | 0 (1 failed) |" in captured.out
    assert (Path(trials[0]["run_dir"]) / "summary.json").is_file()


@needs_ray
@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optuna is not installed")
def test_ray_optuna_and_asha_sweeps_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Optuna TPE samples 3 tiny trials; then ASHA runs a grid of 3 where one trial fails: exit 1,
    the failed trial is named and the table still lists the others."""
    import ray

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    config = write_config(tmp_path, epochs=2, max_nonfinite_steps=1, grad_clip=None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        optuna_code = main(["-q", "sweep", "--config", str(config), "--grid", "space.channels=3,4,5", "--engine",
                            "ray", "--search-alg", "optuna", "--num-samples", "3", "--max-concurrent", "2",
                            "--out", str(tmp_path / "optuna")])
        optuna_out = capsys.readouterr()
        asha_code = main(["-q", "sweep", "--config", str(config), "--grid", f"hpo.lr=0.05,0.02,{DIVERGING_LR}",
                          "--set", "hpo.schedule=constant", "--engine", "ray", "--scheduler", "asha",
                          "--out", str(tmp_path / "asha")])
        asha_out = capsys.readouterr()
    finally:
        ray.shutdown()

    assert optuna_code == 0, optuna_out.err
    trials = read_csv(tmp_path / "optuna" / "trials.csv")
    assert len(trials) == 3 and all(t["status"] == "done" for t in trials)
    assert {t["cell"] for t in trials} <= {"space.channels=3", "space.channels=4", "space.channels=5"}
    assert len({t["run_dir"] for t in trials}) == 3  # sampled trials get their own run directories
    for trial in trials:
        summary = json.loads((Path(trial["run_dir"]) / "summary.json").read_text())
        assert float(trial["test_acc"]) == summary["test_acc"]

    assert asha_code == 1
    failed = [line for line in asha_out.err.splitlines() if line.startswith("dha: trial")]
    assert len(failed) == 1 and f"hpo.lr={DIVERGING_LR}" in failed[0]
    rows = read_csv(tmp_path / "asha" / "trials.csv")
    status = {r["cell"]: r["status"] for r in rows}
    assert status[f"hpo.lr={DIVERGING_LR}"] == "error"
    # ASHA may stop a poor trial early; it is listed either way.
    assert status["hpo.lr=0.05"] in {"done", "stopped"} and status["hpo.lr=0.02"] in {"done", "stopped"}
    assert "done" in status.values()
    table = (tmp_path / "asha" / "sweep.md").read_text()
    assert all(f"| hpo.lr={v} |" in table for v in ("0.05", "0.02", DIVERGING_LR))
