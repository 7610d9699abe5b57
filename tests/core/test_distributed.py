"""One search on several processes (issue 8): 2 gloo ranks on CPU.

One ``torch.multiprocessing.spawn`` session runs every distributed scenario (spawning costs
seconds on 2 cores; the scenarios take about as long together); the tests below read what
it recorded. Scenarios:

* ``steps``: the DHA components (tiny space, ista, kornia, hypergrad) stepped by hand;
  after every step the searched tensors and the weights are all-gathered and compared
  bitwise across ranks.
* ``equivalence``: ``fit()`` with 2 ranks x batch 8, BN-free, compared (in the test
  process) with 1 process x batch 16.
* ``writes``: rank 1 records any call that would write into the run directory.
* ``resume``: a DHA ``fit()`` crashed after a checkpoint and resumed, against an
  uninterrupted one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import dha_core
from dha_core.data import BatchStream
from dha_core.distributed import ShardedBatchStream, rank_seed
from tests.conftest import tiny_raw_config

WORLD = 2
TIMING_KEYS = {"wall_s", "stage_wall_s", "stage_train_s", "budget_used"}


# --------------------------------------------------------------------------- configs
def dha_raw(out: Path, batch: int = 8) -> dict[str, Any]:
    """Tiny space with the paper's components; hyper step sizes large enough that lr/wd move."""
    raw = tiny_raw_config(out)
    raw.update({
        "relax": {"name": "ista", "recover_every": 2, "freeze_tol": 1e9, "freeze_warmup": 2},
        "aug": {"name": "kornia"},
        "hpo": {"name": "hypergrad", "lr_hyper_lr": 0.05, "wd_hyper_lr": 0.05},
    })
    raw["data"].update({"num_train": 80})
    raw["train"].update({"batch_size": batch, "epochs": 2, "checkpoint_every": 2})
    raw["output"]["plots"] = False
    return raw


def equivalence_raw(out: Path, batch: int) -> dict[str, Any]:
    """No BN and no augmentation: per-sample losses do not depend on the batch split."""
    raw = dha_raw(out, batch)
    raw["space"] = {"name": "tiny", "channels": 4, "norm": "none"}
    raw["relax"] = {"name": "ista", "freeze_tol": None}
    raw["aug"] = "none"
    return raw


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


# --------------------------------------------------------------------------- worker
class _Crash(RuntimeError):
    pass


def _gather_equal(tensor: torch.Tensor) -> bool:
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return all(torch.equal(parts[0], p) for p in parts[1:])


def _searched_state(stage: Any) -> dict[str, torch.Tensor]:
    relax, aug, hpo = stage.relax, stage.aug, stage.hpo
    state: dict[str, torch.Tensor] = {}
    for i, node in enumerate(relax.nodes):
        state[f"b{i}"] = node.b.detach().clone()
        state[f"x{i}"] = node.x.clone()
        state[f"support{i}"] = node.support.clone()
        state[f"frozen{i}"] = node.frozen.clone().long()
    state["tau"] = aug.tau.detach().clone()
    momentum = aug.optimizer.state.get(aug.tau, {}).get("momentum_buffer")
    state["tau_momentum"] = torch.zeros(0) if momentum is None else momentum.clone()
    hyper = hpo.hyperparameters()
    state["lr_wd"] = torch.tensor([hyper["lr"], hyper["wd"]], dtype=torch.float64)
    state["weights"] = torch.cat([p.detach().reshape(-1) for p in stage.net.parameters()])
    state["batch_generator"] = aug.batch_generator.get_state()
    return state


def _scenario_steps(rank: int, tmp: Path) -> dict[str, Any]:
    from dha_core.distributed import DistContext
    from dha_core.searcher import Searcher

    searcher = dha_core.build(config=dha_raw(tmp / f"steps{rank}"))
    assert isinstance(searcher, Searcher)
    searcher.dist = DistContext.start(searcher.device)
    searcher.prepare()
    stage = searcher.builder.build(searcher.plan[0])
    plans: list[torch.Tensor] = []
    sample_plan = stage.aug.sample_plan

    def recording(batch_size: int, generator: Any = None) -> Any:
        plan = sample_plan(batch_size, generator)
        plans.append(plan.index.clone())
        return plan

    stage.aug.sample_plan = recording
    initial = _searched_state(stage)
    unequal: list[str] = []
    for step in range(8):
        stage.step_fn(stage.train_stream.next(), step)
        for name, value in _searched_state(stage).items():
            if not _gather_equal(value):
                unequal.append(f"{name}@{step}")
    final = _searched_state(stage)
    plans_differ = not all(_gather_equal(p) for p in plans)
    searcher.dist.close()
    return {
        "unequal": unequal,
        "plans_differ_across_ranks": plans_differ,
        "moved": {k: not torch.equal(initial[k], final[k]) for k in ("b0", "tau", "lr_wd", "weights")},
        "frozen": [bool(n.frozen) for n in stage.relax.nodes],
        "recoveries": stage.relax.report()["recoveries"],
        "batch_per_rank": stage.train_stream.batch_size,
    }


