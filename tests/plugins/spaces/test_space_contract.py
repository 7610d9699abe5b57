"""Contract tests run against every registered search space.

Each space is built small, its supernet runs forward and backward under dense and sparse
random weights, a random selection is derived and must reproduce the supernet's output,
and the child goes through ``model.pt`` and back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dha_core import get_registry
from dha_core.interfaces import SearchSpace
from dha_core.model_io import NormalizedModel, load_model, save_model
from dha_core.types import DataSpec, MixingWeights
from tests.plugins.spaces.space_helpers import logits_of, random_selection, settle, weights_for

# Small settings for the built-in spaces; any other (third-party) space runs with its defaults.
SMALL: dict[str, dict[str, Any]] = {
    "darts": {"C": 4, "layers": 3, "nodes": 3},
    "mobilenet": {
        "stem_channels": 8, "first_block_channels": 8, "stage_widths": (8, 16), "depths": (2, 2),
        "strides": (1, 2), "kernel_sizes": (3, 5), "expand_ratios": (2, 3), "last_channels": 32,
    },
    "timm": {"model": "test_resnet"},
    "tiny": {"channels": 4},
}
SPEC = DataSpec(num_classes=5, channels=3, image_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
SPACES = get_registry().names("space")


def make_space(name: str) -> tuple[SearchSpace, dict[str, Any]]:
    component = get_registry().get("space", name)
    config = component.config(**SMALL.get(name, {}))
    return component.create(config, data_spec=SPEC), config.model_dump(mode="json")


@pytest.fixture(params=SPACES)
def space_and_config(request: pytest.FixtureRequest) -> tuple[SearchSpace, dict[str, Any]]:
    return make_space(request.param)


def _batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, SPEC.channels, SPEC.image_size, SPEC.image_size,
                       generator=torch.Generator().manual_seed(7))


def test_every_builtin_space_is_registered() -> None:
    assert {"darts", "mobilenet", "timm"} <= set(SPACES)


def test_choice_groups_are_stable_and_well_formed(space_and_config: tuple[SearchSpace, dict]) -> None:
    space, _ = space_and_config
    groups = space.choice_groups()
    again = space.choice_groups()
    assert [g.name for g in groups] == [g.name for g in again]
    assert len({g.name for g in groups}) == len(groups)
    for g in groups:
        assert len(g.edges) >= 1 and len(g.ops) >= 1
        assert 1 <= g.keep <= g.size
        assert g.none_op is None or g.none_op in g.ops
        if g.edge_inputs is not None:
            assert len(g.edge_inputs) == len(g.edges)


def test_dense_and_sparse_forward_backward(space_and_config: tuple[SearchSpace, dict]) -> None:
    space, _ = space_and_config
    groups = space.choice_groups()
    net = space.build_supernet().train()
    x = _batch()

    dense = MixingWeights({g.name: torch.rand(g.shape).requires_grad_() for g in groups},
                          {g.name: None for g in groups})
    out = logits_of(net(x, dense))
    assert out.shape == (2, SPEC.num_classes)
    out.square().mean().backward()
    for g in groups:
        grad = dense.values[g.name].grad
        assert grad is not None and torch.isfinite(grad).all()
    dense_with_grad = sum(p.grad is not None for p in net.parameters())
    assert dense_with_grad > 0

    net.zero_grad(set_to_none=True)
    sel = random_selection(groups, seed=1)
    sparse = weights_for(groups, sel)
    for w in sparse.values.values():
        w.requires_grad_()
    out = logits_of(net(x, sparse))
    assert out.shape == (2, SPEC.num_classes) and torch.isfinite(out).all()
    out.square().mean().backward()
    for g in groups:
        grad = sparse.values[g.name].grad
        if grad is None:  # the group's output is not on the path to the logits (tiny: node0 unused)
            continue
        mask = torch.ones(g.shape, dtype=torch.bool)
        for s in sel[g.name]:
            mask[s.edge, s.op] = False
        # Candidates outside the active set are not computed, so their weights get no gradient.
        assert torch.count_nonzero(grad[mask]) == 0
    if groups:
        sparse_with_grad = sum(p.grad is not None for p in net.parameters())
        assert sparse_with_grad < dense_with_grad


def test_derived_child_matches_supernet(space_and_config: tuple[SearchSpace, dict]) -> None:
    space, _ = space_and_config
    groups = space.choice_groups()
    net = space.build_supernet()
    x = _batch(3)
    sel = random_selection(groups, seed=2)
    weights = weights_for(groups, sel)
    settle(net, x, MixingWeights({g.name: torch.rand(g.shape) for g in groups}, {g.name: None for g in groups}))
    net.eval()
    child = space.derive(net, sel).eval()
    with torch.no_grad():
        expected = logits_of(net(x, weights))
        got = child(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    if groups:
        # The child drops every unused candidate.
        assert sum(p.numel() for p in child.parameters()) < sum(p.numel() for p in net.parameters())
    assert not any(isinstance(m, type(net)) for m in child.modules())


def test_child_round_trips_through_model_pt(space_and_config: tuple[SearchSpace, dict], tmp_path: Path) -> None:
    space, config = space_and_config
    groups = space.choice_groups()
    net = space.build_supernet()
    x = _batch()
    settle(net, x, MixingWeights({g.name: torch.rand(g.shape) for g in groups}, {g.name: None for g in groups}))
    sel = random_selection(groups, seed=3)
    model = NormalizedModel(space.derive(net, sel), SPEC.mean, SPEC.std).eval()
    path = tmp_path / "model.pt"
    save_model(model, path, space_config=config, data_spec=SPEC, selection=sel)
    loaded = load_model(path)
    images = torch.rand(2, SPEC.channels, SPEC.image_size, SPEC.image_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=0, rtol=0)
        # ... and that output is the child on normalised images (not the model against itself)
        mean = torch.tensor(SPEC.mean).view(1, -1, 1, 1)
        std = torch.tensor(SPEC.std).view(1, -1, 1, 1)
        torch.testing.assert_close(loaded(images), logits_of(model.net((images - mean) / std)), atol=1e-6, rtol=0)
    # A child built fresh from config + selection has exactly the derived child's keys.
    assert set(space.build_child(sel).state_dict()) == set(model.net.state_dict())


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
def test_child_traces_for_export(space_and_config: tuple[SearchSpace, dict]) -> None:
    # `dha export --format torchscript|onnx` traces the derived child.
    space, _ = space_and_config
    groups = space.choice_groups()
    child = space.derive(space.build_supernet(), random_selection(groups, seed=6)).eval()
    x = _batch()
    with torch.no_grad():
        traced = torch.jit.trace(child, x, check_trace=False)
        torch.testing.assert_close(traced(x), child(x), atol=1e-6, rtol=0)


def test_costs_are_consistent(space_and_config: tuple[SearchSpace, dict]) -> None:
    space, _ = space_and_config
    groups = space.choice_groups()
    a = random_selection(groups, seed=4)
    for metric in ("params", "flops"):
        assert space.selection_cost(a, metric) > 0
        costs = space.candidate_costs(metric)
        if not costs:
            continue
        assert set(costs) == {g.name for g in groups}
        for g in groups:
            assert tuple(costs[g.name].shape) == g.shape and (costs[g.name] >= 0).all()
        # Swapping one group's choice changes the child's cost by exactly the candidates' difference.
        g = groups[-1]
        b = dict(a)
        b[g.name] = random_selection([g], seed=5)[g.name]
        predicted = sum(costs[g.name][s.edge, s.op] for s in b[g.name]) - sum(
            costs[g.name][s.edge, s.op] for s in a[g.name]
        )
        assert space.selection_cost(b, metric) - space.selection_cost(a, metric) == pytest.approx(float(predicted))
