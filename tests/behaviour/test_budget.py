"""``train.time_budget_s`` is a first-class control, checked with an injected clock.

The fake clock advances a fixed amount per reading, so every training step costs exactly
``TICK`` seconds of budget and the test is exact and instant.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dha_core.config import resolve_config
from dha_core.searcher import Searcher
from tests.conftest import tiny_raw_config

TICK = 0.025  # seconds per clock reading; a step reads it twice (start and stop)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += TICK
        return self.now


def _budget_run(tmp_path: Path, budget: float, **train: object) -> tuple[dict, list[dict[str, str]]]:
    raw = tiny_raw_config(tmp_path / "runs", relax="ista",
                          hpo={"name": "fixed", "lr": 0.05, "lr_min": 0.001, "schedule": "cosine"})
    raw["train"].pop("epochs")
    raw["train"].update(time_budget_s=budget, drop_path=0.0, **train)
    result = Searcher(resolve_config(raw), clock=FakeClock()).fit()
    with open(result.run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return result.summary, rows


@pytest.mark.parametrize("budget", [1.0, 2.0])
def test_run_uses_its_budget_without_rounding_to_epochs(tmp_path: Path, budget: float) -> None:
    summary, rows = _budget_run(tmp_path, budget)
    # Each step's start/stop readings are TICK apart: the run stops after the step that
    # reaches the budget (float sums may need one more), mid-epoch.
    assert budget <= summary["stage_train_s"]["search"] <= budget + TICK + 1e-9
    assert 0.95 <= summary["budget_used"]["search"] <= 1.05
    assert round(budget / TICK) <= summary["steps"] <= round(budget / TICK) + 1
    assert summary["stopped_early"] == "time_budget"


def test_schedules_reach_their_end_values_at_the_budget(tmp_path: Path) -> None:
    summary, rows = _budget_run(tmp_path, 2.0)
    lrs = [float(r["lr"]) for r in rows if r.get("lr")]
    # Cosine from 0.05 to 0.001 over the budget: the last step runs at the end of it.
    assert lrs[0] == pytest.approx(0.05)
    assert lrs[-1] < 0.001 + 0.01 * (0.05 - 0.001)
    assert all(a >= b - 1e-12 for a, b in zip(lrs, lrs[1:], strict=False))
    # The search ends (the architecture is fixed) half way through the budget.
    finalized = summary["arch"]["finalized"]
    assert finalized is not None and 0.5 <= finalized["fraction"] < 0.5 + 2 * TICK / 2.0
    assert summary["relax"]["all_frozen"]


def test_validation_time_is_not_charged_to_the_budget(tmp_path: Path) -> None:
    """Evaluation passes read no budget clock: a run with validation after every epoch
    takes as many training steps as one that never validates."""
    with_val, _ = _budget_run(tmp_path / "a", 1.0, eval_every=1)
    without, _ = _budget_run(tmp_path / "b", 1.0, eval_every=1000)
    assert with_val["steps"] == without["steps"]


class SlowStartClock(FakeClock):
    """Steps cost ``slow`` seconds for the first ``slow_steps`` steps, then ``TICK``."""

    def __init__(self, slow: float, slow_steps: int) -> None:
        super().__init__()
        self.slow, self.readings_left = slow, 2 * slow_steps

    def __call__(self) -> float:
        if self.readings_left > 0:
            self.readings_left -= 1
            self.now += self.slow
            return self.now
        return super().__call__()


def test_a_stage_overrun_is_taken_from_the_next_stage(tmp_path: Path) -> None:
    """Search steps of 0.3 s against a 1.0-s budget end at 1.2 s; the retrain stage gets 0.8 s,
    so the run trains for its 2.0 s (plus at most one retrain step), not 2.2."""
    raw = tiny_raw_config(tmp_path / "runs", relax="ista", retrain={"time_budget_s": 1.0})
    raw["train"].pop("epochs")
    raw["train"].update(time_budget_s=1.0, drop_path=0.0)
    summary = Searcher(resolve_config(raw), clock=SlowStartClock(0.3, slow_steps=4)).fit().summary
    spent = summary["stage_train_s"]
    assert spent["search"] == pytest.approx(1.2)
    assert 0.8 - 1e-9 <= spent["retrain"] <= 0.8 + TICK + 1e-9
    assert 2.0 - 1e-9 <= spent["search"] + spent["retrain"] <= 2.0 + TICK + 1e-9
