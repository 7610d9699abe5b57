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
from dha_core.types import DataSpec
from dha_plugins.aug.affine_warp import warp_affine_pixels
from dha_plugins.aug.ops_kornia import AFFINE_MATRICES, KORNIA_OPS
from dha_plugins.aug.policy import AugPlan, LearnablePolicy, PolicyConfig

__all__ = ["KorniaPolicyConfig", "KorniaPolicy", "create_kornia"]


class KorniaPolicyConfig(PolicyConfig):
    """Config of ``aug=kornia``; see :class:`~dha_plugins.aug.policy.PolicyConfig` for the shared fields.

    Attributes:
        fuse_geometric: At each position, warp every sample that drew a geometric op
            (Rotate, Shear*, Translate*) in one warp call with per-sample matrices,
            instead of one call per geometric op. The result is the same (each sample is still
            resampled once per position); Kornia's per-call overhead is paid once, not up to five
            times. ``false`` gives exactly one Kornia call per op present.
    """

    fuse_geometric: bool = True


class KorniaPolicy(LearnablePolicy):
    """The learnable policy applied to whole batches with Kornia (one call per op present).

    Per position the batch is gathered once into op order, so every op's samples form a
    contiguous slice: each op runs on a view of its slice, the results are concatenated, and
    the original sample order is restored once at the end. That is two full-batch copies per
    position however many ops are present, instead of a gather and a scatter per op.
    """

    def __init__(self, config: KorniaPolicyConfig, data_spec: DataSpec | None = None) -> None:
        super().__init__(config, data_spec)
        geometric = [i for i, name in enumerate(self.op_names) if name in AFFINE_MATRICES]
        others = [i for i in range(self.num_ops) if i not in geometric]
        # Sort ranks: ops in their own order, geometric ops last and adjacent, so that the
        # fused warp covers one contiguous slice.
        self._rank_to_op: list[int] = others + geometric
        self._op_rank = torch.empty(self.num_ops, dtype=torch.long)
        self._op_rank[torch.tensor(self._rank_to_op)] = torch.arange(self.num_ops)

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
        # samples[j] is the original index of out[j]; None while out is in the original order.
        samples: torch.Tensor | None = None
        for pos in range(plan.ops.shape[1]):
            column = plan.ops[:, pos] if samples is None else plan.ops[samples, pos]
            if self.identity_index >= 0 and bool((column == self.identity_index).all()):
                continue
            # All grouping happens on CPU, where the plan lives: no device syncs.
            order = torch.argsort(self._op_rank[column], stable=True)
            samples = order if samples is None else samples[order]
            ops, levels, signs = plan.ops[samples, pos], plan.levels[samples, pos], plan.signs[samples, pos]
            counts = torch.bincount(ops, minlength=self.num_ops).tolist()
            current = out.index_select(0, order.to(images.device, non_blocking=True))
            pieces: list[torch.Tensor] = []
            matrices: list[torch.Tensor] = []
            start = fused_start = 0
            for op in self._rank_to_op:
                count = counts[op]
                if count == 0:
                    continue
                stop = start + count
                name = self.op_names[op]
                if op == self.identity_index:
                    pieces.append(current[start:stop])
                elif fuse and name in AFFINE_MATRICES:
                    if not matrices:
                        fused_start = start
                    matrices.append(AFFINE_MATRICES[name](levels[start:stop], signs[start:stop], size))
                else:
                    args = (current[start:stop], levels[start:stop], signs[start:stop], mode)
                    pieces.append(KORNIA_OPS[name](*args, fill=self.fill) if name in AFFINE_MATRICES
                                  else KORNIA_OPS[name](*args))
                start = stop
            if matrices:  # geometric ranks come last, so the fused slice is the tail
                pieces.append(warp_affine_pixels(current[fused_start:], torch.cat(matrices), mode, self.fill))
            out = torch.cat(pieces) if len(pieces) > 1 else pieces[0].contiguous()
        if samples is None:
            return images
        restore = torch.empty_like(samples)
        restore[samples] = torch.arange(samples.numel())
        return out.index_select(0, restore.to(images.device, non_blocking=True))


def create_kornia(config: KorniaPolicyConfig, data_spec: DataSpec | None = None) -> KorniaPolicy:
    """DHA's learnable 14-op pair policy, batched on the training device (Kornia)."""
    return KorniaPolicy(config, data_spec=data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("aug", "kornia", create_kornia, config=KorniaPolicyConfig)
