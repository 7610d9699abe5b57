"""The op table shared by both backends of DHA's learnable policy: names and level mapping.

A magnitude ``m`` is a *level* in ``[0, 8]`` (the authors' ``PARAMETER_MAX``), drawn per op
application as ``m ~ U(0, M)``. Each op maps the level to its own parameter as in the
authors' released code:

============================================  ======================================
op                                            value at level ``m``
============================================  ======================================
Rotate                                        ``+-30 * m / 8`` degrees
Posterize                                     ``int(3 * m / 8 + 1)`` bits kept
Solarize                                      threshold ``256 * m / 8`` (0-255 scale)
Color, Contrast, Brightness, Sharpness        factor ``0.1 + 1.8 * m / 8``
ShearX, ShearY                                ``+-0.3 * m / 8`` (shear factor)
TranslateX, TranslateY                        ``+-0.45 * m / 8`` of the width / height
AutoContrast, Equalize, Invert, Identity      no magnitude
============================================  ======================================

The functions below accept Python floats (the per-image torchvision backend) and tensors
(the batched Kornia backend), so both backends share one definition.
"""

from __future__ import annotations

from typing import TypeVar

import torch

__all__ = [
    "MAX_LEVEL",
    "ALL_OPS",
    "DEFAULT_OPS",
    "SIGNED_OPS",
    "GEOMETRIC_OPS",
    "IDENTITY_LEVEL",
    "UNSCALED_OPS",
    "rotate_degrees",
    "posterize_bits",
    "solarize_threshold",
    "enhance_factor",
    "shear_factor",
    "translate_fraction",
    "round_to_8bit",
]

MAX_LEVEL: float = 8.0
"""The top of the level scale; ``M`` (the sampling bound) may not exceed it."""

DEFAULT_OPS: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Rotate",
    "Posterize",
    "Solarize",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Identity",
)
"""The 14 ops of DHA's policy, in the order that indexes ``tau``."""

ALL_OPS: tuple[str, ...] = DEFAULT_OPS + ("Invert",)
"""Every op either backend implements; ``Invert`` is the optional 15th."""

SIGNED_OPS: frozenset[str] = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})
"""Ops whose value takes a random sign per application."""

GEOMETRIC_OPS: frozenset[str] = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})
"""Ops that resample pixels (compared across backends by mean absolute error, not exactly)."""

IDENTITY_LEVEL: dict[str, float] = {
    "Rotate": 0.0,
    "ShearX": 0.0,
    "ShearY": 0.0,
    "TranslateX": 0.0,
    "TranslateY": 0.0,
    "Color": 4.0,  # factor 1.0
    "Contrast": 4.0,
    "Brightness": 4.0,
    "Sharpness": 4.0,
    "Solarize": MAX_LEVEL,  # threshold 256: nothing is inverted
    "Posterize": 7.0 * MAX_LEVEL / 3.0,  # 8 bits kept (beyond the sampled range, where the op is harshest)
}
"""The level at which each op with a magnitude leaves the image unchanged. Level 0 is the
identity only for the geometric ops: Posterize keeps 1 bit, Solarize inverts everything and
the enhance ops blend at 0.1 there, so "weaker" means "closer to these levels", not "lower"."""

UNSCALED_OPS: frozenset[str] = frozenset({"AutoContrast", "Equalize", "Invert"})
"""Ops without a magnitude: a strength below 1 applies them with that probability."""

T = TypeVar("T", float, torch.Tensor)


def rotate_degrees(level: T) -> T:
    """Rotation angle in degrees (before the sign) at ``level``."""
    return 30.0 * level / MAX_LEVEL


def posterize_bits(level: T) -> T:
    """Bits kept per channel at ``level``: ``int(3 * m / 8 + 1)``, so 1 to 4 bits.

    Returns:
        An ``int`` for a float level, a ``long`` tensor for a tensor level.
    """
    value = 3.0 * level / MAX_LEVEL + 1.0
    if isinstance(value, torch.Tensor):
        # Levels are non-negative, so truncation (Python's int()) equals floor.
        return value.floor().long()
    return int(value)


def solarize_threshold(level: T) -> T:
    """Solarize threshold on the ``[0, 1]`` scale: ``256 * m / 8`` on the 0-255 scale, over 255.

    A threshold above 1 (level 8 gives 256/255) solarizes nothing, as PIL does at 256.
    """
    return (256.0 * level / MAX_LEVEL) / 255.0


def enhance_factor(level: T) -> T:
    """Blend factor of the PIL ``ImageEnhance`` ops at ``level``: ``0.1 + 1.8 * m / 8``."""
    return 0.1 + 1.8 * level / MAX_LEVEL


def shear_factor(level: T) -> T:
    """Shear factor (the off-diagonal entry of the affine matrix) at ``level``."""
    return 0.3 * level / MAX_LEVEL


def translate_fraction(level: T) -> T:
    """Translation as a fraction of the image width (X) or height (Y) at ``level``."""
    return 0.45 * level / MAX_LEVEL


def round_to_8bit(images: torch.Tensor) -> torch.Tensor:
    """Rounds ``[0, 1]`` images to the nearest of the 256 8-bit levels (still float).

    Equalize and Posterize read 8-bit levels. PIL keeps images 8-bit between ops, so it
    rounds; Kornia truncates ``x * 255`` and torchvision's float-to-uint8 conversion scales
    by ``255.999`` before truncating, so a value such as ``254.99998 / 255`` (float round-off
    of ``1 - x`` after Solarize, say) would read as 254 in one backend and 255 in the other.
    Both backends therefore round first.
    """
    return images.mul(255.0).round_().div_(255.0)
