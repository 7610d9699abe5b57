"""``aug=kornia``: DHA's learnable pair policy, batched on the training device with Kornia.

Per position (op1, then op2) the batch is grouped by op and each op present gets one Kornia
call on its samples, with per-sample levels passed as tensors. ``Identity`` costs nothing.

Example:
    >>> policy = KorniaPolicy(KorniaPolicyConfig(crop=False, flip=False))
    >>> augmented, plan = policy(torch.rand(8, 3, 32, 32), torch.Generator().manual_seed(0))
    >>> metrics = policy.policy_step(torch.rand(8), plan)
"""

from __future__ import annotations

from typing import Any

import torch

from dha_core.hookspecs import hookimpl
from dha_plugins.aug.ops_kornia import AFFINE_MATRICES, KORNIA_OPS, warp
from dha_plugins.aug.policy import AugPlan, LearnablePolicy, PolicyConfig

__all__ = ["KorniaPolicyConfig", "KorniaPolicy", "create_kornia"]


class KorniaPolicyConfig(PolicyConfig):
    """Config of ``aug=kornia``; see :class:`~dha_plugins.aug.policy.PolicyConfig` for the shared fields.

    Attributes:
        fuse_geometric: At each position, warp every sample that drew a geometric op
            (Rotate, Shear*, Translate*) in one ``warp_affine`` call with per-sample matrices,
            instead of one call per geometric op. The result is the same (each sample is still
            resampled once per position); Kornia's per-call overhead is paid once, not up to five
            times. ``false`` gives exactly one Kornia call per op present.
    """

    fuse_geometric: bool = True


class KorniaPolicy(LearnablePolicy):
    """The learnable policy applied to whole batches with Kornia (one call per op present)."""

    def apply_plan(self, images: torch.Tensor, plan: AugPlan) -> torch.Tensor:
        """Applies op1 then op2 of every sample, one Kornia call per (position, op) present.

        With ``fuse_geometric`` the geometric ops of a position share one warp call.

        Args:
            images: ``(B, C, H, W)`` float batch in ``[0, 1]``, on any device.
            plan: The batch's plan (CPU tensors).

        Returns:
            The augmented batch; ``images`` itself when every sample drew ``Identity`` only.
        """
        if len(plan) != images.shape[0]:
            raise ValueError(f"plan is for {len(plan)} samples, batch has {images.shape[0]}")
        mode = self.config.interpolation
        size = (int(images.shape[-2]), int(images.shape[-1]))
        fuse = self.config.fuse_geometric
        out = images
        for pos in range(plan.ops.shape[1]):
            column = plan.ops[:, pos]
            levels, signs = plan.levels[:, pos], plan.signs[:, pos]
            # Grouping on CPU (where the plan lives) keeps the device free of syncs: one
            # stable sort, then contiguous runs of equal op index.
            order = torch.argsort(column, stable=True)
            counts = torch.bincount(column, minlength=self.num_ops).tolist()
            calls: list[tuple[torch.Tensor, str | None]] = []  # (members, op name or None = fused warp)
            geometric: list[torch.Tensor] = []
            for op, members in enumerate(torch.split(order, counts)):
                if members.numel() == 0 or op == self.identity_index:
                    continue
                name = self.op_names[op]
                if fuse and name in AFFINE_MATRICES:
                    geometric.append(members)
                else:
                    calls.append((members, name))
            if geometric:
                calls.append((torch.cat(geometric), None))
            if not calls:
                continue
            result = out.clone()
            for members, name in calls:
                rows = members.to(images.device, non_blocking=True)
                batch = out.index_select(0, rows)
                if name is None:
                    matrices = torch.cat(
                        [
                            AFFINE_MATRICES[self.op_names[int(column[m[0]])]](levels[m], signs[m], size)
                            for m in geometric
                        ]
                    )
                    augmented = warp(batch, matrices, mode)
                else:
                    augmented = KORNIA_OPS[name](batch, levels[members], signs[members], mode)
                result.index_copy_(0, rows, augmented.to(result.dtype))
            out = result
        return out


def create_kornia(config: KorniaPolicyConfig, data_spec: dict[str, Any] | None = None, **_: Any) -> KorniaPolicy:
    """DHA's learnable 14-op pair policy, batched on the training device (Kornia)."""
    return KorniaPolicy(config, data_spec=data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("aug", "kornia", create_kornia, config=KorniaPolicyConfig)
