"""Per-image augmentation ops on ``torchvision.transforms.v2.functional``: the core of ``aug=torchvision``.

Every op has the signature ``op(image, level, sign, interpolation) -> image`` where ``image``
is one ``(C, H, W)`` float tensor in ``[0, 1]``, ``level`` a Python float in ``[0, 8]`` (see
:mod:`dha_plugins.aug.op_levels`), ``sign`` ``+-1.0`` and ``interpolation`` the
:class:`~torchvision.transforms.InterpolationMode` of geometric ops. The definitions are
the same as :mod:`dha_plugins.aug.ops_kornia`; this backend is the reference the batched
one is tested against, and the fallback for per-image pipelines.

Example:
    >>> img = torch.rand(3, 8, 8)
    >>> TORCHVISION_OPS["Solarize"](img, 4.0, 1.0, InterpolationMode.BILINEAR).shape
    torch.Size([3, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from dha_plugins.aug import op_levels as L

__all__ = ["TorchvisionOp", "TORCHVISION_OPS", "InterpolationMode"]

TorchvisionOp = Callable[[torch.Tensor, float, float, InterpolationMode], torch.Tensor]


def _identity(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    return image


def _auto_contrast(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    return TF.autocontrast(image)


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    # Round to the nearest level, as PIL does between ops (see op_levels.round_to_8bit);
    # torchvision's own float->uint8 conversion scales by 255.999 and truncates.
    return image.mul(255.0).round_().to(torch.uint8)


def _equalize(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    return TF.equalize(_to_uint8(image)).to(image.dtype).div_(255.0)


def _invert(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    return TF.invert(image)


def _rotate(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode,
            fill: list[float] | None = None) -> torch.Tensor:
    return TF.rotate(image, sign * L.rotate_degrees(level), interpolation=interpolation, fill=fill)


def _posterize(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    # torchvision's float posterize keeps k / 2**bits, not the 8-bit value (k << (8 - bits)) / 255
    # that PIL and the authors produce (up to 1/255 apart). Posterizing the 8-bit levels gives
    # PIL's values.
    return TF.posterize(_to_uint8(image), L.posterize_bits(level)).to(image.dtype).div_(255.0)


def _solarize(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    threshold = L.solarize_threshold(level)
    if threshold > 1.0:
        # torchvision rejects thresholds above the dtype's maximum; no pixel reaches them anyway.
        return image
    return TF.solarize(image, threshold)


def _color(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    return TF.adjust_saturation(image, L.enhance_factor(level))


def _contrast(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    return TF.adjust_contrast(image, L.enhance_factor(level))


def _brightness(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    return TF.adjust_brightness(image, L.enhance_factor(level))


def _sharpness(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode) -> torch.Tensor:
    return TF.adjust_sharpness(image, L.enhance_factor(level))


def _shear(image: torch.Tensor, shear: float, horizontal: bool, interpolation: InterpolationMode,
           fill: list[float] | None = None) -> torch.Tensor:
    # PIL's AFFINE (1, v, 0, 0, 1, 0) is a shear of atan(v) about the top-left corner, which is
    # torchvision's center=[0, 0] (the same convention as torchvision's own AutoAugment).
    angle = math.degrees(math.atan(shear))
    return TF.affine(
        image,
        angle=0.0,
        translate=[0.0, 0.0],
        scale=1.0,
        shear=[angle, 0.0] if horizontal else [0.0, angle],
        interpolation=interpolation,
        center=[0, 0],
        fill=fill,
    )


def _shear_x(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode,
             fill: list[float] | None = None) -> torch.Tensor:
    return _shear(image, sign * L.shear_factor(level), True, interpolation, fill)


def _shear_y(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode,
             fill: list[float] | None = None) -> torch.Tensor:
    return _shear(image, sign * L.shear_factor(level), False, interpolation, fill)


def _translate(image: torch.Tensor, pixels: float, horizontal: bool, interpolation: InterpolationMode,
               fill: list[float] | None = None) -> torch.Tensor:
    return TF.affine(
        image,
        angle=0.0,
        translate=[pixels, 0.0] if horizontal else [0.0, pixels],
        scale=1.0,
        shear=[0.0, 0.0],
        interpolation=interpolation,
        fill=fill,
    )


def _translate_x(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode,
                 fill: list[float] | None = None) -> torch.Tensor:
    return _translate(image, sign * L.translate_fraction(level) * image.shape[-1], True, interpolation, fill)


def _translate_y(image: torch.Tensor, level: float, sign: float, interpolation: InterpolationMode,
                 fill: list[float] | None = None) -> torch.Tensor:
    return _translate(image, sign * L.translate_fraction(level) * image.shape[-2], False, interpolation, fill)


TORCHVISION_OPS: dict[str, TorchvisionOp] = {
    "AutoContrast": _auto_contrast,
    "Equalize": _equalize,
    "Rotate": _rotate,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "Color": _color,
    "Contrast": _contrast,
    "Brightness": _brightness,
    "Sharpness": _sharpness,
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "TranslateX": _translate_x,
    "TranslateY": _translate_y,
    "Identity": _identity,
    "Invert": _invert,
}
"""Op name -> per-image torchvision implementation; keys equal :data:`op_levels.ALL_OPS`."""
