"""DARTS' second-order architecture gradient, as plain functions.

With weights ``w``, architecture ``alpha``, one virtual SGD step

    w' = w - xi * (mu * v + grad_w L_train(w, alpha) + wd * w)

and ``L_val(w', alpha)``, the chain rule gives

    dL_val/dalpha = grad_alpha L_val(w', alpha)
                    - xi * grad^2_{alpha, w} L_train(w, alpha) . grad_w' L_val(w', alpha)

(the momentum and weight-decay terms do not depend on ``alpha``). The mixed
second-derivative product is approximated by a central difference,

    grad^2_{alpha, w} L_train . d  ~  (grad_alpha L_train(w + eps d) - grad_alpha L_train(w - eps d)) / (2 eps),

with ``eps = r / ||d||``. Note the divisor ``(2 * eps)``: writing ``/ 2 * eps`` (as some
implementations do) multiplies by ``eps / 2`` instead and silently shrinks the second-order
term by ``eps^2``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["finite_difference_hvp", "grads_or_zeros", "unrolled_arch_grads"]

Batch = tuple[torch.Tensor, torch.Tensor]


def grads_or_zeros(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``torch.autograd.grad`` that returns zeros for inputs the loss does not depend on.

    Args:
        loss: A scalar.
        inputs: Tensors that require grad.

    Returns:
        One gradient per input.
    """
    grads = torch.autograd.grad(loss, list(inputs), allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]


@torch.no_grad()
def _copy_into(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    for p, v in zip(params, values, strict=True):
        p.copy_(v)


def finite_difference_hvp(
    grad_fn: Callable[[], Sequence[torch.Tensor]],
    params: Sequence[torch.Tensor],
    vector: Sequence[torch.Tensor],
    r: float = 0.01,
) -> list[torch.Tensor]:
    """Central-difference product of the Jacobian of ``grad_fn`` w.r.t. ``params`` with ``vector``.

    ``params`` are moved in place to ``w + eps*v`` and ``w - eps*v`` and restored exactly
    (from a copy, not by subtracting again, so no rounding drift accumulates).

    Args:
        grad_fn: Evaluates the gradient (e.g. ``grad_alpha L_train``) at the current
            ``params``.
        params: The tensors to perturb (e.g. the network weights).
        vector: The direction, one tensor per param.
        r: Relative step: ``eps = r / ||vector||``.

    Returns:
        ``(grad_fn(w + eps v) - grad_fn(w - eps v)) / (2 eps)``, one tensor per output of
        ``grad_fn``; zeros when ``vector`` is zero.
    """
    norm = float(torch.sqrt(sum((v.detach().double() ** 2).sum() for v in vector)))
    if norm == 0.0:
        return [torch.zeros_like(g) for g in grad_fn()]
    eps = r / norm
    backup = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, v in zip(params, vector, strict=True):
                p.add_(v, alpha=eps)
        g_plus = [g.detach() for g in grad_fn()]
        with torch.no_grad():
            for p, w, v in zip(params, backup, vector, strict=True):
                p.copy_(w).sub_(v, alpha=eps)
        g_minus = [g.detach() for g in grad_fn()]
    finally:
        _copy_into(params, backup)
    return [(gp - gm) / (2.0 * eps) for gp, gm in zip(g_plus, g_minus, strict=True)]


def unrolled_arch_grads(
    loss_fn: Callable[[Batch], torch.Tensor],
    arch_params: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    train_batch: Batch,
    val_batch: Batch,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    momentum_buffers: Sequence[torch.Tensor | None] | None = None,
    r: float = 0.01,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """DARTS' second-order gradient of the validation loss w.r.t. the architecture.

    ``weights`` are modified in place during the computation and restored before
    returning (also on error). Their ``.grad`` fields are not touched.

    Args:
        loss_fn: ``loss_fn(batch)`` -> mean loss of the network at the current weights and
            architecture (builds a graph).
        arch_params: The architecture tensors ``alpha``.
        weights: The network weights ``w`` (those without ``requires_grad`` are ignored).
        train_batch: Batch of the virtual step.
        val_batch: Batch of the validation loss.
        lr: The virtual step's learning rate ``xi``.
        momentum: The weight optimizer's momentum ``mu``.
        weight_decay: Its weight decay.
        momentum_buffers: Its momentum buffers ``v``, aligned with ``weights``; ``None``
            (or ``None`` entries) means no buffer yet.
        r: Relative finite-difference step.

    Returns:
        ``(grads, val_loss)``: one gradient per arch param and the detached validation
        loss at the unrolled weights.
    """
    pairs = [
        (w, None if momentum_buffers is None else momentum_buffers[i]) for i, w in enumerate(weights) if w.requires_grad
    ]
    ws = [w for w, _ in pairs]
    backup = [w.detach().clone() for w in ws]
    n_arch = len(arch_params)

    g_train = grads_or_zeros(loss_fn(train_batch), ws)
    try:
        with torch.no_grad():
            for (w, v), g in zip(pairs, g_train, strict=True):
                d = g.add(w, alpha=weight_decay) if weight_decay else g.clone()
                if momentum and v is not None:
                    d.add_(v, alpha=momentum)
                w.sub_(d, alpha=lr)
        val_loss = loss_fn(val_batch)
        grads = grads_or_zeros(val_loss, list(arch_params) + ws)
        d_alpha, d_w = grads[:n_arch], [g.detach() for g in grads[n_arch:]]
        # The mixed second derivative is taken at the original weights, not at w'.
        _copy_into(ws, backup)
        hvp = finite_difference_hvp(lambda: grads_or_zeros(loss_fn(train_batch), arch_params), ws, d_w, r)
    finally:
        _copy_into(ws, backup)
    return [da.detach() - lr * h for da, h in zip(d_alpha, hvp, strict=True)], val_loss.detach()
