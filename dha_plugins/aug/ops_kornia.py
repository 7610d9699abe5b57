"""Batched augmentation ops on Kornia: the functional core of ``aug=kornia``.

Every op has the signature ``op(images, level, sign, mode) -> images`` where ``images`` is a
``(N, C, H, W)`` float batch in ``[0, 1]``, ``level`` a ``(N,)`` tensor of levels in ``[0, 8]``
(see :mod:`dha_plugins.aug.op_levels`), ``sign`` a ``(N,)`` tensor of ``+-1`` and ``mode`` the
interpolation of geometric ops (``"bilinear"`` or ``"nearest"``). Each sample gets its own
parameter, so one call covers every sample that drew the op.

The definitions follow PIL (the authors' code) and therefore ``torchvision``'s functional
ops; where Kornia's function of the same name means something else, the op uses the Kornia
function that matches PIL instead, and says so. ``tests/plugins/aug`` pins each choice. The
geometric ops warp through :mod:`dha_plugins.aug.affine_warp`, which equals Kornia's
``warp_affine`` at a third of its CPU cost.

Example:
    >>> x = torch.rand(4, 3, 8, 8)
    >>> KORNIA_OPS["Rotate"](x, torch.full((4,), 8.0), torch.ones(4), "bilinear").shape
    torch.Size([4, 3, 8, 8])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from kornia import enhance

from dha_plugins.aug import op_levels as L
from dha_plugins.aug.affine_warp import warp_affine_pixels

__all__ = [
    "KorniaOp",
    "KORNIA_OPS",
    "identity",
    "auto_contrast",
    "equalize",
    "invert",
    "rotate",
    "posterize",
    "solarize",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "AFFINE_MATRICES",
    "rotate_matrix",
    "shear_x_matrix",
    "shear_y_matrix",
    "translate_x_matrix",
    "translate_y_matrix",
]

KorniaOp = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], torch.Tensor]
AffineMatrices = Callable[[torch.Tensor, torch.Tensor, tuple[int, int]], torch.Tensor]
"""``(level, sign, (H, W)) -> (N, 2, 3)`` source-to-destination matrices of a geometric op."""


def _per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Moves a ``(N,)`` parameter next to the images (non-blocking: it comes from CPU sampling)."""
    return values.to(device=images.device, dtype=images.dtype, non_blocking=True)


