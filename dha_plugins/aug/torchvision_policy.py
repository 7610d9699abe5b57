"""``aug=torchvision``: DHA's learnable policy applied one image at a time with torchvision.

It shares ``tau``, sampling and the policy loss with ``aug=kornia`` (both derive from
:class:`~dha_plugins.aug.policy.LearnablePolicy`); only the application differs. It is the
reference the Kornia backend is tested against, and the fallback for per-image pipelines.

Example:
    >>> policy = TorchvisionPolicy(TorchvisionPolicyConfig(crop=False, flip=False))
    >>> augmented, plan = policy(torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from typing import Any

import torch

from dha_core.hookspecs import hookimpl
from dha_core.types import DataSpec
from dha_plugins.aug.policy import AugPlan, LearnablePolicy, PolicyConfig

__all__ = ["TorchvisionPolicyConfig", "TorchvisionPolicy", "create_torchvision"]

class TorchvisionPolicyConfig(PolicyConfig):
    """Config of ``aug=torchvision``; see :class:`~dha_plugins.aug.policy.PolicyConfig` for the fields."""


class TorchvisionPolicy(LearnablePolicy):
    """The learnable policy applied per image with ``torchvision.transforms.v2.functional``."""

    def apply_plan(self, images: torch.Tensor, plan: AugPlan) -> torch.Tensor:
        """Applies op1 then op2 to each image in turn.

        Args:
            images: ``(B, C, H, W)`` float batch in ``[0, 1]``.
            plan: The batch's plan (CPU tensors).

        Returns:
            The augmented batch (a new tensor).
        """
        if len(plan) != images.shape[0]:
            raise ValueError(f"plan is for {len(plan)} samples, batch has {images.shape[0]}")
        # Deferred: torchvision takes seconds to import, and registering the plugin must not.
        from dha_plugins.aug.op_levels import GEOMETRIC_OPS
        from dha_plugins.aug.ops_torchvision import TORCHVISION_OPS, InterpolationMode

        interpolation = InterpolationMode.BILINEAR if self.config.interpolation == "bilinear" else InterpolationMode.NEAREST
        ops, levels, signs = plan.ops.tolist(), plan.levels.tolist(), plan.signs.tolist()
        out = []
        for i, image in enumerate(images):
            for op, level, sign in zip(ops[i], levels[i], signs[i], strict=True):
                name = self.op_names[op]
                if name in GEOMETRIC_OPS and self.fill is not None:
                    image = TORCHVISION_OPS[name](image, level, sign, interpolation, fill=list(self.fill))
                else:
                    image = TORCHVISION_OPS[name](image, level, sign, interpolation)
            out.append(image)
        return torch.stack(out)


def create_torchvision(
    config: TorchvisionPolicyConfig, data_spec: DataSpec | None = None
) -> TorchvisionPolicy:
    """DHA's learnable policy applied per image (torchvision): reference and CPU fallback."""
    return TorchvisionPolicy(config, data_spec=data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("aug", "torchvision", create_torchvision, config=TorchvisionPolicyConfig)
