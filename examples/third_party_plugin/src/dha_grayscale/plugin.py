"""Registers ``aug=grayscale``: converts each image to grayscale with probability ``p``."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import AugmentationPolicy


class GrayscaleConfig(ComponentConfig):
    """Probability of turning an image gray."""

    p: float = Field(0.2, ge=0.0, le=1.0)


class RandomGrayscale(AugmentationPolicy):
    """Per-sample random grayscale, batched on the training device."""

    learnable = False

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Any]:
        mask = torch.rand(images.shape[0], generator=generator) < self.p
        if not mask.any() or images.shape[1] != 3:
            return images, None
        weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
        gray = (images * weights).sum(1, keepdim=True).expand_as(images)
        return torch.where(mask.to(images.device).view(-1, 1, 1, 1), gray, images), None


def create_grayscale(config: GrayscaleConfig) -> RandomGrayscale:
    """Random grayscale with probability p (example third-party plugin)."""
    return RandomGrayscale(config.p)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("aug", "grayscale", create_grayscale, config=GrayscaleConfig)