def identity(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Returns ``images`` itself (the policy skips the call; this is for completeness).

    Args:
        images: ``(N, C, H, W)`` batch.
        level: Ignored.
        sign: Ignored.
        mode: Ignored.

    Returns:
        ``images`` unchanged.
    """
    return images


def auto_contrast(
    images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear"
) -> torch.Tensor:
    """Stretches each channel of each image to ``[0, 1]`` (PIL ``autocontrast``, no cutoff).

    ``kornia.enhance.normalize_min_max`` maps a constant channel to 0, whereas PIL and
    torchvision leave it unchanged; such channels are restored here.

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: Ignored (no magnitude).
        sign: Ignored.
        mode: Ignored.

    Returns:
        The stretched batch.
    """
    flat = images.flatten(-2)
    constant = (flat.amax(-1) == flat.amin(-1))[..., None, None]
    return torch.where(constant, images, enhance.normalize_min_max(images).clamp_(0.0, 1.0))


def equalize(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Histogram-equalizes each channel (PIL ``equalize`` on the 8-bit levels).

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: Ignored (no magnitude).
        sign: Ignored.
        mode: Ignored.

    Returns:
        The equalized batch.
    """
    # Rounded first: Kornia bins by truncating x * 255 (see op_levels.round_to_8bit).
    return enhance.equalize(L.round_to_8bit(images))


def invert(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Returns ``1 - images`` (the optional 15th op).

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: Ignored (no magnitude).
        sign: Ignored.
        mode: Ignored.

    Returns:
        The inverted batch.
    """
    return enhance.invert(images)


def posterize(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Keeps the top ``int(3 * level / 8 + 1)`` bits of each 8-bit channel value.

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: ``(N,)`` levels.
        sign: Ignored (unsigned).
        mode: Ignored.

    Returns:
        The posterized batch (values on the 8-bit grid).
    """
    bits = L.posterize_bits(level).to(images.device, non_blocking=True)
    # Rounded first: Kornia truncates x * 255 (see op_levels.round_to_8bit).
    return enhance.posterize(L.round_to_8bit(images), bits)


def solarize(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Inverts the pixels at or above ``256 * level / 8`` (0-255 scale).

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: ``(N,)`` levels.
        sign: Ignored (unsigned).
        mode: Ignored.

    Returns:
        The solarized batch.
    """
    return enhance.solarize(images, _per_sample(L.solarize_threshold(level), images))


def color(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Blends each image with its grayscale version by ``0.1 + 1.8 * level / 8`` (PIL ``Color``).

    ``kornia.enhance.adjust_saturation`` scales S in HSV, which is not PIL's definition;
    ``adjust_saturation_with_gray_subtraction`` is.

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: ``(N,)`` levels.
        sign: Ignored (unsigned).
        mode: Ignored.

    Returns:
        The adjusted batch.
    """
    return enhance.adjust_saturation_with_gray_subtraction(images, _per_sample(L.enhance_factor(level), images))


def contrast(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Blends each image with its mean gray level by ``0.1 + 1.8 * level / 8`` (PIL ``Contrast``).

    ``kornia.enhance.adjust_contrast`` is a plain multiplication, which is PIL's
    *Brightness*; ``adjust_contrast_with_mean_subtraction`` is PIL's Contrast.

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: ``(N,)`` levels.
        sign: Ignored (unsigned).
        mode: Ignored.

    Returns:
        The adjusted batch.
    """
    return enhance.adjust_contrast_with_mean_subtraction(images, _per_sample(L.enhance_factor(level), images))


def brightness(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Multiplies each image by ``0.1 + 1.8 * level / 8`` and clips (PIL ``Brightness``).

    ``kornia.enhance.adjust_brightness`` *adds* its factor; the multiplicative PIL
    definition is ``adjust_brightness_accumulative``.

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: ``(N,)`` levels.
        sign: Ignored (unsigned).
        mode: Ignored.

    Returns:
        The adjusted batch.
    """
    return enhance.adjust_brightness_accumulative(images, _per_sample(L.enhance_factor(level), images))


def sharpness(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Blends with a 3x3 smoothed copy by ``0.1 + 1.8 * level / 8`` (PIL ``Sharpness``).

    Args:
        images: ``(N, C, H, W)`` batch in ``[0, 1]``.
        level: ``(N,)`` levels.
        sign: Ignored (unsigned).
        mode: Ignored.

    Returns:
        The adjusted batch; the one-pixel border is left as is, as in PIL.
    """
    return enhance.sharpness(images, _per_sample(L.enhance_factor(level), images))


def _affine(n: int) -> torch.Tensor:
    """``n`` identity ``2 x 3`` matrices (float32, CPU, where the levels are)."""
    return torch.eye(2, 3).repeat(n, 1, 1)


def rotate_matrix(level: torch.Tensor, sign: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Source-to-destination matrices of :func:`rotate` (counter-clockwise about the centre).

    Args:
        level: ``(N,)`` levels.
        sign: ``(N,)`` signs.
        size: ``(H, W)``.

    Returns:
        ``(N, 2, 3)`` matrices in Kornia's pixel coordinates (pixel centres at integers).
    """
    height, width = size
    angle = torch.deg2rad(sign * L.rotate_degrees(level.float()))
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    matrix = _affine(level.shape[0])
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2] = cos, sin, cx - cos * cx - sin * cy
    matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2] = -sin, cos, cy + sin * cx - cos * cy
    return matrix


def shear_x_matrix(level: torch.Tensor, sign: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Source-to-destination matrices of :func:`shear_x`.

    PIL's ``transform(AFFINE, (1, v, 0, 0, 1, 0))`` samples ``out(x, y) = in(x + v * y, y)``
    with the origin at the top-left *corner*, half a pixel before Kornia's origin (the
    centre of the top-left pixel). In Kornia coordinates that is ``x_src = x + v * (y + 0.5)``,
    so the forward matrix is ``[[1, -v, -v / 2], [0, 1, 0]]``. (Kornia's own
    ``geometry.transform.shear`` uses the opposite sign and the pixel-centre origin.)

    Args:
        level: ``(N,)`` levels.
        sign: ``(N,)`` signs.
        size: ``(H, W)`` (unused: the shear does not depend on it).

    Returns:
        ``(N, 2, 3)`` matrices.
    """
    v = sign * L.shear_factor(level.float())
    matrix = _affine(level.shape[0])
    matrix[:, 0, 1], matrix[:, 0, 2] = -v, -0.5 * v
    return matrix


def shear_y_matrix(level: torch.Tensor, sign: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Source-to-destination matrices of :func:`shear_y` (:func:`shear_x_matrix` transposed).

    Args:
        level: ``(N,)`` levels.
        sign: ``(N,)`` signs.
        size: ``(H, W)`` (unused).

    Returns:
        ``(N, 2, 3)`` matrices.
    """
    v = sign * L.shear_factor(level.float())
    matrix = _affine(level.shape[0])
    matrix[:, 1, 0], matrix[:, 1, 2] = -v, -0.5 * v
    return matrix


def translate_x_matrix(level: torch.Tensor, sign: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Source-to-destination matrices of :func:`translate_x` (content moves right for ``+``).

    Args:
        level: ``(N,)`` levels.
        sign: ``(N,)`` signs.
        size: ``(H, W)``; the shift is a fraction of ``W``.

    Returns:
        ``(N, 2, 3)`` matrices.
    """
    matrix = _affine(level.shape[0])
    matrix[:, 0, 2] = sign * L.translate_fraction(level.float()) * size[1]
    return matrix


def translate_y_matrix(level: torch.Tensor, sign: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Source-to-destination matrices of :func:`translate_y` (content moves down for ``+``).

    Args:
        level: ``(N,)`` levels.
        sign: ``(N,)`` signs.
        size: ``(H, W)``; the shift is a fraction of ``H``.

    Returns:
        ``(N, 2, 3)`` matrices.
    """
    matrix = _affine(level.shape[0])
    matrix[:, 1, 2] = sign * L.translate_fraction(level.float()) * size[0]
    return matrix


AFFINE_MATRICES: dict[str, AffineMatrices] = {
    "Rotate": rotate_matrix,
    "ShearX": shear_x_matrix,
    "ShearY": shear_y_matrix,
    "TranslateX": translate_x_matrix,
    "TranslateY": translate_y_matrix,
}
"""Geometric op name -> its per-sample affine matrices (source to destination, pixel centres on
integers, as Kornia's ``warp_affine(..., align_corners=True)``);
:func:`~dha_plugins.aug.affine_warp.warp_affine_pixels` applies them."""


def _size(images: torch.Tensor) -> tuple[int, int]:
    """``(H, W)`` of a batch."""
    return int(images.shape[-2]), int(images.shape[-1])


_WARP_OP_DOC = """{summary}

    Args:
        images: ``(N, C, H, W)`` batch.
        level: ``(N,)`` levels.
        sign: ``(N,)`` signs.
        mode: ``"bilinear"`` or ``"nearest"``.

    Returns:
        The warped batch; uncovered pixels are 0.
    """


def _warp_op(name: str, matrices: AffineMatrices, summary: str) -> KorniaOp:
    """The geometric op that warps each image by ``matrices`` of its level and sign.

    Every geometric op is the same call with its own matrices, so they are made here
    rather than written out five times.

    Args:
        name: The function name the op reports (``__name__``).
        matrices: One of the ``*_matrix`` functions above.
        summary: The first line of the op's docstring.

    Returns:
        The op, with the signature of :data:`KorniaOp` and ``mode="bilinear"`` by default.
    """

    def op(images: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, mode: str = "bilinear",
           fill: Sequence[float] | None = None) -> torch.Tensor:
        # The matrices are built on CPU, where the levels are sampled; the warp moves them over.
        return warp_affine_pixels(images, matrices(level.cpu(), sign.cpu(), _size(images)), mode, fill)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = _WARP_OP_DOC.format(summary=summary)
    return op


rotate = _warp_op(
    "rotate", rotate_matrix, "Rotates counter-clockwise by ``sign * 30 * level / 8`` degrees about the image centre."
)
shear_x = _warp_op(
    "shear_x", shear_x_matrix, "Shears horizontally by ``sign * 0.3 * level / 8`` about the top-left corner (PIL)."
)
shear_y = _warp_op(
    "shear_y", shear_y_matrix, "Shears vertically by ``sign * 0.3 * level / 8`` about the top-left corner (PIL)."
)
translate_x = _warp_op(
    "translate_x", translate_x_matrix,
    "Moves the content right by ``sign * 0.45 * level / 8`` of the width (sub-pixel).",
)
translate_y = _warp_op(
    "translate_y", translate_y_matrix,
    "Moves the content down by ``sign * 0.45 * level / 8`` of the height (sub-pixel).",
)


KORNIA_OPS: dict[str, KorniaOp] = {
    "AutoContrast": auto_contrast,
    "Equalize": equalize,
    "Rotate": rotate,
    "Posterize": posterize,
    "Solarize": solarize,
    "Color": color,
    "Contrast": contrast,
    "Brightness": brightness,
    "Sharpness": sharpness,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Identity": identity,
    "Invert": invert,
}
"""Op name -> batched Kornia implementation; keys equal :data:`op_levels.ALL_OPS`."""
