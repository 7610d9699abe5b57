"""Pins the Kornia behaviour that ``dha_plugins.aug`` relies on, so a Kornia upgrade that
changes it fails here, with a name, rather than silently changing the augmentations."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from kornia import enhance
from kornia.augmentation import auto as kauto
from kornia.geometry import transform as KT

from dha_plugins.aug.ops_kornia import rotate_matrix


def _u8_grid(seed: int = 0, shape: tuple[int, ...] = (2, 3, 8, 8)) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).float() / 255


def test_warp_affine_uses_source_to_destination_pixel_matrices_with_centres_on_integers() -> None:
    """Our matrices assume: M maps source to destination pixels, pixel centres at integers."""
    x = _u8_grid()
    shift = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]]).repeat(2, 1, 1)
    out = KT.warp_affine(x, shift, (8, 8), mode="bilinear", padding_mode="zeros", align_corners=True)
    expected = torch.zeros_like(x)
    expected[..., : 7, 2:] = x[..., 1:, :6]  # content moves right by 2, up by 1
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_warp_affine_rotation_about_the_centre_is_counter_clockwise() -> None:
    x = _u8_grid(shape=(1, 3, 9, 9))
    out = KT.warp_affine(x, rotate_matrix(torch.tensor([8.0]) * 3, torch.ones(1), (9, 9)), (9, 9), mode="nearest", align_corners=True)
    # level 24 -> 90 degrees; torch.rot90(k=1) over (H, W) is counter-clockwise on screen.
    torch.testing.assert_close(out, torch.rot90(x, 1, (-2, -1)), atol=1e-6, rtol=0)
    # and it is the matrix Kornia's own helper builds (OpenCV convention)
    angle = torch.tensor([20.0])
    kornia_matrix = KT.get_rotation_matrix2d(torch.tensor([[4.0, 4.0]]), angle, torch.ones(1, 2))
    ours = rotate_matrix(angle * 8 / 30, torch.ones(1), (9, 9))
    torch.testing.assert_close(ours, kornia_matrix, atol=1e-5, rtol=0)


def test_kornia_shear_differs_from_pil_which_is_why_a_matrix_is_used() -> None:
    """``geometry.transform.shear`` shears about the first pixel centre with the opposite sign."""
    x = _u8_grid(shape=(1, 3, 16, 16))
    v = 0.3
    kornia_shear = KT.shear(x, torch.tensor([[v, 0.0]]), mode="nearest", align_corners=True)
    pil_like = TF.affine(x[0], 0.0, [0.0, 0.0], 1.0, [math.degrees(math.atan(v)), 0.0],
                         interpolation=TF.InterpolationMode.NEAREST, center=[0, 0])
    assert (kornia_shear[0] - pil_like).abs().mean() > 0.01


def test_normalize_min_max_is_per_channel_and_zeroes_constant_channels() -> None:
    x = torch.stack([torch.linspace(0.2, 0.6, 16).view(4, 4), torch.full((4, 4), 0.5), torch.linspace(0.1, 0.9, 16).view(4, 4)])[None]
    out = enhance.normalize_min_max(x)
    assert out[0, 0].min() == 0 and out[0, 0].max() == pytest.approx(1.0, abs=1e-5)
    assert torch.all(out[0, 1] == 0)  # PIL leaves it at 0.5: auto_contrast restores it


def test_posterize_takes_per_sample_bits_and_keeps_the_top_bits_of_8bit_levels() -> None:
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(4, 3, 16, 16)
    bits = torch.tensor([1, 2, 3, 4])
    out = enhance.posterize(levels.float() / 255, bits)
    for i, b in enumerate(bits.tolist()):
        mask = ((1 << b) - 1) << (8 - b)
        torch.testing.assert_close(out[i], (levels[i] & mask).float() / 255, atol=0, rtol=0)


def test_posterize_truncates_off_grid_values_which_is_why_we_round_first() -> None:
    almost = torch.full((1, 1, 2, 2), 127.9999 / 255)
    assert enhance.posterize(almost, 1).max() == 0  # 127.9999 reads as 127 -> top bit 0


def test_solarize_inverts_at_or_above_per_sample_thresholds() -> None:
    x = torch.tensor([0.2, 0.5, 0.8]).view(1, 1, 1, 3).repeat(3, 1, 1, 1)
    out = enhance.solarize(x, torch.tensor([0.5, 0.0, 1.01]))
    torch.testing.assert_close(out[0].flatten(), torch.tensor([0.2, 0.5, 0.2]))  # 0.5 >= 0.5 is inverted
    torch.testing.assert_close(out[1].flatten(), torch.tensor([0.8, 0.5, 0.2]))
    torch.testing.assert_close(out[2].flatten(), x[2].flatten())


def test_brightness_contrast_and_saturation_conventions() -> None:
    x = _u8_grid(shape=(2, 3, 6, 6))
    f = torch.tensor([0.5, 1.5])
    # adjust_brightness adds, adjust_brightness_accumulative multiplies (PIL) and clips.
    torch.testing.assert_close(enhance.adjust_brightness(x, f), (x + f.view(2, 1, 1, 1)).clamp(0, 1))
    torch.testing.assert_close(enhance.adjust_brightness_accumulative(x, f), (x * f.view(2, 1, 1, 1)).clamp(0, 1))
    # adjust_contrast multiplies too (so it is not PIL's Contrast)...
    torch.testing.assert_close(enhance.adjust_contrast(x, f), (x * f.view(2, 1, 1, 1)).clamp(0, 1))
    # ...adjust_contrast_with_mean_subtraction blends with the per-image mean gray level.
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean((-2, -1)).view(2, 1, 1, 1)
    expected = (x * f.view(2, 1, 1, 1) + gray * (1 - f.view(2, 1, 1, 1))).clamp(0, 1)
    torch.testing.assert_close(enhance.adjust_contrast_with_mean_subtraction(x, f), expected, atol=1e-6, rtol=0)
    # adjust_saturation_with_gray_subtraction blends with the per-pixel gray image.
    gray_px = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    expected = (x * f.view(2, 1, 1, 1) + gray_px * (1 - f.view(2, 1, 1, 1))).clamp(0, 1)
    torch.testing.assert_close(enhance.adjust_saturation_with_gray_subtraction(x, f), expected, atol=1e-6, rtol=0)


def test_sharpness_uses_pils_kernel_and_keeps_the_border() -> None:
    x = _u8_grid(shape=(2, 3, 7, 7))
    f = torch.tensor([0.0, 1.7])
    out = enhance.sharpness(x, f)
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    blurred = torch.nn.functional.conv2d(x.flatten(0, 1)[:, None], kernel[None, None]).view(2, 3, 5, 5)
    torch.testing.assert_close(out[0, :, 1:-1, 1:-1], blurred[0], atol=1e-6, rtol=0)  # factor 0 = smoothed
    torch.testing.assert_close(out[..., 0, :], x[..., 0, :])
    torch.testing.assert_close(out[..., :, -1], x[..., :, -1])
    expected = (blurred[1] + 1.7 * (x[1, :, 1:-1, 1:-1] - blurred[1])).clamp(0, 1)
    torch.testing.assert_close(out[1, :, 1:-1, 1:-1], expected, atol=1e-6, rtol=0)


def test_equalize_matches_pil_on_8bit_levels_per_channel() -> None:
    u8 = torch.randint(40, 180, (2, 3, 12, 12), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    out = enhance.equalize(u8.float() / 255)
    reference = torch.stack([TF.equalize(img) for img in u8]).float() / 255  # torchvision's uint8 path is PIL's
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=0)


def test_auto_policies_draw_from_the_global_cpu_rng_one_sub_policy_per_call() -> None:
    """``auto.py`` seeds the global CPU RNG inside ``fork_rng``; Kornia draws one sub-policy per call."""
    x = _u8_grid(shape=(8, 3, 16, 16))
    policy = kauto.AutoAugment("cifar10")
    torch.manual_seed(11)
    a = policy(x)
    torch.manual_seed(11)
    b = policy(x)
    assert torch.equal(a, b)
    assert len(list(policy.get_forward_sequence())) == 1
