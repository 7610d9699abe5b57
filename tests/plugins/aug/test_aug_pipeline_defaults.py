"""The policy's pipeline as the authors run it: mean fill of the geometric ops, no crop,
and a strength warm-up measured as distance from the identity."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from dha_core.types import DataSpec
from dha_plugins.aug import op_levels
from dha_plugins.aug.affine_warp import warp_affine_pixels
from dha_plugins.aug.kornia_policy import KorniaPolicy, KorniaPolicyConfig
from dha_plugins.aug.policy import AugPlan
from dha_plugins.aug.torchvision_policy import TorchvisionPolicy, TorchvisionPolicyConfig

MEAN = (0.2, 0.5, 0.8)
SPEC = DataSpec(num_classes=10, image_size=16, mean=MEAN)


def test_warp_fills_the_uncovered_region_with_the_given_value() -> None:
    images = torch.rand(2, 3, 16, 16)
    shift = torch.tensor([[1.0, 0.0, 8.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3)  # 8 pixels to the right
    out = warp_affine_pixels(images, shift, "nearest", fill=MEAN)
    assert torch.allclose(out[:, :, :, :8], torch.tensor(MEAN).view(1, 3, 1, 1).expand(2, 3, 16, 8))
    assert torch.equal(out[:, :, :, 8:], images[:, :, :, :8])


def test_warp_fill_matches_torchvision_affine_fill() -> None:
    image = torch.rand(3, 16, 16)
    ours = warp_affine_pixels(image[None], torch.tensor([[[1.0, 0.0, -5.0], [0.0, 1.0, 3.0]]]), "nearest", fill=MEAN)
    ref = TF.affine(image, angle=0.0, translate=[-5, 3], scale=1.0, shear=[0.0, 0.0],
                    interpolation=TF.InterpolationMode.NEAREST, fill=list(MEAN))
    assert torch.allclose(ours[0], ref, atol=1e-6)


@pytest.mark.parametrize("op", sorted(op_levels.GEOMETRIC_OPS))
def test_backends_agree_on_mean_filled_geometric_ops(op: str) -> None:
    ops = [op, "Identity"]
    kornia = KorniaPolicy(KorniaPolicyConfig(ops=ops, interpolation="nearest"), SPEC)
    tv = TorchvisionPolicy(TorchvisionPolicyConfig(ops=ops, interpolation="nearest"), SPEC)
    images = torch.rand(4, 3, 16, 16)
    plan = AugPlan.fixed(ops, [[op, "Identity"]] * 4, levels=8.0, signs=[[1.0, 1.0], [-1.0, 1.0]] * 2)
    a, b = kornia.apply_plan(images, plan), tv.apply_plan(images, plan)
    assert (a - b).abs().mean() < 0.02
    # The exposed corners hold the mean, not black.
    if op.startswith("Translate"):
        assert torch.allclose(a[0, :, 0, 0], torch.tensor(MEAN)) or torch.allclose(a[0, :, -1, -1], torch.tensor(MEAN))


def test_policy_has_no_random_crop_by_default() -> None:
    assert KorniaPolicyConfig().crop is False
    assert TorchvisionPolicyConfig().crop is False


def test_zero_strength_is_the_identity_for_every_op() -> None:
    policy = KorniaPolicy(KorniaPolicyConfig(ops=list(op_levels.ALL_OPS), strength_warmup=0.5, flip=False), SPEC)
    policy.on_progress(0.0)
    images = torch.rand(64, 3, 16, 16).mul(255).round().div(255)
    out, plan = policy(images, torch.Generator().manual_seed(0))
    applied = {policy.op_names[int(o)] for o in plan.ops.flatten()}
    assert applied <= set(op_levels.ALL_OPS) - op_levels.UNSCALED_OPS
    assert torch.allclose(out, images, atol=1.5 / 255)


def test_strength_moves_levels_towards_identity_not_towards_zero() -> None:
    """Posterize at level 0 keeps 1 bit: a weak Posterize must keep more bits, not fewer."""
    config = KorniaPolicyConfig(ops=["Posterize", "Solarize", "Contrast", "Rotate"], policy="single",
                                strength_warmup=1.0, strength_max=1.0)
    policy = KorniaPolicy(config, SPEC)
    g = torch.Generator().manual_seed(1)
    policy.on_progress(0.25)
    plan = policy.sample_plan(512, g)
    for name, identity in (("Posterize", 7 * 8 / 3), ("Solarize", 8.0), ("Contrast", 4.0), ("Rotate", 0.0)):
        levels = plan.levels[plan.ops[:, 0] == policy.op_names.index(name), 0]
        # level = id + 0.25 * (U(0, 8) - id): within a quarter of the range around the identity.
        assert ((levels - identity).abs() <= 0.25 * max(identity, 8 - identity) + 1e-5).all(), name
    assert int(op_levels.posterize_bits(torch.tensor(7 * 8 / 3))) == 8
    policy.on_progress(1.0)
    assert policy.strength == 1.0


def test_strength_max_caps_the_warm_up_and_halves_the_distance_from_identity() -> None:
    config = KorniaPolicyConfig(ops=["Rotate", "Equalize", "Identity"], policy="single", strength_warmup=0.5,
                                strength_max=0.5)
    policy = KorniaPolicy(config, SPEC)
    assert policy.strength == 0.5  # no progress reported: the capped strength
    policy.on_progress(0.25)
    assert policy.strength == pytest.approx(0.25)
    policy.on_progress(1.0)
    assert policy.strength == 0.5
    plan = policy.sample_plan(4096, torch.Generator().manual_seed(0))
    rotate = plan.levels[plan.ops[:, 0] == policy.op_names.index("Rotate"), 0]
    assert rotate.max() <= 4.0 + 1e-5 and rotate.max() > 3.5  # half of U(0, 8), Rotate's identity is 0
    # Equalize has no level: it is replaced by Identity about half of the time.
    drawn = (plan.index == policy.op_names.index("Equalize")).sum()
    kept = (plan.ops[:, 0] == policy.op_names.index("Equalize")).sum()
    assert 0.4 < kept / drawn < 0.6
