"""Configuration of the DARTS cell space."""

from __future__ import annotations

from pydantic import Field, field_validator

from dha_core.config_base import ComponentConfig

__all__ = ["DARTS_OPS", "DartsSpaceConfig"]

DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The eight DARTS candidate ops, in the order of the DARTS code base."""


class DartsSpaceConfig(ComponentConfig):
    """Config of ``space=darts``.

    The defaults are a small supernet that trains on a CPU; the paper's search setting is
    ``C=16, layers=8`` and its CIFAR evaluation setting ``C=36, layers=20, auxiliary=true``
    (see ``docs/spaces.md``).
    """

    C: int = Field(8, ge=1, description="Channels of the first cell's nodes (doubled at every reduction).")
    layers: int = Field(5, ge=3, description="Number of cells; reductions sit at layers//3 and 2*layers//3.")
    nodes: int = Field(4, ge=1, description="Intermediate nodes per cell; the cell output concatenates them.")
    stem_multiplier: int = Field(3, ge=1, description="The stem outputs stem_multiplier*C channels.")
    ops: tuple[str, ...] = Field(DARTS_OPS, description="Candidate ops on every edge (DARTS names).")
    affine: bool = Field(
        True,
        description="Affine batch-norm inside ops and cell preprocessing. DARTS' search uses false; "
        "a one-stage search whose child is the final model (DHA) keeps true.",
    )
    pool_bn: bool = Field(
        True, description="Non-affine batch-norm after pooling candidates, as DARTS' search does (no parameters)."
    )
    auxiliary: bool = Field(False, description="Auxiliary head after cell 2*layers//3 (training mode only).")
    aux_channels: int = Field(768, ge=1, description="Width of the auxiliary head's last convolution.")

    @field_validator("ops")
    @classmethod
    def _check_ops(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [op for op in value if op not in DARTS_OPS]
        if unknown:
            raise ValueError(f"unknown op(s) {', '.join(unknown)}; expected a subset of {', '.join(DARTS_OPS)}")
        if len(set(value)) != len(value):
            raise ValueError("ops must not repeat")
        if not [op for op in value if op != "none"]:
            raise ValueError("ops needs at least one op other than 'none'")
        return tuple(value)
