"""benchmarks/machine_speed.py: the fixed-work speed probe and the CPU-steal reading."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SPEED = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "machine_speed.py"))


def test_probe_times_a_training_step_and_more_work_takes_longer() -> None:
    small = SPEED["reference_step_s"](3, warmup=1, C=4, layers=3, batch=8)
    large = SPEED["reference_step_s"](3, warmup=1, C=16, layers=5, batch=32)
    assert 0.0 < small < large


def _stat(path: Path, user: int, idle: int, steal: int) -> None:
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")


def test_steal_is_the_stolen_share_of_the_ticks_between_two_reads(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    monkeypatch.setattr(SPEED["CpuSteal"], "STAT", stat)
    _stat(stat, user=100, idle=100, steal=10)
    steal = SPEED["CpuSteal"]()
    _stat(stat, user=160, idle=120, steal=30)  # 60 + 20 + 20 = 100 ticks, 20 stolen
    assert steal.fraction() == pytest.approx(0.2)


def test_steal_is_unknown_without_proc_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SPEED["CpuSteal"], "STAT", tmp_path / "absent")
    assert SPEED["CpuSteal"]().fraction() is None
