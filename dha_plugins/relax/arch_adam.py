"""Adam for architecture parameters, with its state held in module buffers.

The relaxations own their optimizer. Keeping Adam's moments as buffers of the relaxation
module (instead of a ``torch.optim.Adam``) means that ``relaxation.state_dict()`` alone is
a complete checkpoint of the architecture search, loadable with ``weights_only=True``,
and that a single parameter (one ISTA node) can be skipped once it is frozen without
disturbing the step counts of the others.

The update is ``torch.optim.Adam``'s with L2 weight decay added to the gradient (the
convention of DARTS and ISTA-NAS for their architecture optimizers).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["AdamState", "adam_update_"]


@torch.no_grad()
def adam_update_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    """One in-place Adam update of ``param``.

    Args:
        param: The parameter, updated in place.
        grad: Its gradient (not modified).
        exp_avg: First-moment buffer, updated in place.
        exp_avg_sq: Second-moment buffer, updated in place.
        step: The 1-based index of this update (for bias correction).
        lr: Learning rate.
        betas: ``(beta1, beta2)``.
        eps: Denominator epsilon.
        weight_decay: L2 coefficient added to the gradient.
    """
    beta1, beta2 = betas
    if weight_decay:
        grad = grad.add(param, alpha=weight_decay)
    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    bias1 = 1.0 - beta1**step
    bias2 = 1.0 - beta2**step
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / bias1)


class AdamState(nn.Module):
    """Adam moments and step count of one parameter, as buffers.

    Args:
        like: A tensor with the parameter's shape, dtype and device.
    """

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("exp_avg", torch.zeros_like(like))
        self.register_buffer("exp_avg_sq", torch.zeros_like(like))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        # Python mirror of ``steps``: reading the buffer each step would synchronise a GPU.
        self._steps = 0
        self.register_load_state_dict_post_hook(_sync_steps)

    def step(
        self,
        param: torch.Tensor,
        grad: torch.Tensor,
        lr: float,
        betas: tuple[float, float] = (0.5, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        """Applies one Adam update to ``param`` with ``grad``.

        Args:
            param: The parameter this state belongs to (updated in place).
            grad: Its gradient.
            lr: Learning rate.
            betas: ``(beta1, beta2)``.
            eps: Denominator epsilon.
            weight_decay: L2 coefficient.
        """
        self._steps += 1
        self.steps.fill_(self._steps)
        adam_update_(param, grad, self.exp_avg, self.exp_avg_sq, self._steps, lr, betas, eps, weight_decay)


def _sync_steps(module: nn.Module, incompatible_keys: object) -> None:
    module._steps = int(module.steps)  # type: ignore[attr-defined]
