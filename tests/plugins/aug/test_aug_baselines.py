"""Fixed ops (crop, flip, cutout), ``aug=standard``, the Kornia auto policies, and registration."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from dha_core.interfaces import AugmentationPolicy
from dha_core.registry import get_registry
from dha_core.types import DataSpec
from dha_plugins.aug.fixed_ops import FixedOps, FixedOpsConfig, random_crop_flip, random_cutout

SPEC = DataSpec(num_classes=10, channels=3, image_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))


def _images(b: int = 8, size: int = 16) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_crop_flip_equals_per_sample_pad_crop_then_flip(pad_mode: str) -> None:
    x = _images(32)
    out = random_crop_flip(x, 3, True, _gen(1), pad_mode)
    g = _gen(1)  # the same draws, in the documented order: offsets (B, 2), then flips (B,)
    offsets = torch.randint(0, 7, (32, 2), generator=g)
    flips = torch.rand(32, generator=g) < 0.5
    padded = F.pad(x, (3, 3, 3, 3), mode=pad_mode)
    for i in range(32):
        oy, ox = offsets[i].tolist()
        crop = padded[i, :, oy : oy + 16, ox : ox + 16]
        assert torch.equal(out[i], crop.flip(-1) if flips[i] else crop)
    assert 0 < int(flips.sum()) < 32


def test_crop_flip_without_either_is_the_identity() -> None:
    x = _images()
    assert random_crop_flip(x, 0, False, _gen(0)) is x


def test_cutout_fills_one_clipped_square_per_sample() -> None:
    x = _images(64, 12)
    out = random_cutout(x, 4, _gen(2), fill=(0.25, 0.5, 0.75))
    changed = (out != x).any(1)  # (B, H, W)
    fill = torch.tensor([0.25, 0.5, 0.75]).view(3, 1)
    for i in range(64):
        ys, xs = changed[i].nonzero(as_tuple=True)
        assert 0 < ys.numel() <= 16
        assert ys.max() - ys.min() < 4 and xs.max() - xs.min() < 4
        assert torch.equal(out[i][:, changed[i]], fill.expand(3, ys.numel()))
    assert (changed.flatten(1).sum(1) < 16).any()  # some squares are clipped at the border
    assert random_cutout(x, 0, _gen(2)) is x


def test_fixed_ops_defaults_follow_the_data_spec() -> None:
    ops = FixedOps(FixedOpsConfig(cutout=8), image_size=64, mean=(0.1, 0.2, 0.3))
    assert ops.padding == 8
    assert ops.cutout_fill == (0.1, 0.2, 0.3)
    assert FixedOps(FixedOpsConfig(cutout_fill="zero"), mean=(0.1, 0.2, 0.3)).cutout_fill == (0.0,)


# ---------------------------------------------------------------------------- registry and baselines


AUG_NAMES = ["none", "standard", "kornia", "torchvision", "autoaugment", "randaugment", "trivialaugment"]


def _build(name: str, **fields) -> AugmentationPolicy:
    component = get_registry().get("aug", name)
    return component.create(component.config(**fields), data_spec=SPEC)


def test_every_augmentation_is_registered_with_a_config() -> None:
    registry = get_registry()
    assert set(AUG_NAMES) <= set(registry.names("aug"))
    for name in AUG_NAMES:
        component = registry.get("aug", name)
        assert component.config().name == name
        assert component.description
    with pytest.raises(ValidationError):
        registry.get("aug", "kornia").config(not_a_field=1)
    assert registry.get("aug", "kornia").config(temperature=0.3).temperature == 0.3


def test_standard_with_everything_off_returns_the_input() -> None:
    aug = _build("standard", crop=False, flip=False, cutout=0)
    x = _images()
    y, plan = aug(x, _gen(0))
    assert torch.equal(y, x) and plan is None


def test_auto_policies_change_images_and_accept_groups() -> None:
    x = _images(16)
    for name in ("autoaugment", "randaugment", "trivialaugment"):
        aug = _build(name, crop=False, flip=False, groups=4)
        outs = [aug(x, _gen(s))[0] for s in range(6)]
        assert any(not torch.equal(o, x) for o in outs), name


def _spy_policy_calls(aug: AugmentationPolicy) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Records ``(input, output)`` of every call of the wrapped Kornia policy module."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    aug.policy.register_forward_hook(lambda _m, args, out: calls.append((args[0], out)))
    return calls


@pytest.mark.parametrize("name", ["autoaugment", "randaugment", "trivialaugment"])
@pytest.mark.parametrize(
    ("batch", "groups", "sizes"),
    [
        (16, 1, [16]),
        (16, 4, [4, 4, 4, 4]),
        (10, 4, [3, 3, 2, 2]),  # uneven: still four chunks
        (6, 4, [2, 2, 1, 1]),  # Tensor.chunk would give only three chunks here
        (3, 4, [1, 1, 1]),  # fewer samples than groups: one draw per sample, no empty call
    ],
)
def test_groups_call_the_kornia_policy_once_per_chunk(
    name: str, batch: int, groups: int, sizes: list[int] | None
) -> None:
    # Kornia draws one sub-policy per call, so "groups" is only real if each chunk is its own call.
    aug = _build(name, crop=False, flip=False, cutout=0, groups=groups)
    calls = _spy_policy_calls(aug)
    x = _images(batch)
    for with_generator in (True, False):  # both code paths (seeded fork and global RNG)
        calls.clear()
        y, _ = aug(x, _gen(3) if with_generator else None)
        got = [int(inp.shape[0]) for inp, _ in calls]
        assert len(got) == min(groups, batch), got
        if sizes is not None:
            assert got == sizes
        # The chunks are the batch in order, and the output is the chunks' outputs in order.
        assert torch.equal(torch.cat([inp for inp, _ in calls]), x)
        assert torch.equal(y, torch.cat([out for _, out in calls]))


@pytest.mark.parametrize(("name", "bad"), [("randaugment", {"m": 30}), ("randaugment", {"n": 0}),
                                          ("autoaugment", {"policy": "mnist"}), ("trivialaugment", {"groups": 0}),
                                          ("standard", {"cutout": -1})])
def test_baseline_configs_reject_bad_values(name: str, bad: dict) -> None:
    with pytest.raises(ValidationError):
        get_registry().get("aug", name).config(**bad)
