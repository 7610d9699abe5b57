"""``aug=autoaugment|randaugment|trivialaugment``: fixed policies from ``kornia.augmentation.auto``.

Each wraps the Kornia module between the fixed pre-ops (crop, flip) and post-ops (cutout).

Kornia draws **one sub-policy per call** for the whole batch (torchvision's per-image
transforms draw one per image). ``groups`` splits the batch into that many chunks, each
drawing its own sub-policy, to trade speed for diversity.

Kornia samples from the global RNG. To make a seeded :class:`torch.Generator` reproduce the
result, the call runs inside :func:`torch.random.fork_rng` with the CPU RNG seeded from the
generator, so the global RNG is left as it was.

Example:
    >>> aug = KorniaAutoPolicy(AutoAugmentConfig(), data_spec=DataSpec(num_classes=10, image_size=32))
    >>> augmented, _ = aug(torch.rand(8, 3, 32, 32), torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from kornia.augmentation import auto as kauto
from pydantic import Field
from torch import nn

from dha_core.hookspecs import hookimpl
from dha_core.interfaces import AugmentationPolicy
from dha_core.types import DataSpec
from dha_plugins.aug.fixed_ops import FixedOps, FixedOpsConfig, check_generator

__all__ = [
    "AutoAugmentConfig",
    "RandAugmentConfig",
    "TrivialAugmentConfig",
    "KorniaAutoPolicy",
    "create_autoaugment",
    "create_randaugment",
    "create_trivialaugment",
]


class _AutoConfig(FixedOpsConfig):
    """Fields shared by the fixed Kornia policies.

    Attributes:
        groups: Independent sub-policy draws per batch (Kornia draws one per call).
    """

    groups: int = Field(1, ge=1)


class AutoAugmentConfig(_AutoConfig):
    """``aug=autoaugment``.

    Attributes:
        policy: Which published AutoAugment policy.
    """

    policy: Literal["cifar10", "imagenet", "svhn"] = "cifar10"


class RandAugmentConfig(_AutoConfig):
    """``aug=randaugment``.

    Attributes:
        n: Ops applied per image.
        m: Magnitude on Kornia's 0-30 scale (strictly inside); 9 matches torchvision's default.
    """

    n: int = Field(2, ge=1)
    m: int = Field(9, gt=0, lt=30)


class TrivialAugmentConfig(_AutoConfig):
    """``aug=trivialaugment``: no fields beyond the fixed ops and ``groups``."""


class KorniaAutoPolicy(AugmentationPolicy):
    """A fixed Kornia auto-augmentation policy between the fixed pre- and post-ops.

    Args:
        policy: The Kornia module (``AutoAugment``, ``RandAugment`` or ``TrivialAugment``).
        config: Fixed ops and ``groups``.
        data_spec: Dataset facts (``image_size``, ``mean``).
    """

    learnable = False

    def __init__(self, policy: nn.Module, config: _AutoConfig, data_spec: DataSpec | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.groups = config.groups
        self.fixed_ops = FixedOps.for_data(config, data_spec)

    def _apply_policy(self, images: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return self.policy(images)
        # tensor_split, not chunk: chunk(4) of 6 samples gives 3 chunks. A batch smaller than
        # `groups` leaves empty chunks, which draw nothing.
        return torch.cat([self.policy(chunk) for chunk in images.tensor_split(self.groups) if len(chunk)])

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, None]:
        """Augments a batch.

        Args:
            images: ``(B, C, H, W)`` float batch in ``[0, 1]``.
            generator: CPU generator; with one, the result is reproducible.

        Returns:
            ``(augmented, None)``.
        """
        check_generator(generator)
        images = self.fixed_ops.pre(images, generator)
        if generator is None:
            images = self._apply_policy(images)
        else:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            # Kornia samples its parameters on CPU from the global RNG: seed a forked copy.
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                images = self._apply_policy(images)
        return self.fixed_ops.post(images, generator), None


def create_autoaugment(
    config: AutoAugmentConfig, data_spec: DataSpec | None = None
) -> KorniaAutoPolicy:
    """AutoAugment (fixed published policy) through kornia.augmentation.auto."""
    return KorniaAutoPolicy(kauto.AutoAugment(policy=config.policy), config, data_spec)


def create_randaugment(
    config: RandAugmentConfig, data_spec: DataSpec | None = None
) -> KorniaAutoPolicy:
    """RandAugment (n ops at magnitude m) through kornia.augmentation.auto."""
    return KorniaAutoPolicy(kauto.RandAugment(n=config.n, m=config.m), config, data_spec)


def create_trivialaugment(
    config: TrivialAugmentConfig, data_spec: DataSpec | None = None
) -> KorniaAutoPolicy:
    """TrivialAugment (one random op at a random magnitude) through kornia.augmentation.auto."""
    return KorniaAutoPolicy(kauto.TrivialAugment(), config, data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("aug", "autoaugment", create_autoaugment, config=AutoAugmentConfig)
    registry.add("aug", "randaugment", create_randaugment, config=RandAugmentConfig)
    registry.add("aug", "trivialaugment", create_trivialaugment, config=TrivialAugmentConfig)