def _record_writes(calls: list[str]) -> None:
    """Rank 1: replace every run-directory writer the searcher uses by a recorder."""
    import dha_core.plots
    import dha_core.searcher as searcher_mod
    from dha_core.rundir import MetricsLog, RunDir

    def recorder(name: str) -> Any:
        return lambda *args, **kwargs: calls.append(name)

    for name in ("atomic_save", "save_config", "save_model"):
        setattr(searcher_mod, name, recorder(name))
    RunDir.create = recorder("RunDir.create")  # type: ignore[method-assign]
    RunDir.write_json = recorder("RunDir.write_json")  # type: ignore[method-assign]
    MetricsLog.save = recorder("MetricsLog.save")  # type: ignore[method-assign]
    dha_core.plots.write_plots = recorder("write_plots")


def _scenario_cli(rank: int, tmp: Path) -> dict[str, Any]:
    """``torchrun -m dha_core.cli search``, i.e. ``main()`` in every process torchrun started."""
    from dha_core.cli import main

    raw = equivalence_raw(tmp / "runs", batch=8)
    config = tmp / "equivalence.yaml"
    if rank == 0:
        config.write_text(yaml.safe_dump(raw))
    calls: list[str] = []
    if rank == 1:
        _record_writes(calls)
    while not config.is_file():  # no process group yet: the CLI creates it
        time.sleep(0.01)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["-q", "search", "--config", str(config), "--out", str(tmp / "ddp")])
    return {"cli_exit": code, "cli_stdout": stdout.getvalue(), "rank1_writes": calls,
            "equivalence_summary": json.loads((tmp / "ddp" / "summary.json").read_text())}


def _scenario_resume(rank: int, tmp: Path) -> dict[str, Any]:
    from dha_core.searcher import Searcher
    from dha_core.stage_runner import StageRunner

    out: dict[str, Any] = {}
    reference = dha_core.build(config=dha_raw(tmp), output={"dir": str(tmp), "name": "full"}).fit().summary
    original = StageRunner.checkpoint
    count = {"n": 0}

    def crashing(self: StageRunner, *args: Any) -> bool:
        written = original(self, *args)
        count["n"] += 1
        if count["n"] == 3:  # every rank crashes at the same point, after a checkpoint
            raise _Crash
        return written

    StageRunner.checkpoint = crashing  # type: ignore[method-assign]
    try:
        dha_core.build(config=dha_raw(tmp), output={"dir": str(tmp), "name": "crashed"}).fit()
        out["crashed"] = False
    except _Crash:
        out["crashed"] = True
    finally:
        StageRunner.checkpoint = original  # type: ignore[method-assign]
    resumed = Searcher.from_run_dir(tmp / "crashed").fit().summary
    out["resume_matches"] = comparable(resumed) == comparable(reference)
    out["every_rank_got_the_summary"] = resumed["steps"] == reference["steps"]
    return out


def _torchrun_main(tmp: Path) -> None:
    """Entry point of every process of the torchrun session the tests start."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    record = _scenario_cli(rank, tmp)
    # The CLI's search created the process group; it stays up for the next searches.
    assert dist.is_initialized() and dist.get_world_size() == WORLD
    record.update(steps=_scenario_steps(rank, tmp), **_scenario_resume(rank, tmp))
    (tmp / f"rank{rank}.json").write_text(json.dumps(record, default=str))
    # An orderly end: without it, gloo's threads are torn down at interpreter exit, which
    # aborted a rank ("terminate called without an active exception") in about one run in
    # five on the 2-core CI machine.
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One torchrun session with 2 CPU processes running every scenario."""
    tmp = tmp_path_factory.mktemp("ddp")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
                           __file__, str(tmp)], capture_output=True, text=True, timeout=400, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return {"tmp": tmp, "ranks": records}


