"""Config fields and helpers shared by the dataset plugins."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dha_core.config_base import ComponentConfig
from dha_core.errors import UserInputError


class DatasetConfig(ComponentConfig):
    """Fields every dataset accepts."""

    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of train held out as the val split.")
    split_seed: int = Field(0, ge=0, description="Seed of the deterministic train/val split.")
    train_subset: int | None = Field(None, ge=2, description="Use only this many training images.")
    test_subset: int | None = Field(None, ge=1, description="Use only this many test images.")


def require_dir(path: str | Path, field: str) -> Path:
    """Returns ``path`` as a directory or raises a one-line :class:`UserInputError`."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserInputError(f"{field}: data root not found: {p}")
    return p
