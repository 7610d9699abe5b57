"""The level -> magnitude table of DHA's policy, pinned to literal numbers.

The values are the authors' published mapping (level ``m`` on the 0-8 scale), written out
here independently of :mod:`dha_plugins.aug.op_levels`, so that a changed constant (say,
translate 0.45 -> 0.2) fails here even though the PIL parity test would otherwise share it:

* Rotate ``30 * m / 8`` degrees (sign drawn separately);
* Posterize ``int(3 * m / 8 + 1)`` bits;
* Solarize threshold ``256 * m / 8`` on the 0-255 scale (``/ 255`` on the [0, 1] scale);
* Color, Contrast, Brightness, Sharpness factor ``0.1 + 1.8 * m / 8``;
* Shear ``0.3 * m / 8``; Translate ``0.45 * m / 8`` of the width / height.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dha_plugins.aug import op_levels as L

LEVELS = (0.0, 2.0, 4.5, 8.0)

# function -> expected value at each of LEVELS, computed by hand.
TABLE: dict[str, tuple[Callable, tuple[float, ...]]] = {
    "rotate_degrees": (L.rotate_degrees, (0.0, 7.5, 16.875, 30.0)),
    "solarize_threshold": (L.solarize_threshold, (0.0, 64.0 / 255, 144.0 / 255, 256.0 / 255)),
    "enhance_factor": (L.enhance_factor, (0.1, 0.55, 1.1125, 1.9)),
    "shear_factor": (L.shear_factor, (0.0, 0.075, 0.16875, 0.3)),
    "translate_fraction": (L.translate_fraction, (0.0, 0.1125, 0.253125, 0.45)),
}
POSTERIZE_BITS = (1, 1, 2, 4)


def test_level_scale_tops_out_at_eight() -> None:
    assert L.MAX_LEVEL == 8.0


@pytest.mark.parametrize("name", sorted(TABLE))
def test_level_mapping_on_python_floats(name: str) -> None:
    fn, expected = TABLE[name]
    for level, want in zip(LEVELS, expected, strict=True):
        assert fn(level) == pytest.approx(want, rel=1e-12, abs=1e-12), f"{name}({level})"


@pytest.mark.parametrize("name", sorted(TABLE))
def test_level_mapping_on_tensors(name: str) -> None:
    # The Kornia backend passes per-sample level tensors through the same functions.
    fn, expected = TABLE[name]
    got = fn(torch.tensor(LEVELS, dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_posterize_bits_truncate() -> None:
    assert [L.posterize_bits(m) for m in LEVELS] == list(POSTERIZE_BITS)
    assert all(type(L.posterize_bits(m)) is int for m in LEVELS)
    bits = L.posterize_bits(torch.tensor(LEVELS))
    assert bits.dtype == torch.long and bits.tolist() == list(POSTERIZE_BITS)
    # Just below a step the bit count has not moved yet: int() truncates, no rounding.
    assert L.posterize_bits(8.0 / 3 - 1e-6) == 1 and L.posterize_bits(8.0 / 3 + 1e-6) == 2


def test_solarize_at_the_top_level_solarizes_nothing() -> None:
    # 256 on the 0-255 scale is above every pixel, as in PIL.
    assert L.solarize_threshold(8.0) > 1.0