# --------------------------------------------------------------------------- tests
def test_sharded_stream_splits_the_global_batch() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(50).float(), torch.arange(50))
    single = BatchStream(data, 12, seed=3)
    shards = [ShardedBatchStream(data, 6, seed=3, rank=r, world_size=2) for r in range(2)]
    assert shards[0].batches_per_cycle() == single.batches_per_cycle() == 4
    for _ in range(9):  # across a cycle boundary
        expected = sorted(single.next()[1].tolist())
        parts = [s.next()[1].tolist() for s in shards]
        assert not set(parts[0]) & set(parts[1])
        assert sorted(parts[0] + parts[1]) == expected
    assert shards[0].state_dict() == shards[1].state_dict() == single.state_dict()


def test_sharded_stream_shrinks_the_per_rank_batch_to_fit() -> None:
    data = torch.utils.data.TensorDataset(torch.zeros(10), torch.zeros(10))
    stream = ShardedBatchStream(data, 8, seed=0, rank=1, world_size=3)
    assert stream.batch_size == 3 and stream.global_batch_size == 9
    assert len(stream.next()[0]) == 3


def test_rank_seeds_differ_by_rank_and_step() -> None:
    seeds = {rank_seed(7, r, s) for r in range(4) for s in range(100)}
    assert len(seeds) == 400
    assert rank_seed(7, 1, 5) == rank_seed(7, 1, 5)


def test_searched_quantities_bitwise_equal_on_all_ranks(session: dict[str, Any]) -> None:
    steps = session["ranks"][0]["steps"]
    assert steps["unequal"] == [], steps["unequal"]
    # The invariant is not vacuous: everything it covers moved, recovery ran and nodes froze.
    assert steps["moved"] == {"b0": True, "tau": True, "lr_wd": True, "weights": True}
    assert steps["recoveries"] >= 3 and all(steps["frozen"])
    assert steps["batch_per_rank"] == 8


def test_policy_samples_differ_per_rank_from_a_shared_q(session: dict[str, Any]) -> None:
    steps = session["ranks"][0]["steps"]
    # The batch generator (q's Gumbel noise) is in the bitwise check above; the per-sample draws are not shared.
    assert steps["plans_differ_across_ranks"]


def test_two_ranks_equal_one_process_with_twice_the_batch(session: dict[str, Any]) -> None:
    tmp: Path = session["tmp"]
    single = dha_core.build(config=equivalence_raw(tmp / "single", batch=16),
                            output={"dir": str(tmp), "name": "single"}).fit().summary
    ddp = session["ranks"][0]["equivalence_summary"]
    assert ddp["steps"] == single["steps"] == 2 * (72 // 16)
    for group, kept in single["selection"].items():  # same (edge, op) pairs, weights within float tolerance
        assert [(e, o) for e, o, _ in ddp["selection"][group]] == [(e, o) for e, o, _ in kept]
        assert [w for _, _, w in ddp["selection"][group]] == pytest.approx([w for _, _, w in kept], rel=1e-4)
    assert ddp["final_lr"] == pytest.approx(single["final_lr"], rel=1e-5)
    assert ddp["final_wd"] == pytest.approx(single["final_wd"], rel=1e-5)
    ours = torch.load(tmp / "ddp" / "model.pt", weights_only=True)["state_dict"]
    theirs = torch.load(tmp / "single" / "model.pt", weights_only=True)["state_dict"]
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-6, msg=key)


def test_torchrun_cli_search_runs_on_both_ranks(session: dict[str, Any]) -> None:
    ranks = session["ranks"]
    assert [r["cli_exit"] for r in ranks] == [0, 0]
    assert ranks[0]["cli_stdout"].count("| test accuracy") == 1  # rank 0 prints the table, rank 1 nothing
    assert ranks[1]["cli_stdout"] == ""


def test_only_rank0_writes_the_run_directory(session: dict[str, Any]) -> None:
    tmp: Path = session["tmp"]
    assert session["ranks"][1]["rank1_writes"] == []
    for name in ("config.yaml", "summary.json", "model.pt", "metrics.csv", "checkpoints/last.pt"):
        assert (tmp / "ddp" / name).is_file(), name


def test_distributed_resume_matches_uninterrupted_run(session: dict[str, Any]) -> None:
    for record in session["ranks"]:
        assert record["crashed"]
        assert record["resume_matches"] and record["every_rank_got_the_summary"]
    tmp: Path = session["tmp"]
    assert (tmp / "crashed" / "metrics.csv").read_text() == (tmp / "full" / "metrics.csv").read_text()
    assert torch.load(tmp / "crashed" / "checkpoints" / "last.pt", weights_only=True)["world_size"] == WORLD


