"""relax=fixed: a given architecture (named genotype or genotype.json) trained as a fixed network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dha_core
from dha_core import get_registry
from dha_core.costs import count_params
from dha_core.errors import UserInputError
from dha_core.interfaces import DataSpec
from dha_plugins.relax.fixed import FixedArchConfig, FixedArchitecture
from dha_plugins.spaces.darts.genotype import DARTS_V2
from tests.conftest import tiny_raw_config

SPEC = DataSpec(num_classes=10, channels=3, image_size=16)


def _darts() -> object:
    reg = get_registry()
    return reg.create("space", reg.get("space", "darts").config(C=4, layers=3), data_spec=SPEC)


def test_darts_v2_by_name_computes_exactly_its_pairs() -> None:
    space = _darts()
    relax = FixedArchitecture(FixedArchConfig(genotype="DARTS_V2"))
    relax.setup(space.choice_groups(), space)
    expected = space.selection_from_genotype(DARTS_V2)
    assert relax.selection() == expected
    weights = relax.mixing_weights()
    for name, picks in expected.items():
        assert sorted(weights.active[name]) == sorted((p.edge, p.op) for p in picks)
        assert float(weights.values[name].sum()) == len(picks)  # weight 1 on each, 0 elsewhere
    assert relax.arch_parameters() == []
    assert space.genotype(relax.selection()) == DARTS_V2
    # The supernet under these weights is the child: same outputs once derived.
    net = space.build_supernet().eval()
    child = space.derive(net, relax.selection()).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(child(x), net(x, weights), atol=1e-5, rtol=1e-4)
    assert count_params(child) == count_params(space.build_child(expected))


def test_unknown_name_and_unreadable_file_are_user_errors(tmp_path: Path) -> None:
    space = _darts()
    with pytest.raises(UserInputError, match="neither a genotype this space names"):
        FixedArchitecture(FixedArchConfig(genotype="DARTS_V9")).setup(space.choice_groups(), space)
    bad = tmp_path / "g.json"
    bad.write_text("{not json")
    with pytest.raises(UserInputError, match="cannot read"):
        FixedArchitecture(FixedArchConfig(genotype=str(bad))).setup(space.choice_groups(), space)
    bad.write_text(json.dumps({"normal": [["conv_9x9", 0]] * 8, "reduce": DARTS_V2["reduce"]}))
    with pytest.raises(UserInputError, match="does not fit this space"):
        FixedArchitecture(FixedArchConfig(genotype=str(bad))).setup(space.choice_groups(), space)


def test_a_runs_genotype_json_trains_that_architecture(tmp_path: Path) -> None:
    """DARTS' ``train.py --arch``: the genotype.json of a search, trained through the same CLI path."""
    first = dha_core.build(config=tiny_raw_config(tmp_path / "a", relax="ista")).fit()
    raw = tiny_raw_config(tmp_path / "b", relax={"name": "fixed", "genotype": str(first.run_dir / "genotype.json")})
    second = dha_core.build(config=raw).fit()
    assert second.genotype == {k: [{**p, "weight": 1.0} for p in v] for k, v in first.genotype.items()}
    assert second.summary["arch"]["changed_groups"] == 0
