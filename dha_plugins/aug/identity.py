"""``aug=none``: no augmentation."""

from __future__ import annotations

from typing import Any

import torch

from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import AugmentationPolicy


class NoAugConfig(ComponentConfig):
    """No fields."""


class NoAugmentation(AugmentationPolicy):
    """Returns the batch unchanged."""

    learnable = False

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Any]:
        return images, None


def create_none(config: NoAugConfig) -> NoAugmentation:
    """Identity: no augmentation."""
    return NoAugmentation()


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("aug", "none", create_none, config=NoAugConfig)
