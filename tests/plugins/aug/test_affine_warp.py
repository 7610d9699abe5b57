"""The fast affine warp against Kornia's ``warp_affine`` and ``torch.linalg.inv``."""

from __future__ import annotations

import pytest
import torch
from kornia.geometry import transform as KT

from dha_plugins.aug.affine_warp import invert_affine, pixel_affine_grid, warp_affine_pixels
from dha_plugins.aug.ops_kornia import AFFINE_MATRICES


def _random_matrices(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    linear = torch.eye(2) + 0.4 * (torch.rand(n, 2, 2, generator=g) - 0.5)
    shift = 6 * (torch.rand(n, 2, 1, generator=g) - 0.5)
    return torch.cat([linear, shift], 2)


def test_invert_affine_matches_linalg_inv() -> None:
    m = _random_matrices(16, 0).double()
    full = torch.cat([m, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(16, 1, 3)], 1)
    torch.testing.assert_close(invert_affine(m), torch.linalg.inv(full)[:, :2], atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(32, 32), (17, 23)])
def test_warp_matches_kornia_warp_affine_on_random_matrices(mode: str, size: tuple[int, int]) -> None:
    images = torch.rand(12, 3, *size, generator=torch.Generator().manual_seed(1))
    m = _random_matrices(12, 2)
    expected = KT.warp_affine(images, m, size, mode=mode, padding_mode="zeros", align_corners=True)
    ours = warp_affine_pixels(images, m, mode)
    if mode == "bilinear":
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    else:  # a source coordinate exactly half-way between pixels may round either way
        assert (ours - expected).abs().gt(1e-5).float().mean() < 1e-3


@pytest.mark.parametrize("name", sorted(AFFINE_MATRICES))
def test_warp_matches_kornia_for_every_geometric_op(name: str) -> None:
    images = torch.rand(9, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    level = torch.linspace(0, 8, 9)
    sign = torch.tensor([1.0, -1.0] * 4 + [1.0])
    m = AFFINE_MATRICES[name](level, sign, (32, 32))
    expected = KT.warp_affine(images, m, (32, 32), mode="bilinear", padding_mode="zeros", align_corners=True)
    torch.testing.assert_close(warp_affine_pixels(images, m), expected, atol=1e-5, rtol=0)


def test_identity_matrices_return_the_input() -> None:
    images = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(warp_affine_pixels(images, torch.eye(2, 3).repeat(4, 1, 1)), images, atol=1e-6, rtol=0)


def test_grid_is_differentiable_in_the_matrices() -> None:
    m = _random_matrices(2, 4).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda mm: pixel_affine_grid(mm, (5, 6)), (m,))
