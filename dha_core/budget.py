"""A stage's progress: planned steps, a training-time budget, or both.

Every schedule of a run (lr decay, drop-path, policy warm-up, recovery cadence, the end
of the search) is a function of one number, the stage's *progress* in ``[0, 1]``: the
larger of the fraction of planned steps taken and the fraction of the time budget spent.
Only training time counts against the budget: validation passes, the final test and the
writing of the run directory are timed separately.

The clock is injectable, so tests can drive a budget without waiting for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["StageBudget", "Clock", "cosine_anneal"]

Clock = Callable[[], float]
"""Returns seconds from an arbitrary origin (``time.perf_counter`` by default)."""


def cosine_anneal(fraction: float, start: float, end: float) -> float:
    """The value of a cosine schedule from ``start`` to ``end`` at ``fraction`` of the way
    (clamped to ``[0, 1]``); every progress-driven schedule of a run uses it."""
    t = min(max(fraction, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t))


class StageBudget:
    """Progress of one training stage.

    Args:
        total_steps: Planned steps, or None when only the time budget bounds the stage.
        time_budget_s: Training seconds, or None when only the steps bound it.
        clock: The time source.

    Raises:
        ValueError: Neither bound is given.
    """

    def __init__(self, total_steps: int | None, time_budget_s: float | None, clock: Clock = time.perf_counter) -> None:
        if total_steps is None and time_budget_s is None:
            raise ValueError("a stage needs planned steps or a time budget")
        self.total_steps = None if total_steps is None else max(int(total_steps), 1)
        self.time_budget_s = time_budget_s
        self.clock = clock
        self.steps = 0
        self.train_s = 0.0
        self._started: float | None = None

    def start(self) -> None:
        """Starts timing a stretch of training (a step, with its data loading)."""
        self._started = self.clock()

    def stop(self, steps: int = 1) -> None:
        """Ends the stretch begun by :meth:`start` and counts ``steps`` steps."""
        if self._started is not None:
            self.train_s += max(self.clock() - self._started, 0.0)
            self._started = None
        self.steps += steps

    def fraction(self) -> float:
        """Progress in ``[0, 1]``: the further along of steps and training time."""
        parts = []
        if self.total_steps is not None:
            parts.append(self.steps / self.total_steps)
        if self.time_budget_s is not None:
            parts.append(self.train_s / self.time_budget_s)
        return min(max(parts), 1.0)

    def exhausted(self) -> bool:
        """True once the planned steps are taken or the time budget is spent."""
        if self.total_steps is not None and self.steps >= self.total_steps:
            return True
        return self.time_budget_s is not None and self.train_s >= self.time_budget_s

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "train_s": self.train_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.train_s = float(state["train_s"])
