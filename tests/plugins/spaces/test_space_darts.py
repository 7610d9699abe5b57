"""space=darts: the published DARTS_V2 size, genotypes, sparse execution, costs, folding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dha_core.costs import count_params
from dha_core.types import DataSpec, MixingWeights, SelectedOp
from dha_plugins.spaces.darts import (
    DARTS_OPS,
    DARTS_V2,
    DartsSpace,
    DartsSpaceConfig,
    count_child_params,
    load_genotype,
    save_genotype,
)
from dha_plugins.spaces.darts.layout import AuxiliaryHead
from tests.plugins.spaces.space_helpers import logits_of, random_selection, settle, weights_for

CIFAR = DataSpec(num_classes=10, channels=3, image_size=32)
SMALL = DataSpec(num_classes=4, channels=3, image_size=16)


def space(image: dict | None = None, **cfg) -> DartsSpace:
    return DartsSpace(DartsSpaceConfig(**{"C": 4, "layers": 3, **cfg}), image or SMALL)


def test_darts_v2_cifar_eval_network_has_published_size() -> None:
    s = DartsSpace(DartsSpaceConfig(C=36, layers=20, auxiliary=True), CIFAR)
    child = s.build_child(s.selection_from_genotype(DARTS_V2))
    # DARTS' train.py prints "param size = 3.349342MB" for this network (aux head excluded).
    assert count_child_params(child) == 3_349_342
    assert s.selection_cost(s.selection_from_genotype(DARTS_V2), "params") == 3_349_342
    assert child.auxiliary_head is not None
    assert count_params(child) > 3_349_342
    assert isinstance(child.auxiliary_head.features[1], nn.AvgPool2d)  # the published 5x5/3 pooling at 8x8


def test_groups_follow_the_darts_cell() -> None:
    groups = space().choice_groups()
    assert [g.name for g in groups] == [f"{t}/node{j}" for t in ("normal", "reduce") for j in range(4)]
    assert sum(len(g.edges) for g in groups if g.name.startswith("normal/")) == 14
    for g in groups:
        j = int(g.name[-1])
        assert g.keep == 2 and g.none_op == "none" and g.ops == DARTS_OPS
        assert g.edge_inputs == tuple(range(2 + j))


def test_genotype_round_trip_and_json(tmp_path: Path) -> None:
    s = space()
    sel = s.selection_from_genotype(DARTS_V2)
    assert s.genotype(sel) == DARTS_V2
    rnd = random_selection(s.choice_groups(), seed=11)
    geno = s.genotype(rnd)
    assert set(geno) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    path = tmp_path / "genotype.json"
    save_genotype(geno, path)
    assert json.loads(path.read_text()) == geno
    back = s.selection_from_genotype(load_genotype(path))
    assert {g: [(o.edge, o.op) for o in ops] for g, ops in back.items()} == {
        g: [(o.edge, o.op) for o in ops] for g, ops in rnd.items()
    }
    assert all(o.weight == 1.0 for ops in back.values() for o in ops)
    # Tuples, as DARTS' own Genotype namedtuple holds them, are accepted too.
    as_tuples = {k: [tuple(x) for x in v] if k in ("normal", "reduce") else v for k, v in DARTS_V2.items()}
    assert s.selection_from_genotype(as_tuples) == sel


def test_genotype_with_other_input_counts_keeps_node_boundaries() -> None:
    s = space()
    sel = random_selection(s.choice_groups(), seed=3, per_group=3)
    sel["normal/node0"] = sel["normal/node0"][:1]
    geno = s.genotype(sel)
    assert geno["normal_counts"] == [1, 3, 3, 3]
    back = s.selection_from_genotype(geno)
    assert [len(back[g]) for g in ("normal/node0", "normal/node1")] == [1, 3]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: g["normal"].__setitem__(0, ["conv_7x7", 0]), "conv_7x7"),
        (lambda g: g["reduce"].__setitem__(0, ["max_pool_3x3", 5]), "out of range"),
        (lambda g: g.__setitem__("normal_concat", [4, 5]), "concat"),
        (lambda g: g["normal"].pop(), "cannot be split"),
    ],
)
def test_genotype_import_rejects_mismatches(change, message: str) -> None:
    geno = json.loads(json.dumps(DARTS_V2))
    change(geno)
    with pytest.raises(ValueError, match=message):
        space().selection_from_genotype(geno)


def test_op_list_is_configurable() -> None:
    s = space(ops=DARTS_OPS[1:])  # ISTA-NAS: the seven ops without none
    groups = s.choice_groups()
    assert all(g.ops == DARTS_OPS[1:] and g.none_op is None for g in groups)
    net = s.build_supernet()
    assert logits_of(net(torch.randn(2, 3, 16, 16))).shape == (2, 4)
    assert s.genotype(s.selection_from_genotype(DARTS_V2)) == DARTS_V2
    with pytest.raises(ValidationError, match="conv_7x7"):
        DartsSpaceConfig(ops=("none", "conv_7x7"))
    with pytest.raises(ValidationError):
        DartsSpaceConfig(ops=("none",))


def test_shape_settings_are_configurable() -> None:
    s = space(C=6, layers=4, nodes=2, stem_multiplier=2)
    net = s.build_supernet()
    assert len(net.cells) == 4 and [c.reduction for c in net.cells] == [False, True, True, False]
    assert net.stem[0].out_channels == 12
    assert net.classifier.in_features == 2 * 6 * 4  # nodes * channels after two reductions
    assert len(s.choice_groups()) == 4
    assert logits_of(net(torch.randn(2, 3, 16, 16))).shape == (2, 4)


@pytest.mark.parametrize("size", [16, 30, 32])
def test_runs_at_small_and_odd_resolutions(size: int) -> None:
    s = space(DataSpec(num_classes=4, channels=3, image_size=size), C=4, layers=3)
    net = s.build_supernet().eval()
    sel = random_selection(s.choice_groups(), seed=size)
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size), weights_for(s.choice_groups(), sel))
    assert out.shape == (1, 4)


def test_default_config_is_cpu_sized() -> None:
    s = DartsSpace(DartsSpaceConfig(), CIFAR)
    assert (s.config.C, s.config.layers, s.config.nodes) == (8, 5, 4)
    net = s.build_supernet()
    assert count_params(net) < 1_000_000
    groups = s.choice_groups()
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 3, 32, 32), weights_for(groups, random_selection(groups, 0)))
    assert out.shape == (1, 10)


def _candidate_modules(net) -> dict[nn.Module, tuple[str, int, int]]:
    found = {}
    for cell, cell_type in zip(net.cells, net.cell_types, strict=True):
        for j, node in enumerate(cell.nodes):
            for e, edge in enumerate(node.edges):
                for o, name in enumerate(node.op_names):
                    found[edge[name]] = (f"{cell_type}/node{j}", e, o)
    return found


def test_sparse_forward_computes_only_active_candidates() -> None:
    s = space()
    net = s.build_supernet()
    called: list[tuple[str, int, int]] = []
    for module, key in _candidate_modules(net).items():
        module.register_forward_hook(lambda m, i, o, key=key: called.append(key))
    groups = s.choice_groups()
    sel = random_selection(groups, seed=5)
    sel["normal/node1"] = [SelectedOp(0, 0, 1.0), SelectedOp(2, 4, 0.5)]  # "none" is active but never computed
    logits_of(net(torch.randn(2, 3, 16, 16), weights_for(groups, sel))).sum().backward()
    expected = {(g, s_.edge, s_.op) for g, ops in sel.items() for s_ in ops if s_.op != 0}
    assert set(called) == expected
    n_normal, n_reduce = net.cell_types.count("normal"), net.cell_types.count("reduce")
    assert len(called) == sum((n_normal if g.startswith("normal") else n_reduce) for g, _, _ in expected)
    called.clear()
    net(torch.randn(2, 3, 16, 16))  # dense: every candidate except "none"
    assert len(called) == sum(n * 14 * 7 for n in (n_normal, n_reduce))


def _forward_flops(net, x, weights) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, weights)
    return counter.get_total_flops()


def test_forward_flops_scale_with_active_ops() -> None:
    s = space(DataSpec(num_classes=4, channels=3, image_size=8), layers=3, nodes=2)
    groups = s.choice_groups()
    net = s.build_supernet().eval()
    x = torch.zeros(1, 3, 8, 8)
    costs = s.candidate_costs("flops")
    # Max pooling counts 0 FLOPs, so one pooling candidate per node leaves the fixed part.
    pools = {g.name: [SelectedOp(0, g.ops.index("max_pool_3x3"))] for g in groups}
    fixed = _forward_flops(net, x, weights_for(groups, pools))
    sel = random_selection(groups, seed=8)
    sparse = _forward_flops(net, x, weights_for(groups, sel))
    dense = _forward_flops(net, x, weights_for(groups, sel, sparse=False))
    assert sparse == fixed + sum(costs[g][o.edge, o.op] for g, ops in sel.items() for o in ops)
    assert dense == fixed + sum(c.sum() for c in costs.values())
    assert sparse < 0.25 * dense


def test_candidate_costs_match_hand_counts() -> None:
    s = space(layers=4)  # C=4 at 16x16: normal cells at 16x16 (C=4) and 4x4 (C=16)
    params, flops = s.candidate_costs("params"), s.candidate_costs("flops")
    sep3, dil5 = DARTS_OPS.index("sep_conv_3x3"), DARTS_OPS.index("dil_conv_5x5")
    cells = [(4, 16), (16, 4)]
    # SepConv: twice (depthwise 3x3, pointwise, affine BN); DilConv: once (5x5).
    assert params["normal/node0"][0, sep3] == sum(2 * (9 * c + c * c + 2 * c) for c, _ in cells)
    assert params["normal/node0"][0, dil5] == sum(25 * c + c * c + 2 * c for c, _ in cells)
    assert flops["normal/node0"][1, sep3] == sum(2 * 2 * (9 * c + c * c) * h * h for c, h in cells)
    # Reduction cells (C=8 from 16x16, C=16 from 8x8): the input edges stride 2.
    red = [(8, 8), (16, 4)]
    assert flops["reduce/node0"][0, dil5] == sum(2 * (25 * c + c * c) * h * h for c, h in red)
    for metric in (params, flops):
        assert (metric["normal/node2"][:, DARTS_OPS.index("none")] == 0).all()
        assert (metric["normal/node2"][:, DARTS_OPS.index("skip_connect")] == 0).all()
        assert (metric["reduce/node0"][:, DARTS_OPS.index("skip_connect")] > 0).all()  # FactorizedReduce


def test_candidate_latency_orders_the_ops_by_their_work() -> None:
    """Timed costs (noisy, so only orderings with a wide margin): the identity is nearly
    free, a 5x5 separable convolution (two stacked depthwise 5x5 + pointwise blocks) costs
    more than a 3x3 one, and ``none`` costs nothing."""
    torch.set_num_threads(1)
    s = space(DataSpec(num_classes=4, channels=3, image_size=16), C=8, layers=3)
    latency = s.candidate_costs("latency")
    assert set(latency) == {g.name for g in s.choice_groups()}
    cost = latency["normal/node0"]
    op = DARTS_OPS.index
    assert tuple(cost.shape) == s.choice_groups()[0].shape and (cost[:, op("none")] == 0).all()
    assert (cost[:, op("skip_connect")] * 5 < cost[:, op("sep_conv_3x3")]).all()
    assert (cost[:, op("sep_conv_3x3")] < cost[:, op("sep_conv_5x5")] * 1.5).all()
    assert s.candidate_costs("latency") is not latency  # a copy: callers may scale it
    with pytest.raises(ValueError, match="latency"):
        s.candidate_costs("watts")


def test_drop_path() -> None:
    s = space(DataSpec(num_classes=4, channels=3, image_size=8))
    net = s.build_supernet()
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(ValueError):
        net.set_drop_path(1.0)
    net.set_drop_path(0.5)
    net.train()
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    b = net(x)
    assert not torch.allclose(a, b)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    child = s.derive(net, s.selection_from_genotype(DARTS_V2))
    child.set_drop_path(0.3)
    child.train()
    torch.manual_seed(0)
    a = child(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, child(x))


def test_drop_path_skips_identity() -> None:
    s = space(C=4, layers=3, ops=("skip_connect",), pool_bn=False)
    net = s.build_supernet().train()
    net.set_drop_path(0.9)
    # Only normal cells: identity edges are never dropped, reductions use FactorizedReduce.
    cell = net.cells[0]
    states = [torch.randn(8, 4, 8, 8), torch.randn(8, 4, 8, 8)]
    node = cell.nodes[0]
    out = node(states, torch.ones(2, 1), node.dense_pairs, 0.9)
    torch.testing.assert_close(out, states[0] + states[1])


@pytest.mark.parametrize("affine", [True, False])
def test_fold_group_preserves_the_output(affine: bool) -> None:
    s = space(C=4, layers=3, affine=affine)
    groups = s.choice_groups()
    net = s.build_supernet()
    x = torch.randn(2, 3, 16, 16)
    settle(net, x)
    net.eval()
    sel = random_selection(groups, seed=9, per_group=3)
    weights = weights_for(groups, sel)
    with torch.no_grad():
        before = net(x, weights)
        for g in groups:
            assert net.fold_group(g.name, weights.values[g.name]) is True
        ones_active = MixingWeights({g.name: torch.ones(g.shape) for g in groups}, weights.active)
        ones_dense = MixingWeights({g.name: torch.ones(g.shape) for g in groups}, {g.name: None for g in groups})
        torch.testing.assert_close(net(x, ones_active), before, atol=1e-5, rtol=0)
        # Zero weights were folded too, so dense ones do not revive dropped candidates.
        torch.testing.assert_close(net(x, ones_dense), before, atol=1e-5, rtol=0)
        unit = {g: [SelectedOp(o.edge, o.op, 1.0) for o in ops] for g, ops in sel.items()}
        torch.testing.assert_close(s.derive(net, unit).eval()(x), before, atol=1e-5, rtol=0)
    with pytest.raises(KeyError):
        net.fold_group("stage0/block0", torch.ones(1, 8))


def test_fold_uses_batch_norm_when_affine() -> None:
    s = space(C=4, layers=3)
    net = s.build_supernet()
    node = net.node_modules("normal/node0")[0]
    sep3 = DARTS_OPS.index("sep_conv_3x3")
    bn = node.edges[0]["sep_conv_3x3"][-1][-1]
    w = torch.zeros(2, len(DARTS_OPS))
    w[0, sep3] = 0.25
    net.fold_group("normal/node0", w)
    torch.testing.assert_close(bn.weight, torch.full_like(bn.weight, 0.25))
    assert node.scale[0, sep3] == 1.0 and node.scale[1, sep3] == 0.0


def test_auxiliary_head() -> None:
    s = space(CIFAR, C=4, layers=3, auxiliary=True)
    net = s.build_supernet()
    assert isinstance(net.auxiliary_head.features[1], nn.AvgPool2d)  # 8x8 features after two reductions
    groups = s.choice_groups()
    weights = weights_for(groups, random_selection(groups, seed=1))
    out = net.train()(torch.randn(2, 3, 32, 32), weights)
    assert isinstance(out, tuple) and out[0].shape == out[1].shape == (2, 10)
    assert net.eval()(torch.randn(2, 3, 32, 32), weights).shape == (2, 10)
    small = space(C=4, layers=3, auxiliary=True).build_supernet().train()
    assert isinstance(small.auxiliary_head.features[1], nn.AdaptiveAvgPool2d)  # 4x4 features
    assert small(torch.randn(2, 3, 16, 16), weights)[1].shape == (2, 4)
    assert isinstance(AuxiliaryHead(8, 3, 8).features[1], nn.AvgPool2d)


def test_selection_validation() -> None:
    s = space()
    sel = random_selection(s.choice_groups(), seed=0)
    bad = dict(sel)
    del bad["reduce/node3"]
    with pytest.raises(ValueError, match="reduce/node3"):
        s.build_child(bad)
    bad = dict(sel, **{"normal/node0": [SelectedOp(5, 0)]})
    with pytest.raises(ValueError, match="out of range"):
        s.build_child(bad)
    with pytest.raises(KeyError, match="normal/node0"):
        s.build_supernet()(torch.randn(1, 3, 16, 16), MixingWeights({}, {}))
