"""Identity check: fixed-seed runs reproduce the golden files under tests/golden bit for bit.

The runs (:mod:`tests.golden.runs`) are bounded by epochs and steps on CPU with one thread,
so their ``summary.json`` (without wall-clock fields) and ``metrics.csv`` are exact. A
structural change (refactor, renaming, moving code) must leave them unchanged. An
intentional change of behaviour regenerates them with ``python -m tests.golden.regen`` in a
commit of its own, never mixed with a refactor, so that the check stays meaningful.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dha_core.runtime import cpu_model
from tests.golden.runs import CPU_MODEL_FILE, GOLDEN_DIR, RESUMED, RUNS, comparable_metrics, comparable_summary, run, run_resumed


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _same_cpu_type() -> None:
    written_on = CPU_MODEL_FILE.read_text(encoding="utf-8").strip()
    if written_on != cpu_model():
        pytest.skip(f"the golden files are bit-exact for the CPU that wrote them ({written_on}); this CPU is "
                    f"{cpu_model()}, whose float kernels round differently")


def _assert_golden(name: str, run_dir: Path) -> None:
    expected_summary = (GOLDEN_DIR / f"{name}.summary.json").read_text(encoding="utf-8")
    expected_metrics = (GOLDEN_DIR / f"{name}.metrics.csv").read_text(encoding="utf-8")
    assert comparable_summary(run_dir) == expected_summary, f"{name}: summary.json differs from the golden file"
    assert comparable_metrics(run_dir) == expected_metrics, f"{name}: metrics.csv differs from the golden file"


@pytest.mark.parametrize("name", RUNS)
def test_run_matches_golden(tmp_path: Path, name: str) -> None:
    _assert_golden(name, run(name, tmp_path))


@pytest.mark.parametrize("name", sorted(RESUMED))
def test_resumed_run_matches_golden(tmp_path: Path, name: str) -> None:
    _assert_golden(name, run_resumed(name, tmp_path))
