"""Rewrites the golden files: ``python -m tests.golden.regen`` (from the repository root).

Only for an intentional change of behaviour, and in a commit of its own, so that every
structural commit before and after it can be checked against the golden files by
``tests/core/test_identity.py``. The regeneration also checks that the resumed runs
reproduce the uninterrupted ones before writing anything.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from dha_core.runtime import cpu_model
from tests.golden.runs import CPU_MODEL_FILE, GOLDEN_DIR, RESUMED, RUNS, comparable_metrics, comparable_summary, run, run_resumed


def main() -> int:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            run_dir = run(name, Path(tmp) / "full")
            summary, metrics = comparable_summary(run_dir), comparable_metrics(run_dir)
            if name in RESUMED:
                resumed = run_resumed(name, Path(tmp) / "resumed")
                if (comparable_summary(resumed), comparable_metrics(resumed)) != (summary, metrics):
                    print(f"{name}: the resumed run differs from the uninterrupted one; nothing written",
                          file=sys.stderr)
                    return 1
            (GOLDEN_DIR / f"{name}.summary.json").write_text(summary, encoding="utf-8")
            (GOLDEN_DIR / f"{name}.metrics.csv").write_text(metrics, encoding="utf-8")
            print(f"wrote {name}.summary.json and {name}.metrics.csv")
    CPU_MODEL_FILE.write_text(cpu_model() + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
