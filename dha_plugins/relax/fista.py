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
    tensor([1., 0., 0.], dtype=torch.float64)
"""

from __future__ import annotations

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
    continuation: bool = True,
) -> FistaResult:
    """Solves ``min_x 1/2 ||A x - b||^2 + lam ||x||_1`` with restarted FISTA.

    Several independent problems of the same shape can be solved at once by stacking
    them (``A`` of shape ``(B, m, n)``, ``b`` of shape ``(B, m)``): the per-iteration cost
    on these tiny problems is dominated by the Python loop, not by the arithmetic, so
    solving every node of a cell in one call is several times faster than one call per
    node. Problems with fewer candidates can be padded with zero columns, whose entries
    of ``x`` stay exactly zero.

    Args:
        A: ``(m, n)`` measurement matrix, or ``(B, m, n)`` for a batch.
        b: ``(m,)`` measurements, or ``(B, m)``.
        lam: L1 weight (``>= 0``). ``lam = 0`` gives a least-squares solution.
        x0: Warm start of ``x``'s shape; zeros when omitted.
        max_iter: Iteration cap.
        tol: Stop when every problem has ``||x_k - x_{k-1}|| <= tol * max(1, ||x_k||)``.
        dtype: Working precision (float64 by default, since the problems are tiny and
            the caller compares solutions across epochs to decide freezing); ``None``
            keeps ``A``'s dtype.
        continuation: Approach ``lam`` through a geometric path of larger weights,
            each stage warm-starting the next (much faster for small ``lam``); the
            answer is the same minimiser.

    Returns:
        A :class:`FistaResult`; ``x`` has shape ``(n,)`` (or ``(B, n)``) and ``b``'s
        dtype and device.

    Raises:
        ValueError: Shapes do not match or ``lam`` is negative.
    """
    batched = A.dim() == 3
    if A.dim() not in (2, 3) or b.dim() != A.dim() - 1 or A.shape[:-1] != b.shape:
        raise ValueError(f"fista: expected A (m, n) and b (m,), or A (B, m, n) and b (B, m); "
                         f"got {tuple(A.shape)} and {tuple(b.shape)}")
    if lam < 0:
        raise ValueError(f"fista: lam must be >= 0, got {lam}")
    out_dtype, out_device = b.dtype, b.device
    work = dtype or A.dtype
    # Host-side: the loop checks convergence every iteration, which would be one device
    # synchronisation per iteration on an accelerator, and the matrices are tiny.
    A = A.detach().to("cpu", work)
    b = b.detach().to("cpu", work)
    if not batched:
        A, b = A.unsqueeze(0), b.unsqueeze(0)
    n = A.shape[-1]
    x = torch.zeros(A.shape[0], n, dtype=work) if x0 is None else x0.detach().to("cpu", work).reshape(-1, n).clone()

    gram = A.transpose(1, 2) @ A
    atb = (A.transpose(1, 2) @ b.unsqueeze(-1)).squeeze(-1)
    lipschitz = torch.linalg.matrix_norm(A, ord=2) ** 2
    # A == 0: the objective is lam*||x||_1; any positive step shrinks x to its minimiser 0.
    lipschitz = torch.where(lipschitz > 0, lipschitz, torch.ones_like(lipschitz))
    step = (1.0 / lipschitz).unsqueeze(-1)

    total = 0
    converged = False
    for stage_lam in _lambda_path(atb, lam, continuation):
        x, iters, converged = _fista_stage(gram, atb, step, x, stage_lam, max_iter - total, tol, A.shape[1])
        total += iters
        if total >= max_iter:
            break
    if not batched:
        x = x.squeeze(0)
    return FistaResult(x.to(out_device, out_dtype), total, converged)


def _lambda_path(atb: torch.Tensor, lam: float, continuation: bool) -> list[torch.Tensor]:
    """Per-problem L1 weights of the continuation stages, ending at ``lam``.

    Above ``lam_max = ||A^T b||_inf`` the solution is zero; FISTA is fast for large
    weights and slow for tiny ones (ISTA-NAS uses ``lam`` ~ 1e-5 ``lam_max`` and less), so
    the weight is lowered geometrically from ``lam_max`` and each stage warm-starts the next.
    """
    final = torch.full(atb.shape[:1], float(lam), dtype=atb.dtype)
    if not continuation:
        return [final]
    lam_max = atb.abs().amax(dim=-1)
    path = []
    level = lam_max * _CONTINUATION_FACTOR
    while bool((level > final).any()):
        path.append(torch.maximum(level, final))
        level = level * _CONTINUATION_FACTOR
    return path + [final]


def _fista_stage(
    gram: torch.Tensor,
    atb: torch.Tensor,
    step: torch.Tensor,
    x: torch.Tensor,
    lam: torch.Tensor,
    max_iter: int,
    tol: float,
    m: int,
) -> tuple[torch.Tensor, int, bool]:
    """Restarted FISTA on a batch of problems with per-problem weights ``lam`` ``(B,)``."""
    threshold = lam.unsqueeze(-1) * step
    lams = lam.tolist()
    # One block-diagonal matrix-vector product instead of a batched one: on CPU, batched
    # float64 matmuls of this size take milliseconds, a single addmv microseconds.
    big_gram = torch.block_diag(*gram)
    flat_atb = atb.reshape(-1)
    y = x.clone()
    t = torch.ones_like(lam)
    ones = torch.ones_like(t)
    result = x.clone()
    done = [False] * x.shape[0]
    it = 0
    for it in range(1, max_iter + 1):
        grad = torch.addmv(flat_atb, big_gram, y.reshape(-1), beta=-1.0).view_as(y)
        z = y - step * grad
        x_new = z - torch.clamp(z, -threshold, threshold)  # soft threshold in one op
        delta = x_new - x
        # Adaptive restart: where the momentum direction points uphill, drop the momentum.
        t = torch.where(((y - x_new) * delta).sum(-1) > 0, ones, t)
        t_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
        y = torch.addcmul(x_new, ((t - 1.0) / t_new).unsqueeze(-1), delta)
        x, t = x_new, t_new
        if it % _CHECK_EVERY and it != max_iter:
            continue
        small = (delta.norm(dim=-1) <= tol * x.norm(dim=-1).clamp(min=1.0)).tolist()
        for i in range(len(done)):
            if done[i]:
                continue
            exact = _polish(gram[i], atb[i], x[i], lams[i], m)
            if exact is not None or small[i]:
                result[i] = x[i] if exact is None else exact
                done[i] = True
        if all(done):
            break
    for i in range(len(done)):
        if not done[i]:
            result[i] = x[i]
    return result, it, all(done)


_CONTINUATION_FACTOR = 0.3
"""Ratio of consecutive L1 weights on the continuation path."""

_CHECK_EVERY = 10
"""Iterations between convergence checks (each check costs about as much as a few iterations)."""


def _polish(gram: torch.Tensor, atb: torch.Tensor, x: torch.Tensor, lam: float, m: int) -> torch.Tensor | None:
    """The exact LASSO minimiser on ``x``'s support and signs, if the KKT conditions confirm it.

    FISTA finds the support and signs long before the values converge (its rate degrades
    when ``lam`` is small next to ``b``, as in ISTA-NAS). With support ``S`` and signs
    ``sigma`` fixed, the optimality conditions ``A_S^T (A_S x_S - b) = -lam sigma`` are a
    linear system. Its solution is the global minimiser exactly when the signs agree and
    ``|A^T (A x - b)|_i <= lam`` off ``S`` (the problem is convex, so KKT suffices).

    Args:
        gram: ``A^T A``, ``(n, n)``.
        atb: ``A^T b``, ``(n,)``.
        x: The current iterate.
        lam: L1 weight.
        m: Rows of ``A`` (a support larger than ``m`` cannot be a unique solution).

    Returns:
        The minimiser, or ``None`` when the current support is not yet the right one.
    """
    support = torch.nonzero(x).squeeze(-1)
    if support.numel() > m:
        return None
    out = torch.zeros_like(x)
    if support.numel():
        sign = torch.sign(x[support])
        sol = torch.linalg.solve_ex(gram[support][:, support], atb[support] - lam * sign)
        if int(sol.info) != 0:
            return None
        if bool((sol.result * sign <= 0).any()):
            return None
        out[support] = sol.result
    resid = gram @ out - atb
    slack = lam * (1.0 + 1e-9) + 1e-12 * float(atb.abs().max().clamp(min=1.0))
    off = torch.ones_like(x, dtype=torch.bool)
    off[support] = False
    if bool((resid[off].abs() > slack).any()):
        return None
    return out
