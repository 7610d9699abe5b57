"""``aug=standard``: the usual fixed pipeline, random crop with padding, flip, optional cutout.

All three run batched on the training device (see :mod:`dha_plugins.aug.fixed_ops`).

Example:
    >>> aug = StandardAugmentation(StandardConfig(cutout=16), data_spec=DataSpec(num_classes=10, image_size=32))
    >>> augmented, plan = aug(torch.rand(8, 3, 32, 32), torch.Generator().manual_seed(0))
    >>> plan is None
    True
"""

from __future__ import annotations

from typing import Any

import torch

from dha_core.hookspecs import hookimpl
from dha_core.interfaces import AugmentationPolicy
from dha_core.types import DataSpec
from dha_plugins.aug.fixed_ops import FixedOps, FixedOpsConfig, check_generator

__all__ = ["StandardConfig", "StandardAugmentation", "create_standard"]


class StandardConfig(FixedOpsConfig):
    """Crop, flip and cutout settings; see :class:`~dha_plugins.aug.fixed_ops.FixedOpsConfig`."""


class StandardAugmentation(AugmentationPolicy):
    """Random crop with padding, horizontal flip, then cutout if configured.

    Args:
        config: Which ops run.
        data_spec: Dataset facts (``image_size`` for the default padding, ``mean`` for cutout).
    """

    learnable = False

    def __init__(self, config: StandardConfig, data_spec: DataSpec | None = None) -> None:
        super().__init__()
        self.fixed_ops = FixedOps.for_data(config, data_spec)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, None]:
        """Augments a batch.

        Args:
            images: ``(B, C, H, W)`` float batch in ``[0, 1]``.
            generator: CPU generator for the random draws.

        Returns:
            ``(augmented, None)``.
        """
        check_generator(generator)
        return self.fixed_ops.post(self.fixed_ops.pre(images, generator), generator), None


def create_standard(config: StandardConfig, data_spec: DataSpec | None = None) -> StandardAugmentation:
    """Random crop with padding, horizontal flip, optional cutout (batched)."""
    return StandardAugmentation(config, data_spec=data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("aug", "standard", create_standard, config=StandardConfig)
