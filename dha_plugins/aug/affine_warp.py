"""Batched affine warp with per-sample pixel-coordinate matrices, on ``grid_sample``.

It computes what ``kornia.geometry.transform.warp_affine(..., align_corners=True,
padding_mode="zeros")`` computes (``tests/plugins/aug`` checks the two agree), but builds the
sampling grid directly: the 2x3 matrices are inverted in closed form and the grid is an
outer sum of two coordinate ramps. Kornia goes through generic 3x3 homography
normalisation and ``F.affine_grid``, which on CPU costs about three times the
``grid_sample`` call itself for 32x32 images; this is where most of ``aug=kornia``'s
geometric time went (see ``docs/augmentation.md``).

Example:
    >>> shift = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]])
    >>> warp_affine_pixels(torch.rand(1, 3, 8, 8), shift).shape
    torch.Size([1, 3, 8, 8])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["invert_affine", "pixel_affine_grid", "warp_affine_pixels"]


def invert_affine(matrices: torch.Tensor) -> torch.Tensor:
    """Inverts ``(N, 2, 3)`` affine matrices in closed form.

    Args:
        matrices: ``(N, 2, 3)`` invertible affine maps ``p -> A p + t``.

    Returns:
        ``(N, 2, 3)`` matrices of the inverse maps ``p -> A^-1 p - A^-1 t``.
    """
    a, b, c, d = matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 1, 0], matrices[:, 1, 1]
    det = a * d - b * c
    linear = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], 1) / det[:, None, None]
    return torch.cat([linear, -linear @ matrices[:, :, 2:]], 2)


def pixel_affine_grid(matrices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The ``grid_sample`` grid (``align_corners=True``) of source-to-destination pixel maps.

    Pixel centres are at integer coordinates, ``(0, 0)`` being the centre of the top-left
    pixel, as in Kornia's ``warp_affine(..., align_corners=True)``.

    Args:
        matrices: ``(N, 2, 3)`` maps from source to destination pixel coordinates ``(x, y)``.
        size: Output ``(H, W)``.

    Returns:
        ``(N, H, W, 2)`` normalised source coordinates of every destination pixel (a
        non-contiguous view: ``grid_sample`` reads it through its strides).
    """
    height, width = size
    dtype, device = matrices.dtype, matrices.device
    inverse = invert_affine(matrices)
    # Normalise each output coordinate to [-1, 1]: u = 2 x / (W - 1) - 1 (align_corners).
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=dtype, device=device)
    inverse = inverse * scale[None, :, None]
    inverse[:, :, 2] -= 1.0
    xs = torch.arange(width, dtype=dtype, device=device)
    ys = torch.arange(height, dtype=dtype, device=device)[:, None]
    # (N, 2, H, W): the outer sum of an x ramp and a y ramp per output channel, then a view.
    grid = inverse[:, :, 0, None, None] * xs + (inverse[:, :, 1, None, None] * ys + inverse[:, :, 2, None, None])
    return grid.permute(0, 2, 3, 1)


def warp_affine_pixels(images: torch.Tensor, matrices: torch.Tensor, mode: str = "bilinear",
                       fill: Sequence[float] | None = None) -> torch.Tensor:
    """Warps each image by its own source-to-destination pixel matrix.

    Args:
        images: ``(N, C, H, W)`` float batch.
        matrices: ``(N, 2, 3)`` matrices (any device; moved next to the images).
        mode: ``"bilinear"`` or ``"nearest"``.
        fill: Per-channel value shown where the source lies outside the image (PIL's
            ``fillcolor``); ``None`` fills zeros. Border pixels blend with it as sampled.

    Returns:
        The warped ``(N, C, H, W)`` batch.
    """
    matrices = matrices.to(device=images.device, dtype=images.dtype, non_blocking=True)
    grid = pixel_affine_grid(matrices, (int(images.shape[-2]), int(images.shape[-1])))
    if fill is None:
        return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=True)
    # Warp a ones channel along: where it comes back below 1 the source was (partly) outside.
    ones = images.new_ones(images.shape[0], 1, *images.shape[-2:])
    warped = F.grid_sample(torch.cat([images, ones], 1), grid, mode=mode, padding_mode="zeros", align_corners=True)
    value = torch.as_tensor(list(fill), dtype=images.dtype).to(images.device, non_blocking=True).view(1, -1, 1, 1)
    return warped[:, :-1] + (1.0 - warped[:, -1:]) * value
