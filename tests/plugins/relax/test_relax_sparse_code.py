"""The ISTA-NAS weight map, its gradient, support selection and the measurement matrix."""

from __future__ import annotations

import pytest
import torch

from dha_plugins.relax.fista import fista
from dha_plugins.relax.sparse_code import measurement_matrix, sparse_code_weights, top_s_support


def _problem(m: int = 7, n: int = 14, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    A = measurement_matrix(m, n, "gaussian", gen).double()
    b = torch.randn(m, generator=gen, dtype=torch.float64)
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    return A, b, x


def test_weights_follow_the_formula_on_the_support() -> None:
    A, b, x = _problem()
    support = torch.tensor([2, 9])
    a_s = A[:, support]
    expected = a_s.T @ b - (a_s.T @ a_s - torch.eye(2, dtype=torch.float64)) @ x[support]
    assert torch.allclose(sparse_code_weights(A, b, x, support), expected, atol=1e-12)


def test_weights_at_a_lasso_solution_are_x_plus_lambda_sign() -> None:
    # At a LASSO minimiser with support S: A_S^T (b - A_S x_S) = lam sign(x_S), so the
    # weights are x_S + lam sign(x_S): the recovered code, un-shrunk by one ISTA step.
    A, b, _ = _problem(m=12, n=8, seed=1)
    lam = 0.3
    x = fista(A, b, lam).x
    support = torch.nonzero(x).squeeze(1)
    assert 0 < len(support) < 8
    alpha = sparse_code_weights(A, b, x, support)
    assert torch.allclose(alpha, x[support] + lam * torch.sign(x[support]), atol=1e-8)


def test_gradient_of_b_matches_finite_differences() -> None:
    A, b, x = _problem(seed=2)
    support = torch.tensor([0, 5, 13])
    b = b.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda code: sparse_code_weights(A, code, x, support), (b,), eps=1e-6, atol=1e-7)
    # The Jacobian is A_S^T exactly.
    jac = torch.autograd.functional.jacobian(lambda code: sparse_code_weights(A, code, x, support), b)
    assert torch.allclose(jac, A[:, support].T)


def test_top_s_support_orders_by_magnitude_with_stable_ties() -> None:
    x = [0.1, -0.9, 0.3, 0.0, 0.9, -0.2]
    assert top_s_support(x, 2, num_ops=3) == [1, 4]
    assert top_s_support([0.0] * 6, 2, num_ops=3) == [0, 1]
    assert top_s_support(torch.tensor(x), 3, num_ops=3) == [1, 2, 4]


def test_top_s_support_excludes_disallowed_ops_and_caps_s() -> None:
    x = [5.0, 0.1, 0.2, 4.0, 0.3, 0.4]  # 2 edges x 3 ops, op 0 is "none"
    assert top_s_support(x, 2, num_ops=3, allowed_ops=[1, 2]) == [4, 5]
    assert top_s_support(x, 10, num_ops=3, allowed_ops=[1, 2]) == [1, 2, 4, 5]
    # Excluded entries (op caps) never enter, even when s exceeds what is left.
    assert top_s_support(x, 2, num_ops=3, allowed_ops=[1, 2], excluded={5}) == [2, 4]
    assert top_s_support(x, 10, num_ops=3, excluded=[0, 3]) == [1, 2, 4, 5]


def test_top_s_support_distinct_edges() -> None:
    x = [0.9, 0.8, 0.0, 0.1]  # 2 edges x 2 ops; plain top-2 lands on edge 0 twice
    assert top_s_support(x, 2, num_ops=2) == [0, 1]
    assert top_s_support(x, 2, num_ops=2, distinct_edges=True) == [0, 3]
    # Fewer edges than s: the constraint cannot hold and is dropped.
    assert top_s_support([0.9, 0.8, 0.7], 2, num_ops=3, distinct_edges=True) == [0, 1]


def test_measurement_matrix_is_seeded_and_scaled() -> None:
    a1 = measurement_matrix(7, 35, "gaussian", torch.Generator().manual_seed(0))
    a2 = measurement_matrix(7, 35, "gaussian", torch.Generator().manual_seed(0))
    a3 = measurement_matrix(7, 35, "gaussian", torch.Generator().manual_seed(1))
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    big = measurement_matrix(400, 300, "gaussian", torch.Generator().manual_seed(0))
    assert abs(float(big.norm(dim=0).mean()) - 1.0) < 0.05  # unit columns in expectation
    uni = measurement_matrix(7, 14, "uniform", torch.Generator().manual_seed(0))
    assert uni.min() >= 0 and uni.max() <= 1
    with pytest.raises(ValueError, match="unknown measurement matrix"):
        measurement_matrix(2, 2, "bernoulli")
