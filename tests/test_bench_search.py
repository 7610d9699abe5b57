"""benchmarks/bench_search.py runs every method on a tiny ImageFolder and reports the issue's ratios."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_search.py"


def _image_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(3):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = (rng.random((32, 32, 3)) * 80 + 60 * c).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root / "train"


@pytest.mark.slow
def test_quick_bench_reports_every_method_and_the_issue_ratios(tmp_path: Path) -> None:
    _image_folder(tmp_path / "data")
    out = tmp_path / "search.json"
    main = runpy.run_path(str(BENCH))["main"]
    assert main(["--quick", "--budget", "0.5", "--data-root", str(tmp_path / "data"), "--json", str(out),
                 "--batch", "4"]) == 0
    result = json.loads(out.read_text())
    assert set(result["table"]) == {"dha", "sequential_dha", "ista_one_stage", "darts", "fixed_darts_v2"}
    ratios = result["ratios"]
    assert {"dha_acc", "dha_minus_best_baseline", "dha_vs_fixed_darts_v2", "budget_used_min"} <= set(ratios)
    assert 0.0 <= ratios["dha_acc"] <= 1.0
    best = max(result["table"][m]["test_acc_mean"] for m in ("sequential_dha", "ista_one_stage", "darts"))
    assert ratios["dha_minus_best_baseline"] == pytest.approx(result["table"]["dha"]["test_acc_mean"] - best)
    # Every run trains for its whole budget (it stops after the step that reaches it).
    assert ratios["budget_used_min"] >= 0.95
    dha = next(r for r in result["runs"] if r["method"] == "dha")
    assert dha["policy_entropy"] is not None and dha["arch_finalized"] is not None
