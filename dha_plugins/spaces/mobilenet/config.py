"""Configuration of the ProxylessNAS-style MobileNet space."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from dha_core.config_base import ComponentConfig

__all__ = ["MobileNetSpaceConfig", "make_divisible"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds a channel count to a multiple of ``divisor`` without losing more than 10%.

    This is the rounding MobileNetV2 and ProxylessNAS use for width multipliers.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class MobileNetSpaceConfig(ComponentConfig):
    """Config of ``space=mobilenet``. The defaults are ProxylessNAS' ImageNet layout.

    Stem (3x3 conv, BN, ReLU6) -> a fixed MBConv1 3x3 block -> six searchable stages ->
    1x1 conv to ``last_channels`` -> global pooling -> (dropout) -> linear classifier.
    """

    stem_channels: int = Field(32, ge=1)
    first_block_channels: int = Field(16, ge=1, description="Output of the fixed MBConv1 3x3 block.")
    stage_widths: tuple[int, ...] = Field((24, 40, 80, 96, 192, 320), description="Output channels per stage.")
    depths: tuple[int, ...] = Field((4, 4, 4, 4, 4, 1), description="Blocks per stage.")
    strides: tuple[int, ...] = Field((2, 2, 2, 1, 2, 1), description="Stride of each stage's first block.")
    kernel_sizes: tuple[int, ...] = Field((3, 5, 7), description="Depthwise kernel candidates.")
    expand_ratios: tuple[int, ...] = Field((3, 6), description="Expansion-ratio candidates.")
    allow_zero: bool = Field(True, description="Offer 'zero' (skip the block) where the block keeps its shape.")
    width_mult: float = Field(1.0, gt=0, description="Scales every width (rounded to multiples of 8).")
    last_channels: int = Field(1280, ge=1, description="Width of the final 1x1 conv (scaled only when width_mult > 1).")
    resolution: int | None = Field(
        None, ge=8, description="Input resolution for costs and the stem choice; default: the data's image size."
    )
    stem: Literal["auto", "imagenet", "small"] = Field(
        "auto",
        description="imagenet: stride-2 stem; small: stride-1 stem for 32x32-class inputs; "
        "auto: small when the resolution is at most 64.",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")

    @field_validator("strides")
    @classmethod
    def _check_strides(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(s not in (1, 2) for s in value):
            raise ValueError("every stride must be 1 or 2")
        return value

    @field_validator("kernel_sizes")
    @classmethod
    def _check_kernels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(k < 1 or k % 2 == 0 for k in value) or len(set(value)) != len(value):
            raise ValueError("kernel sizes must be distinct odd positive integers")
        return value

    @field_validator("expand_ratios")
    @classmethod
    def _check_expand(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(e < 1 for e in value) or len(set(value)) != len(value):
            raise ValueError("expand ratios must be distinct integers >= 1")
        return value

    @field_validator("stage_widths", "depths")
    @classmethod
    def _check_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v < 1 for v in value):
            raise ValueError("must be a non-empty list of positive integers")
        return value

    @model_validator(mode="after")
    def _check_lengths(self) -> MobileNetSpaceConfig:
        n = {len(self.stage_widths), len(self.depths), len(self.strides)}
        if len(n) != 1:
            raise ValueError(
                f"stage_widths ({len(self.stage_widths)}), depths ({len(self.depths)}) and strides "
                f"({len(self.strides)}) must have the same length"
            )
        return self
