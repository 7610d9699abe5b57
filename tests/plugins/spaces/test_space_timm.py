"""space=timm: a fixed timm network; DA and HPO only, relax ignored, search end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch
from pydantic import ValidationError
from timm.layers import DropPath

import dha_core
from dha_core.types import DataSpec, MixingWeights, SelectedOp
from dha_plugins.spaces.timm_backbone import TimmSpace, TimmSpaceConfig
from tests.conftest import tiny_raw_config

SPEC = DataSpec(num_classes=3, channels=1, image_size=16)


def test_fixed_network_has_no_choices() -> None:
    s = TimmSpace(TimmSpaceConfig(model="test_resnet"), SPEC)
    assert s.choice_groups() == []
    assert s.candidate_costs("params") == {}
    net = s.build_supernet().eval()
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(net(x, MixingWeights({}, {})), net(x))
    assert net(x).shape == (2, 3)
    with pytest.raises(ValueError, match="no choice groups"):
        net(x, MixingWeights({"cell/node0": torch.ones(1, 1)}, {}))
    with pytest.raises(ValueError, match="no choice groups"):
        s.build_child({"cell/node0": [SelectedOp(0, 0)]})
    assert s.selection_cost({}, "params") == sum(p.numel() for p in net.parameters())
    assert s.selection_from_genotype(s.genotype({})) == {}


def test_derive_copies_trained_weights() -> None:
    s = TimmSpace(TimmSpaceConfig(model="test_resnet"), SPEC)
    net = s.build_supernet()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        net.train()(x)  # move the batch-norm statistics
    net.eval()
    child = s.derive(net, {})
    assert type(child) is type(net.model) and child is not net.model
    with torch.no_grad():
        torch.testing.assert_close(child(x), net(x), atol=0, rtol=0)
    assert not child.training


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="unknown timm model"):
        TimmSpaceConfig(model="not_a_model_xyz")
    with pytest.raises(ValidationError, match="pretrained"):
        TimmSpaceConfig(model="test_resnet", model_kwargs={"pretrained": True})
    with pytest.raises(ValidationError, match="num_classes"):
        TimmSpaceConfig(model="test_resnet", model_kwargs={"num_classes": 5})


def test_model_kwargs_and_drop_path(caplog: pytest.LogCaptureFixture) -> None:
    s = TimmSpace(TimmSpaceConfig(model="test_resnet", model_kwargs={"drop_path_rate": 0.2}), SPEC)
    net = s.build_supernet()
    layers = [m for m in net.modules() if isinstance(m, DropPath)]
    assert layers
    before = [m.drop_prob for m in layers]
    net.set_drop_path(0.1)
    # timm's depth profile is kept, with the deepest layer at the requested rate.
    assert [m.drop_prob for m in layers] == pytest.approx([0.5 * b for b in before])
    plain = TimmSpace(TimmSpaceConfig(model="test_resnet"), SPEC).build_supernet()
    with caplog.at_level(logging.WARNING):
        plain.set_drop_path(0.1)
    assert "drop_path_rate" in caplog.text


def test_never_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    original = timm.create_model

    def spy(name: str, **kwargs):
        seen.update(kwargs)
        return original(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    TimmSpace(TimmSpaceConfig(model="test_resnet"), SPEC).build_supernet()
    assert seen["pretrained"] is False and seen["num_classes"] == 3 and seen["in_chans"] == 1


def test_search_runs_end_to_end_and_ignores_relax(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = tiny_raw_config(tmp_path / "runs")
    raw["space"] = {"name": "timm", "model": "test_resnet"}
    raw["relax"] = "ista"
    raw["train"].update(epochs=1, max_steps_per_epoch=2)
    with caplog.at_level(logging.INFO, logger="dha_core"):
        result = dha_core.build(config=raw, output={"dir": str(tmp_path / "runs"), "name": "t"}).fit()
    assert "relax='ista' is ignored" in caplog.text
    assert result.genotype == {"model": "test_resnet", "model_kwargs": {}}
    loaded = dha_core.load_model(tmp_path / "runs" / "t")
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(loaded(x), result.model.cpu()(x), atol=0, rtol=0)
