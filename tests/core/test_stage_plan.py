"""``with_carried_overrun``: earlier stages' budget overruns come off the next budget."""

from __future__ import annotations

import pytest

from dha_core.config import resolve_config
from dha_core.stage import MIN_BUDGET_SHARE, plan_stages, with_carried_overrun
from tests.conftest import tiny_raw_config


def _plan(tmp_path, search_s: float | None = 10.0, retrain_s: float | None = 20.0):
    raw = tiny_raw_config(tmp_path, retrain={"time_budget_s": retrain_s} if retrain_s else {"epochs": 1})
    raw["train"].pop("epochs")
    if search_s is None:
        raw["train"]["epochs"] = 1
    else:
        raw["train"]["time_budget_s"] = search_s
    return plan_stages(resolve_config(raw))


def test_overrun_comes_off_the_next_budget(tmp_path) -> None:
    plan = _plan(tmp_path)
    assert with_carried_overrun(plan, 1, {"search": 13.0}).time_budget_s == pytest.approx(17.0)
    assert with_carried_overrun(plan, 0, {}).time_budget_s == 10.0  # the first stage keeps its own


def test_underrun_is_not_carried(tmp_path) -> None:
    plan = _plan(tmp_path)
    assert with_carried_overrun(plan, 1, {"search": 4.0}).time_budget_s == 20.0


def test_a_stage_keeps_a_floor_of_its_budget(tmp_path) -> None:
    plan = _plan(tmp_path)
    assert with_carried_overrun(plan, 1, {"search": 100.0}).time_budget_s == pytest.approx(MIN_BUDGET_SHARE * 20.0)


@pytest.mark.parametrize(("search_s", "retrain_s"), [(None, 20.0), (10.0, None)])
def test_stages_without_a_budget_are_left_alone(tmp_path, search_s, retrain_s) -> None:
    plan = _plan(tmp_path, search_s, retrain_s)
    spec = with_carried_overrun(plan, 1, {"search": 50.0})
    assert spec == plan[1]
