"""The sparse-coding pieces of ISTA-NAS, as plain functions.

A node (choice group) with ``n = edges x ops`` candidates is described by a sparse vector
``x`` in R^n, observed through a fixed random matrix ``A`` (``m x n``) as the code
``b = A x``. The search learns ``b``. Given the current support ``S`` (the ``s`` largest
entries of the last recovered ``x``), the mixing weights are one ISTA step from ``x``
restricted to ``S``, without the shrinkage:

    alpha_S = x_S - A_S^T (A_S x_S - b) = A_S^T b - (A_S^T A_S - I) x_S,   alpha_{not S} = 0.

``alpha_S`` is affine in ``b`` with Jacobian ``A_S^T``, so ``b`` receives the training
loss's gradient through an ``s x m`` matrix and only ``s`` candidates are computed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

__all__ = ["measurement_matrix", "sparse_code_weights", "top_s_support"]


def measurement_matrix(
    m: int, n: int, kind: str = "gaussian", generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random ``m x n`` measurement matrix.

    Args:
        m: Code length.
        n: Number of candidates.
        kind: ``"gaussian"``: entries ``N(0, 1/m)``, so columns have unit norm in
            expectation (the textbook compressed-sensing choice); ``"uniform"``: entries
            ``U(0, 1)`` (what the ISTA-NAS code samples).
        generator: Seeded generator, for a reproducible matrix.

    Returns:
        A float32 ``(m, n)`` tensor.
    """
    if kind == "gaussian":
        return torch.randn(m, n, generator=generator) / m**0.5
    if kind == "uniform":
        return torch.rand(m, n, generator=generator)
    raise ValueError(f"unknown measurement matrix kind {kind!r}; expected gaussian or uniform")


def sparse_code_weights(A: torch.Tensor, b: torch.Tensor, x: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``alpha_S = A_S^T b - (A_S^T A_S - I) x_S`` on the support.

    Args:
        A: ``(m, n)`` measurement matrix.
        b: ``(m,)`` code (differentiable).
        x: ``(n,)`` last recovered sparse vector.
        support: ``(s,)`` long indices of the active candidates.

    Returns:
        ``(s,)`` weights of the active candidates, in ``support`` order.
    """
    a_s = A.index_select(1, support)
    x_s = x.index_select(0, support)
    # Written as x_S + A_S^T (b - A_S x_S): the same quantity, without forming the Gram.
    return x_s + a_s.T @ (b - a_s @ x_s)


def top_s_support(
    x: Sequence[float] | torch.Tensor,
    s: int,
    num_ops: int,
    allowed_ops: Sequence[int] | None = None,
    distinct_edges: bool = False,
    excluded: Collection[int] = (),
) -> list[int]:
    """Indices of the ``s`` largest ``|x|`` entries, sorted ascending.

    ``x`` is laid out edge-major: entry ``i`` is edge ``i // num_ops``, op ``i % num_ops``.
    Ties go to the lower index, so the result is deterministic.

    Args:
        x: The recovered vector.
        s: Support size (capped at the number of eligible entries).
        num_ops: Ops per edge.
        allowed_ops: Op indices that may enter the support (e.g. all but ``none``);
            ``None`` allows all.
        distinct_edges: At most one op per edge, as in a DARTS genotype, when the group
            has at least ``s`` edges.
        excluded: Flat indices that may not enter the support (e.g. ops over a cap).

    Returns:
        The support, as a sorted list of flat indices.
    """
    values = x.tolist() if isinstance(x, torch.Tensor) else list(x)
    allowed = set(range(num_ops) if allowed_ops is None else allowed_ops)
    banned = set(excluded)
    eligible = [i for i in range(len(values)) if i % num_ops in allowed and i not in banned]
    order = sorted(eligible, key=lambda i: (-abs(values[i]), i))
    edges = len(values) // num_ops
    if not distinct_edges or edges < s:
        return sorted(order[:s])
    chosen: list[int] = []
    used: set[int] = set()
    for i in order:
        if i // num_ops in used:
            continue
        chosen.append(i)
        used.add(i // num_ops)
        if len(chosen) == s:
            break
    return sorted(chosen)
