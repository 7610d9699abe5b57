"""The orchestrator runs any combination of components (it never branches on plugin names)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

import dha_core
from dha_core.cli import main
from tests.conftest import tiny_raw_config

SHORT = {"epochs": 1, "max_steps_per_epoch": 2, "batch_size": 8, "device": "cpu", "progress": False}
SMALL_DATA = {"name": "synthetic", "num_train": 48, "num_test": 16, "image_size": 16}
SMALL_DARTS = {"name": "darts", "C": 4, "layers": 3, "nodes": 2}
SMALL_MOBILENET = {"name": "mobilenet", "stage_widths": [8, 8], "depths": [1, 2], "strides": [2, 1],
                   "stem_channels": 8, "first_block_channels": 8, "last_channels": 16}


def test_readme_call_runs_as_written_with_a_short_schedule(tmp_path: Path) -> None:
    """`build(space="mobilenet", relax="ista", aug="kornia")` with only the run length shortened."""
    searcher = dha_core.build(space="mobilenet", relax="ista", aug="kornia",
                              **{"train.epochs": 1, "train.max_steps_per_epoch": 1, "train.progress": False,
                                 "train.device": "cpu", "output.dir": str(tmp_path)})
    assert searcher.config.hpo.name == "hypergrad" and searcher.config.data.name == "sample"
    result = searcher.fit()
    assert set(result.genotype) == {g.name for g in searcher.space.choice_groups()}
    assert 0.0 <= result.summary["test_acc"] <= 1.0


def _spy_components(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Records the search stage's policy (with its initial parameters) and hyper-optimizer
    (with its lr/wd right after it takes the weights)."""
    from dha_core import components

    seen: dict[str, Any] = {}
    build_aug, build_hpo = components.build_aug, components.build_hpo

    def aug_spy(*args: Any, **kwargs: Any) -> Any:
        aug = build_aug(*args, **kwargs)
        seen.setdefault("aug", aug)
        seen.setdefault("aug_start", [p.detach().clone() for p in aug.parameters()])
        return aug

    def hpo_spy(*args: Any, **kwargs: Any) -> Any:
        hpo = build_hpo(*args, **kwargs)
        attach = hpo.attach

        def attach_and_record(*a: Any, **k: Any) -> Any:
            out = attach(*a, **k)
            seen.setdefault("hpo_start", hpo.hyperparameters())
            return out

        hpo.attach = attach_and_record
        seen.setdefault("hpo", hpo)
        return hpo

    monkeypatch.setattr(components, "build_aug", aug_spy)
    monkeypatch.setattr(components, "build_hpo", hpo_spy)
    return seen


def assert_valid_selection(searcher: Any, result: Any) -> None:
    """Every choice group selects ``keep`` distinct real ops on its own edges, and the
    derived child rebuilds from the run directory (``load_model``)."""
    from dha_core.types import selection_to_json

    groups = {g.name: g for g in searcher.space.choice_groups()}
    assert set(result.selection) == set(groups)
    for name, chosen in result.selection.items():
        group = groups[name]
        pairs = [(c.edge, c.op) for c in chosen]
        assert len(pairs) == group.keep and len(set(pairs)) == len(pairs), (name, pairs)
        for edge, op in pairs:
            assert 0 <= edge < len(group.edges) and 0 <= op < len(group.ops), (name, edge, op)
            assert group.ops[op] != group.none_op, (name, group.ops[op])
    assert result.summary["selection"] == selection_to_json(result.selection)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(dha_core.load_model(result.run_dir)(x), result.model(x))


@pytest.mark.parametrize("space, relax, aug, hpo", [
    (SMALL_DARTS, {"name": "softmax", "order": "first"}, "none", "fixed"),       # plain DARTS (1st order)
    (SMALL_DARTS, {"name": "softmax", "order": "second"}, "standard", "fixed"),  # DARTS 2nd order
    (SMALL_DARTS, "gumbel", "torchvision", {"name": "hypergrad", "hyper_batch": "next_train"}),
    (SMALL_DARTS, "ista", "kornia", {"name": "hypergrad", "hyper_batch": "held_out"}),  # DHA
    (SMALL_MOBILENET, "softmax", "randaugment", "fixed"),
    (SMALL_MOBILENET, "ista", "autoaugment", {"name": "fixed", "optimizer": "adamw", "lr": 1e-3}),
    ({"name": "tiny"}, "gumbel", "trivialaugment", {"name": "hypergrad", "optimizer": "adamw"}),
])
def test_combination_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, space: Any, relax: Any, aug: Any,
                          hpo: Any) -> None:
    seen = _spy_components(monkeypatch)
    searcher = dha_core.build(space=space, relax=relax, aug=aug, hpo=hpo, dataset=SMALL_DATA, train=SHORT,
                              output={"dir": str(tmp_path), "plots": False})
    result = searcher.fit()
    assert result.summary["steps"] == 2
    assert result.model(torch.rand(2, 3, 16, 16)).shape == (2, 10)
    assert_valid_selection(searcher, result)
    start, final = seen["hpo_start"], {"lr": result.summary["final_lr"], "wd": result.summary["final_wd"]}
    if searcher.config.hpo.name == "hypergrad":
        # Two steps move lr/wd only a little under the default hyper step sizes (e.g. 0.0505 ->
        # 0.0513), so this checks that they moved at all, not by how much.
        assert final["lr"] != start["lr"] and final["wd"] != start["wd"], (start, final)
    if seen["aug"].learnable:
        moved = [not torch.equal(a, b.detach()) for a, b in zip(seen["aug_start"], seen["aug"].parameters(),
                                                                  strict=True)]
        assert seen["aug_start"] and any(moved), "the learnable policy did not change"


