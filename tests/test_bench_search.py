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
    # The machine-speed probe ran around every run and reaches the table.
    for row in result["runs"]:
        assert row["probe_step_s_before"] > 0 and row["probe_step_s_after"] > 0
    assert all(result["table"][m]["probe_step_s_mean"] > 0 for m in result["table"])


@pytest.mark.slow
def test_overrides_seeds_and_kept_runs_round_trip(tmp_path: Path) -> None:
    """--set reaches one method's config, --first-seed picks the seeds, --runs-dir keeps the
    run directories, and --from-runs tabulates them again."""
    import yaml

    _image_folder(tmp_path / "data")
    runs = tmp_path / "runs"
    main = runpy.run_path(str(BENCH))["main"]
    assert main(["--quick", "--budget", "0.3", "--data-root", str(tmp_path / "data"), "--batch", "4",
                 "--methods", "dha", "ista_one_stage", "--first-seed", "3", "--runs-dir", str(runs),
                 "--set", "dha.hpo.lr_low=0.02", "--json", str(tmp_path / "a.json")]) == 0
    assert sorted(p.name for p in runs.iterdir()) == ["dha-seed3", "ista_one_stage-seed3"]
    assert yaml.safe_load((runs / "dha-seed3" / "config.yaml").read_text())["hpo"]["lr_low"] == 0.02
    assert yaml.safe_load((runs / "ista_one_stage-seed3" / "config.yaml").read_text())["hpo"]["name"] == "fixed"
    first = json.loads((tmp_path / "a.json").read_text())
    assert first["settings"]["overrides"] == ["dha.hpo.lr_low=0.02"]
    assert main(["--from-runs", str(runs), "--json", str(tmp_path / "b.json")]) == 0
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["ratios"]["dha_acc"] == first["ratios"]["dha_acc"]
    # The probe figures are kept next to each run and read back with it.
    assert [r["probe_step_s_before"] for r in again["runs"]] == [r["probe_step_s_before"] for r in first["runs"]]
    # An earlier result fills the (method, seed) pairs the folder lacks, and only those.
    assert main(["--quick", "--budget", "0.3", "--data-root", str(tmp_path / "data"), "--batch", "4",
                 "--methods", "dha", "darts", "--first-seed", "3", "--probe-steps", "0",
                 "--json", str(tmp_path / "earlier.json")]) == 0
    assert all(r["probe_step_s_before"] is None for r in json.loads((tmp_path / "earlier.json").read_text())["runs"])
    assert main(["--from-runs", str(runs), "--add-rows", str(tmp_path / "earlier.json"),
                 "--json", str(tmp_path / "c.json")]) == 0
    merged = json.loads((tmp_path / "c.json").read_text())
    sources = {(r["method"], r.get("source")) for r in merged["runs"]}
    assert sources == {("dha", None), ("ista_one_stage", None), ("darts", str(tmp_path / "earlier.json"))}
    assert merged["ratios"]["dha_acc"] == first["ratios"]["dha_acc"]


def test_add_rows_from_a_file_that_is_not_a_result_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(BENCH))["main"]
    (tmp_path / "runs" / "dha-seed0").mkdir(parents=True)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main(["--from-runs", str(tmp_path / "runs"), "--add-rows", str(tmp_path / "bad.json")])
    assert exc.value.code == 2


@pytest.mark.parametrize("bad", ["dha.hpo", "nosuch.hpo.lr=1", "dha.lr=1"])
def test_a_malformed_override_is_one_line_and_exit_2(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(BENCH))["main"]
    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--data-root", "/nonexistent", "--set", bad])
    assert exc.value.code == 2
    assert "METHOD.SECTION.KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_precision_bench_reports_the_spread() -> None:
    out_main = runpy.run_path(str(BENCH.parent / "bench_precision.py"))["main"]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "precision.json"
        assert out_main(["--quick", "--seeds", "2", "--json", str(out)]) == 0
        result = json.loads(out.read_text())
    assert {"bf16_minus_fp32_acc", "seed_std_acc", "within_noise", "same_genotype_fraction"} <= set(result["ratios"])
    assert result["ratios"]["bf16_minus_fp32_acc"] == pytest.approx(
        result["table"]["bf16"]["test_acc_mean"] - result["table"]["fp32"]["test_acc_mean"])
    assert [r["precision"] for r in result["runs"]] == ["fp32", "bf16", "fp32", "bf16"]


def test_a_negative_probe_step_count_is_one_line_and_exit_2(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(BENCH))["main"]
    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--data-root", str(tmp_path), "--probe-steps", "-1"])
    assert exc.value.code == 2
    assert "--probe-steps -1" in capsys.readouterr().err


@pytest.mark.slow
def test_the_dha_cell_row_trains_the_genotype_the_dha_run_found(tmp_path: Path) -> None:
    import yaml

    _image_folder(tmp_path / "data")
    runs = tmp_path / "runs"
    main = runpy.run_path(str(BENCH))["main"]
    assert main(["--quick", "--budget", "0.3", "--data-root", str(tmp_path / "data"), "--batch", "4",
                 "--methods", "dha", "dha_cell_fixed", "--runs-dir", str(runs), "--probe-steps", "0",
                 "--json", str(tmp_path / "a.json")]) == 0
    config = yaml.safe_load((runs / "dha_cell_fixed-seed0" / "config.yaml").read_text())
    assert config["relax"] == {**config["relax"], "name": "fixed",
                               "genotype": str(runs / "dha-seed0" / "genotype.json")}
    rows = {r["method"]: r for r in json.loads((tmp_path / "a.json").read_text())["runs"]}
    assert rows["dha_cell_fixed"]["genotype"] == rows["dha"]["genotype"]
    assert (config["aug"]["name"], config["hpo"]["name"]) == ("standard", "fixed")  # the DARTS_V2 row's recipe


def test_the_dha_cell_row_without_dha_before_it_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(BENCH))["main"]
    for methods in (["dha_cell_fixed"], ["dha_cell_fixed", "dha"]):
        with pytest.raises(SystemExit) as exc:
            main(["--quick", "--data-root", str(tmp_path), "--methods", *methods])
        assert exc.value.code == 2
        assert "name dha before it" in capsys.readouterr().err
