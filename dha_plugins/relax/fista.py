"""FISTA for the LASSO problem, written in plain torch.

ISTA-NAS recovers the sparse architecture ``x`` of a node from its compressed code ``b``
by solving

    min_x  1/2 ||A x - b||_2^2 + lam ||x||_1 .

The problems are tiny (``A`` is ``m x n`` with ``n`` = edges x ops <= a few dozen), so the
solver favours exactness over speed: it runs in float64 by default, precomputes the Gram
matrix, and uses the gradient-based adaptive restart of O'Donoghue & Candes (2015), which
turns FISTA's O(1/k^2) rate into a linear one on these (locally) strongly convex problems.

Example:
    >>> A = torch.eye(3, dtype=torch.float64)
    >>> fista(A, torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64), lam=1.0).x
    tensor([1., 0., -0.], dtype=torch.float64)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["FistaResult", "fista", "lasso_objective", "soft_threshold"]


class FistaResult(NamedTuple):
    """Outcome of :func:`fista`.

    Attributes:
        x: The minimiser, shape ``(n,)``.
        iterations: Iterations run.
        converged: Whether the step-size criterion was met before ``max_iter``.
    """

    x: torch.Tensor
    iterations: int
    converged: bool


def soft_threshold(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """The proximal operator of ``threshold * ||.||_1``: ``sign(x) * max(|x| - t, 0)``.

    Args:
        x: Any tensor.
        threshold: Non-negative shrinkage amount.

    Returns:
        The shrunk tensor, same shape and dtype as ``x``.
    """
    return torch.sign(x) * torch.clamp(x.abs() - threshold, min=0.0)


def lasso_objective(A: torch.Tensor, b: torch.Tensor, x: torch.Tensor, lam: float) -> torch.Tensor:
    """``1/2 ||A x - b||^2 + lam ||x||_1``.

    Args:
        A: ``(m, n)`` measurement matrix.
        b: ``(m,)`` measurements.
        x: ``(n,)`` candidate solution.
        lam: L1 weight.

    Returns:
        The objective as a 0-d tensor.
    """
    r = A @ x - b
    return 0.5 * r.dot(r) + lam * x.abs().sum()


@torch.no_grad()
def fista(
    A: torch.Tensor,
    b: torch.Tensor,
    lam: float,
    x0: torch.Tensor | None = None,
    max_iter: int = 20000,
    tol: float = 1e-12,
    dtype: torch.dtype | None = torch.float64,
) -> FistaResult:
    """Solves ``min_x 1/2 ||A x - b||^2 + lam ||x||_1`` with restarted FISTA.

    Args:
        A: ``(m, n)`` measurement matrix.
        b: ``(m,)`` measurements.
        lam: L1 weight (``>= 0``). ``lam = 0`` gives a least-squares solution.
        x0: Warm start, shape ``(n,)``; zeros when omitted.
        max_iter: Iteration cap.
        tol: Stop when ``||x_k - x_{k-1}|| <= tol * max(1, ||x_k||)``.
        dtype: Working precision (float64 by default, since the problems are tiny and
            the caller compares solutions across epochs to decide freezing); ``None``
            keeps ``A``'s dtype.

    Returns:
        A :class:`FistaResult`; ``x`` has ``b``'s dtype and device.

    Raises:
        ValueError: Shapes do not match or ``lam`` is negative.
    """
    if A.dim() != 2 or b.dim() != 1 or A.shape[0] != b.shape[0]:
        raise ValueError(f"fista: expected A (m, n) and b (m,), got {tuple(A.shape)} and {tuple(b.shape)}")
    if lam < 0:
        raise ValueError(f"fista: lam must be >= 0, got {lam}")
    out_dtype, out_device = b.dtype, b.device
    work = dtype or A.dtype
    # Host-side: the loop checks convergence every iteration, which would be one device
    # synchronisation per iteration on an accelerator, and the matrices are tiny.
    A = A.detach().to("cpu", work)
    b = b.detach().to("cpu", work)
    n = A.shape[1]
    x = torch.zeros(n, dtype=work) if x0 is None else x0.detach().to("cpu", work).clone()

    gram = A.T @ A
    atb = A.T @ b
    lipschitz = float(torch.linalg.matrix_norm(A, ord=2)) ** 2
    if lipschitz == 0.0:  # A == 0: the objective is lam*||x||_1, minimised at 0
        return FistaResult(torch.zeros(n, dtype=out_dtype, device=out_device), 0, True)
    step = 1.0 / lipschitz
    threshold = lam * step

    y = x.clone()
    t = 1.0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        x_new = soft_threshold(y - step * (gram @ y - atb), threshold)
        delta = x_new - x
        # Adaptive restart: when the momentum direction points uphill, drop the momentum.
        if float((y - x_new).dot(delta)) > 0.0:
            t = 1.0
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = x_new + ((t - 1.0) / t_new) * delta
        x, t = x_new, t_new
        if float(delta.norm()) <= tol * max(1.0, float(x.norm())):
            converged = True
            break
    return FistaResult(x.to(out_device, out_dtype), it, converged)
