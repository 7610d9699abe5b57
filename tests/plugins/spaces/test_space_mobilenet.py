"""space=mobilenet: the ProxylessNAS layout, the MobileNetV2 size check, zero ops, folding, costs."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from dha_core.costs import count_params
from dha_core.types import DataSpec, MixingWeights, SelectedOp
from dha_plugins.spaces.mobilenet import MobileNetSpace, MobileNetSpaceConfig
from dha_plugins.spaces.mobilenet.child import ChildBlock
from tests.plugins.spaces.space_helpers import random_selection, settle, weights_for

IMAGENET = DataSpec(num_classes=1000, channels=3, image_size=224)
CIFAR = DataSpec(num_classes=10, channels=3, image_size=32)
NARROW = {"stem_channels": 8, "first_block_channels": 8, "stage_widths": (8, 16, 16), "depths": (2, 2, 1),
          "strides": (1, 2, 1), "kernel_sizes": (3, 5), "expand_ratios": (2, 3), "last_channels": 32}
MOBILENET_V2 = {"stage_widths": (24, 32, 64, 96, 160, 320), "depths": (2, 3, 4, 3, 3, 1),
                "strides": (2, 2, 2, 1, 2, 1)}


def test_mobilenet_v2_layout_has_torchvision_size() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(**MOBILENET_V2), IMAGENET)
    sel = {g.name: [SelectedOp(0, g.ops.index("mbconv_k3_e6"))] for g in s.choice_groups()}
    child = s.build_child(sel)
    assert count_params(child) == 3_504_872
    assert s.selection_cost(sel, "params") == 3_504_872
    tv = pytest.importorskip("torchvision")
    assert count_params(child) == count_params(tv.models.mobilenet_v2())
    # The same block structure too: the expand/depthwise/project layers of every block.
    ours = [tuple(m.weight.shape) for m in child.modules() if isinstance(m, nn.Conv2d)]
    theirs = [tuple(m.weight.shape) for m in tv.models.mobilenet_v2().modules() if isinstance(m, nn.Conv2d)]
    assert ours == theirs


def test_default_layout_follows_proxylessnas() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(), IMAGENET)
    groups = s.choice_groups()
    assert len(groups) == 21
    assert s.layout.stem_stride == 2 and s.layout.stem_channels == 32 and s.layout.first_channels == 16
    assert [b.c_out for b in s.layout.blocks if b.index == 0] == [24, 40, 80, 96, 192, 320]
    assert [b.stride for b in s.layout.blocks if b.index == 0] == [2, 2, 2, 1, 2, 1]
    mbconvs = tuple(f"mbconv_k{k}_e{e}" for k in (3, 5, 7) for e in (3, 6))
    for g, b in zip(groups, s.layout.blocks, strict=True):
        assert g.name == f"stage{b.stage}/block{b.index}" and g.keep == 1 and g.shape[0] == 1
        # Only shape-keeping blocks get zero: never a stage's first block (even stage 3's, which
        # has stride 1 but widens 80 -> 96).
        assert g.ops == (mbconvs + ("zero",) if b.residual else mbconvs)
        assert b.residual == (b.index > 0)
    assert s.layout.last_channels == 1280


def test_small_input_stem_keeps_resolution() -> None:
    auto = MobileNetSpace(MobileNetSpaceConfig(**NARROW), CIFAR)
    assert auto.layout.stem_stride == 1
    forced = MobileNetSpace(MobileNetSpaceConfig(**NARROW, stem="imagenet"), CIFAR)
    assert forced.layout.stem_stride == 2
    assert MobileNetSpace(MobileNetSpaceConfig(stem="small"), IMAGENET).layout.stem_stride == 1
    sizes = []
    for s in (auto, forced):
        net = s.build_supernet().eval()
        net.head.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[-1]))
        with torch.no_grad():
            assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert sizes == [16, 8]


def test_full_depth_default_space_runs_on_32x32() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(width_mult=0.25), CIFAR)
    groups = s.choice_groups()
    net = s.build_supernet().eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 32, 32), weights_for(groups, random_selection(groups, seed=0)))
    assert out.shape == (1, 10)


def test_width_multiplier_rounds_to_multiples_of_eight() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(width_mult=0.5), IMAGENET)
    assert [b.c_out for b in s.layout.blocks if b.index == 0] == [16, 24, 40, 48, 96, 160]
    assert s.layout.stem_channels == 16 and s.layout.last_channels == 1280


def test_resolution_overrides_cost_input() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(**NARROW, resolution=64, stem="small"), CIFAR)
    assert s.example_input().shape == (1, 3, 64, 64)
    base = MobileNetSpace(MobileNetSpaceConfig(**NARROW, stem="small"), CIFAR)
    sel = random_selection(s.choice_groups(), seed=1)
    assert s.selection_cost(sel, "flops") == pytest.approx(4 * base.selection_cost(sel, "flops"), rel=0.01)


def test_zero_skips_the_block() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(**NARROW), CIFAR)
    groups = s.choice_groups()
    sel = {g.name: [SelectedOp(0, g.ops.index("zero") if "zero" in g.ops else 0)] for g in groups}
    child = s.build_child(sel)
    skipped = [b for b, g in zip(child.blocks, groups, strict=True) if "zero" in g.ops]
    assert skipped and all(isinstance(b, ChildBlock) and count_params(b) == 0 for b in skipped)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(skipped[-1](x), x)


def test_sparse_forward_computes_only_active_candidates() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(**NARROW), CIFAR)
    groups = s.choice_groups()
    net = s.build_supernet()
    called = []
    for g, block in zip(groups, net.blocks, strict=True):
        for name, op in block.ops.items():
            op.register_forward_hook(lambda m, i, o, key=(g.name, name): called.append(key))
    sel = random_selection(groups, seed=2)
    net(torch.randn(2, 3, 16, 16), weights_for(groups, sel))
    assert sorted(called) == sorted((g, groups[i].ops[o.op]) for i, (g, ops) in enumerate(sel.items())
                                    for o in ops if groups[i].ops[o.op] != "zero")


def test_fold_group_preserves_the_output() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(**NARROW), CIFAR)
    groups = s.choice_groups()
    net = s.build_supernet()
    x = torch.randn(2, 3, 16, 16)
    settle(net, x)
    net.eval()
    values = {g.name: torch.rand(g.shape) * (torch.rand(g.shape) > 0.5) for g in groups}
    weights = MixingWeights(values, {g.name: None for g in groups})
    with torch.no_grad():
        before = net(x, weights)
        for g in groups:
            assert net.fold_group(g.name, values[g.name])
        after = net(x, MixingWeights({g.name: torch.ones(g.shape) for g in groups}, {g.name: None for g in groups}))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    with pytest.raises(KeyError):
        net.fold_group("normal/node0", torch.ones(1, 5))


def test_candidate_costs_match_hand_counts() -> None:
    s = MobileNetSpace(MobileNetSpaceConfig(**NARROW), CIFAR)
    params, flops = s.candidate_costs("params"), s.candidate_costs("flops")
    g = s.choice_groups()[2]  # stage1/block0: 8 -> 16 channels, stride 2, input 32x32 (small stem)
    b = s.layout.blocks[2]
    assert (b.c_in, b.c_out, b.stride, b.in_size) == (8, 16, 2, 32)
    k, e = 5, 3
    hidden = 8 * e
    o = g.ops.index(f"mbconv_k{k}_e{e}")
    expected_params = 8 * hidden + 2 * hidden + k * k * hidden + 2 * hidden + hidden * 16 + 2 * 16
    assert params[g.name][0, o] == expected_params
    expected_flops = 2 * (8 * hidden * 32 * 32 + k * k * hidden * 16 * 16 + hidden * 16 * 16 * 16)
    assert flops[g.name][0, o] == expected_flops
    zero_group = s.choice_groups()[1]
    assert params[zero_group.name][0, zero_group.ops.index("zero")] == 0


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="same length"):
        MobileNetSpaceConfig(stage_widths=(8, 16), depths=(1,), strides=(1, 2))
    with pytest.raises(ValidationError):
        MobileNetSpaceConfig(kernel_sizes=(4,))
    with pytest.raises(ValidationError):
        MobileNetSpaceConfig(strides=(3, 1, 1, 1, 1, 1))


def test_candidate_latency_orders_the_blocks_by_their_work() -> None:
    """Timed costs (noisy, so only an ordering with a wide margin: about 2x here)."""
    torch.set_num_threads(1)
    s = MobileNetSpace(MobileNetSpaceConfig(**NARROW), CIFAR)
    latency = s.candidate_costs("latency")
    assert set(latency) == {g.name for g in s.choice_groups()}
    g = s.choice_groups()[2]
    cost = latency[g.name]
    assert tuple(cost.shape) == g.shape and (cost > 0).all()
    assert cost[0, g.ops.index("mbconv_k3_e2")] < cost[0, g.ops.index("mbconv_k5_e3")]
