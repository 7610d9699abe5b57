"""How fast the machine runs right now: a fixed-work probe for time-budgeted benchmarks.

A time-budgeted run trains as many steps as the machine allows, so its accuracy follows
the machine's speed. On a shared (virtual) machine that speed drifts over hours, and two
recordings of the same config can differ by more than the effect being measured. Runs
that record the probe next to their result can be compared on equal footing, or at least
flagged.

* :func:`reference_step_s`: the wall seconds of one training step of a fixed network (the
  published DARTS_V2 cell, C=16, 8 cells, batch 64, 32x32 inputs, fp32) on synthetic data
  held in memory, so no data loading or augmentation enters the figure. Built through
  ``dha_core.Searcher`` exactly as bench_search's fixed DARTS_V2 row, so it times the same
  kind of work as the runs it sits next to.
* :class:`CpuSteal`: the share of CPU time the hypervisor gave to other guests between two
  reads of ``/proc/stat`` (Linux only; ``None`` elsewhere).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dha_core.config import resolve_config
from dha_core.searcher import Searcher


def reference_step_s(steps: int = 10, warmup: int = 3, *, C: int = 16, layers: int = 8,
                     batch: int = 64) -> float:
    """Median wall seconds of one training step of the fixed DARTS_V2 network.

    Args:
        steps: Timed steps (each timed alone; the median ignores a stray slow one).
        warmup: Untimed steps first (allocator and kernel selection).
        C: Initial channels of the network (16 is bench_search's size).
        layers: Cells of the network.
        batch: Images per step.

    Returns:
        Seconds per step.
    """
    raw: dict[str, Any] = {
        "space": {"name": "darts", "C": C, "layers": layers, "nodes": 4},
        "relax": {"name": "fixed", "genotype": "DARTS_V2"}, "aug": {"name": "none"},
        "hpo": {"name": "fixed", "lr": 0.05},
        "data": {"name": "synthetic", "num_train": 4 * batch, "num_test": 2, "image_size": 32, "val_fraction": 0.25},
        "train": {"batch_size": batch, "device": "cpu", "progress": False, "seed": 0},
    }
    with tempfile.TemporaryDirectory(prefix="dha-speed-probe-") as tmp:
        raw["output"] = {"dir": tmp, "plots": False}
        searcher = Searcher(resolve_config(raw))
        searcher.prepare()
        stage = searcher.builder.build(searcher.plan[0])
        for i in range(warmup):
            stage.step_fn(stage.train_stream.next(), i)
        times = []
        for i in range(steps):
            batch_data = stage.train_stream.next()
            start = time.perf_counter()
            stage.step_fn(batch_data, warmup + i)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


class CpuSteal:
    """Share of CPU time stolen by the hypervisor since construction (Linux ``/proc/stat``).

    Example:
        >>> steal = CpuSteal()
        >>> ...  # the run
        >>> steal.fraction()  # e.g. 0.02, or None where /proc/stat is absent
    """

    STAT = Path("/proc/stat")

    def __init__(self) -> None:
        self._start = self._read()

    @classmethod
    def _read(cls) -> list[int] | None:
        try:
            fields = cls.STAT.read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        # cpu user nice system idle iowait irq softirq steal [guest guest_nice]
        if fields[0] != "cpu" or len(fields) < 9:
            return None
        return [int(v) for v in fields[1:9]]

    def fraction(self) -> float | None:
        """Stolen share of all CPU ticks since construction, or ``None`` if unknown."""
        end = self._read()
        if self._start is None or end is None:
            return None
        delta = [b - a for a, b in zip(self._start, end, strict=True)]
        total = sum(delta)
        return delta[7] / total if total > 0 else 0.0