def test_timm_space_ignores_relax(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    result = dha_core.build(space={"name": "timm", "model": "resnet10t"}, relax="ista", aug="kornia",
                            hpo="hypergrad", dataset=SMALL_DATA, train=SHORT,
                            output={"dir": str(tmp_path), "plots": False}).fit()
    assert result.selection == {} and result.genotype["model"] == "resnet10t"
    assert any("relax='ista' is ignored" in r.getMessage() for r in caplog.records)


def _capture_child_stages(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Records, per child stage, its network's initial weights and the derived child's."""
    from dha_core.stage_builder import StageBuilder

    captured: dict[str, dict[str, Any]] = {}
    original = StageBuilder.build

    def spy(self: StageBuilder, spec: Any, selection: Any = None, supernet: Any = None) -> Any:
        stage = original(self, spec, selection, supernet)
        if spec.searches:
            return stage
        derived = self.space.derive(supernet, selection) if supernet is not None else None
        captured[spec.name] = {
            "initial": [t.detach().clone() for t in stage.net.net.state_dict().values()],
            "derived": None if derived is None else [t.detach().clone() for t in derived.state_dict().values()],
            "hpo": stage.hpo,
        }
        return stage

    monkeypatch.setattr(StageBuilder, "build", spy)
    return captured


def test_finetune_stage_keeps_weights_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    captured = _capture_child_stages(monkeypatch)
    raw = tiny_raw_config(tmp_path)
    raw["train"]["finetune_epochs"] = 1
    result = dha_core.build(config=raw).fit()
    assert set(result.summary["stage_wall_s"]) == {"search", "finetune"}
    assert "finetune_final" in result.summary
    # finetuning starts from the searched weights: the derived child of the trained supernet
    start = captured["finetune"]
    assert len(start["initial"]) == len(start["derived"])
    for got, want in zip(start["initial"], start["derived"], strict=True):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_two_stage_retrain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    captured = _capture_child_stages(monkeypatch)
    raw = tiny_raw_config(tmp_path, retrain={"epochs": 1, "aug": "none",
                                             "hpo": {"name": "fixed", "lr": 0.05, "schedule": "constant"}})
    result = dha_core.build(config=raw).fit()
    assert set(result.summary["stage_wall_s"]) == {"search", "retrain"}
    assert result.summary["retrain_final"]["lr"] == pytest.approx(0.05)  # retrain.hpo, not the search's
    # retraining starts from scratch: fresh weights, not the searched ones
    start = captured["retrain"]
    assert any(not torch.equal(got, want) for got, want in zip(start["initial"], start["derived"], strict=True)
               if got.is_floating_point())


def test_ablate_grid_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    config = tmp_path / "c.yaml"
    raw = tiny_raw_config(tmp_path / "runs")
    raw["train"]["epochs"] = 1
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "grid"
    code = main(["-q", "ablate", "--config", str(config), "--swap", "aug=none,standard", "--seeds", "2",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    table = (out / "sweep.md").read_text()
    assert "aug=none" in table and "aug=standard" in table and "±" in table
    rows = [line for line in table.splitlines() if line.startswith("| aug=")]
    assert len(rows) == 2 and all("| 2 |" in r for r in rows)
    assert len(list(out.glob("*/summary.json"))) == 4
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))]
    assert {s["components"]["aug"] for s in summaries} == {"none", "standard"}



def test_darts_second_order_gets_the_weight_momentum_buffers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unrolled step of DARTS 2nd order sees the live SGD momentum buffers of the weights."""
    from dha_core.joint_step import JointStep

    seen: list[list[torch.Tensor | None]] = []
    original = JointStep._arch_context

    def spy(self: JointStep, *args: Any, **kwargs: Any) -> Any:
        ctx = original(self, *args, **kwargs)
        buffers = ctx.momentum_buffers
        owned = dict(zip(map(id, self.hpo._flat), self.hpo._weights.momentum_buffers, strict=True))
        assert len(buffers) == len(ctx.weight_params)
        for b, p in zip(buffers, ctx.weight_params, strict=True):  # aligned, and the live tensors
            assert b is owned[id(p)] and (b is None or b.shape == p.shape)
        seen.append(buffers)
        return ctx

    monkeypatch.setattr(JointStep, "_arch_context", spy)
    dha_core.build(space=SMALL_DARTS, relax={"name": "softmax", "order": "second"}, aug="none",
                   hpo={"name": "fixed", "momentum": 0.9}, dataset=SMALL_DATA,
                   train=SHORT | {"max_steps_per_epoch": 3}, output={"dir": str(tmp_path), "plots": False}).fit()
    assert len(seen) == 3
    assert all(b is None for b in seen[0])  # before the first weight step
    assert any(b is not None and b.abs().sum() > 0 for b in seen[2])


@pytest.mark.parametrize("relax, expected", [("ista", [1, 2, 2]), ({"name": "softmax", "order": "first"}, [])])
def test_hpo_is_told_when_the_relaxation_changed_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relax: Any, expected: list[int]
) -> None:
    """ISTA folds (or recovers) at each epoch end except the last, and fixes the architecture
    at half the run (after step 2 of 3); softmax changes nothing."""
    from dha_plugins.hpo.hypergrad import HypergradHyperOptimizer

    calls: list[int] = []
    monkeypatch.setattr(HypergradHyperOptimizer, "weights_changed", lambda self: calls.append(self.steps))
    dha_core.build(space=SMALL_DARTS, relax=relax, aug="none", hpo={"name": "hypergrad", "hyper_batch": "next_train"},
                   dataset=SMALL_DATA, train=SHORT | {"epochs": 3, "max_steps_per_epoch": 1},
                   output={"dir": str(tmp_path), "plots": False}).fit()
    assert calls == expected