class _FakePopen:
    commands: list[list[str]] = []

    def __init__(self, command: list[str]) -> None:
        self.commands.append(command)

    def wait(self) -> int:
        return 0


def test_nproc_wrapper_launches_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dha_core.cli

    monkeypatch.setattr(dha_core.cli.subprocess, "Popen", _FakePopen)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _FakePopen.commands = []
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(equivalence_raw(tmp_path / "runs", batch=8)))
    assert dha_core.cli.main(["-q", "search", "--config", str(config), "--set", "train.epochs=1", "--nproc", "2"]) == 0
    (command,) = _FakePopen.commands
    assert command[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[5:9] == ["-m", "dha_core.cli", "-q", "search"]
    # The run directory is fixed once, here, and handed to every process; nothing is written yet.
    out = Path(command[command.index("--out") + 1])
    assert out.parent == tmp_path / "runs" and not out.exists()
    assert command[command.index("--set") + 1] == "train.epochs=1"
    assert dha_core.cli.main(["resume", str(tmp_path / "missing"), "--nproc", "2"]) == 2


def test_nproc_wrapper_rejects_bad_input_before_launching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import dha_core.cli

    monkeypatch.setattr(dha_core.cli.subprocess, "Popen", _FakePopen)
    _FakePopen.commands = []
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(equivalence_raw(tmp_path / "runs", batch=8)))
    assert dha_core.cli.main(["search", "--config", str(config), "--set", "train.epochs=0", "--nproc", "2"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")  # already under torchrun
    assert dha_core.cli.main(["search", "--config", str(config), "--nproc", "2"]) == 2
    assert _FakePopen.commands == []


if __name__ == "__main__":  # a process of the torchrun session started by the `session` fixture
    _torchrun_main(Path(sys.argv[1]))


# --------------------------------------------------------------------------- the real launcher
def _launch(log: Path, *args: str) -> subprocess.Popen[str]:
    """``python -m dha_core.cli -q ARGS`` in its own session (so that SIGKILL reaches torchrun and its
    workers); output goes to files, not pipes."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None)
    with log.with_suffix(".out").open("w") as out, log.with_suffix(".err").open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "dha_core.cli", "-q", *args], stdout=out, stderr=err,
                                text=True, env=env, cwd=root, start_new_session=True)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children before grandchildren."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers through /proc")
def test_nproc_2_search_then_sigkill_and_resume_nproc_2(tmp_path: Path) -> None:
    """`dha search --nproc 2` for real (torchrun, gloo); a SIGKILLed one continues with
    `dha resume --nproc 2` to the summary of an uninterrupted 2-process run."""
    import signal

    raw = dha_raw(tmp_path / "runs")
    raw["data"].update({"num_train": 240})
    raw["train"].update({"epochs": 3, "checkpoint_every": 3})
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))

    full = tmp_path / "full"
    proc = _launch(tmp_path / "full-log", "search", "--config", str(config), "--out", str(full), "--nproc", "2")
    assert proc.wait(timeout=400) == 0, (tmp_path / "full-log.err").read_text()[-3000:]
    printed = (tmp_path / "full-log.out").read_text()
    assert printed.count("| test accuracy") == 1  # rank 0 prints the table once
    for name in ("config.yaml", "summary.json", "model.pt", "genotype.json", "metrics.csv", "checkpoints/last.pt"):
        assert (full / name).is_file(), name
    reference = json.loads((full / "summary.json").read_text())
    assert reference["steps"] == 3 * (216 // 16)  # 2 ranks x 8 per step; 10% of 240 held out
    assert torch.load(full / "checkpoints" / "last.pt", weights_only=True)["world_size"] == WORLD

    killed = tmp_path / "killed"
    proc = _launch(tmp_path / "killed-log", "search", "--config", str(config), "--out", str(killed), "--nproc", "2")
    checkpoint = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert proc.poll() is None, (tmp_path / "killed-log.err").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    # torchrun starts its workers in sessions of their own: kill the whole tree, workers included.
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed; enlarge it"

    resumed = _launch(tmp_path / "resume-log", "resume", str(killed), "--nproc", "2")
    assert resumed.wait(timeout=400) == 0, (tmp_path / "resume-log.err").read_text()[-3000:]
    summary = json.loads((killed / "summary.json").read_text())
    assert comparable(summary) == comparable(reference)
    assert (killed / "metrics.csv").read_text() == (full / "metrics.csv").read_text()
