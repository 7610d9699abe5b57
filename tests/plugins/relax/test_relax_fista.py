"""FISTA against an independent LASSO solver (scikit-learn's coordinate descent)."""

from __future__ import annotations

import pytest
import torch

from dha_plugins.relax.fista import fista, lasso_objective, soft_threshold

sklearn_lm = pytest.importorskip("sklearn.linear_model")

# (m, n): under-determined like an ISTA-NAS node (m=7 code, 5 edges x 7 ops), square and
# over-determined like a MobileNet block with a longer code.
SHAPES = [(7, 35), (7, 14), (8, 8), (20, 7)]


@pytest.mark.parametrize("m,n", SHAPES)
@pytest.mark.parametrize("lam", [1e-3, 3e-2, 0.2])
@pytest.mark.parametrize("seed", [0, 1])
def test_fista_matches_sklearn_lasso(m: int, n: int, lam: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(1000 * seed + 10 * m + n)
    A = torch.randn(m, n, generator=gen, dtype=torch.float64) / m**0.5
    b = torch.randn(m, generator=gen, dtype=torch.float64)
    result = fista(A, b, lam)
    assert result.converged
    # sklearn minimises 1/(2 m) ||b - A x||^2 + a ||x||_1, i.e. ours divided by m: a = lam / m.
    ref = sklearn_lm.Lasso(alpha=lam / m, fit_intercept=False, tol=1e-14, max_iter=1_000_000)
    ref.fit(A.numpy(), b.numpy())
    expected = torch.from_numpy(ref.coef_)
    assert torch.allclose(result.x, expected, atol=1e-4, rtol=0)
    assert lasso_objective(A, b, result.x, lam) <= lasso_objective(A, b, expected, lam) + 1e-10


def test_fista_satisfies_lasso_optimality_conditions() -> None:
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(7, 21, generator=gen, dtype=torch.float64)
    b = torch.randn(7, generator=gen, dtype=torch.float64)
    lam = 0.5
    x = fista(A, b, lam).x
    g = A.T @ (A @ x - b)
    on = x != 0
    assert on.any() and (~on).any()
    # Subgradient conditions: g_i = -lam sign(x_i) on the support, |g_i| <= lam off it.
    assert torch.allclose(g[on], -lam * torch.sign(x[on]), atol=1e-8)
    assert (g[~on].abs() <= lam + 1e-8).all()


def test_fista_large_lambda_gives_zero_and_zero_lambda_least_squares() -> None:
    gen = torch.Generator().manual_seed(4)
    A = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(12, generator=gen, dtype=torch.float64)
    lam_max = float((A.T @ b).abs().max())
    assert torch.equal(fista(A, b, lam_max * 1.01).x, torch.zeros(5, dtype=torch.float64))
    lstsq = torch.linalg.lstsq(A, b.unsqueeze(1)).solution.squeeze(1)
    assert torch.allclose(fista(A, b, 0.0).x, lstsq, atol=1e-8)


def test_fista_keeps_dtype_and_accepts_warm_start() -> None:
    gen = torch.Generator().manual_seed(5)
    A = torch.randn(7, 14, generator=gen)
    b = torch.randn(7, generator=gen)
    cold = fista(A, b, 0.05, continuation=False)
    warm = fista(A, b, 0.05, x0=cold.x, continuation=False)
    assert cold.x.dtype == torch.float32 and cold.x.shape == (14,)
    assert warm.iterations < cold.iterations
    assert torch.allclose(warm.x, cold.x, atol=1e-6)


def test_continuation_reaches_the_same_minimiser_faster_for_small_lambda() -> None:
    # The ISTA-NAS regime: lam is tiny next to ||A^T b||, where plain FISTA crawls.
    gen = torch.Generator().manual_seed(8)
    A = torch.randn(7, 14, generator=gen, dtype=torch.float64) / 7**0.5
    b = 0.5 * torch.randn(7, generator=gen, dtype=torch.float64)
    fast = fista(A, b, 1e-5)
    slow = fista(A, b, 1e-5, continuation=False, max_iter=200_000)
    assert fast.converged and slow.converged
    assert fast.iterations * 5 < slow.iterations
    assert torch.allclose(fast.x, slow.x, atol=1e-9)


def test_batched_problems_match_separate_solves_and_padding_stays_zero() -> None:
    gen = torch.Generator().manual_seed(9)
    As = [torch.randn(7, n, generator=gen, dtype=torch.float64) for n in (8, 14, 21)]
    bs = [torch.randn(7, generator=gen, dtype=torch.float64) for _ in As]
    # Pad every problem to 21 columns with zeros, as the ISTA relaxation does.
    A = torch.stack([torch.nn.functional.pad(a, (0, 21 - a.shape[1])) for a in As])
    batch = fista(A, torch.stack(bs), 0.02)
    assert batch.converged and batch.x.shape == (3, 21)
    for i, (a, b) in enumerate(zip(As, bs)):
        alone = fista(a, b, 0.02).x
        assert torch.allclose(batch.x[i, : a.shape[1]], alone, atol=1e-10)
        assert torch.equal(batch.x[i, a.shape[1]:], torch.zeros(21 - a.shape[1], dtype=torch.float64))


def test_fista_zero_matrix_and_bad_input() -> None:
    res = fista(torch.zeros(3, 4), torch.ones(3), 0.1)
    assert torch.equal(res.x, torch.zeros(4)) and res.converged
    with pytest.raises(ValueError, match="expected A"):
        fista(torch.zeros(3, 4), torch.ones(4), 0.1)
    with pytest.raises(ValueError, match="lam"):
        fista(torch.eye(2), torch.ones(2), -1.0)


def test_fista_reports_non_convergence() -> None:
    gen = torch.Generator().manual_seed(6)
    A = torch.randn(7, 35, generator=gen, dtype=torch.float64)
    b = torch.randn(7, generator=gen, dtype=torch.float64)
    res = fista(A, b, 1e-4, max_iter=3, continuation=False)
    assert not res.converged and res.iterations == 3
    assert fista(A, b, 1e-4, max_iter=3).iterations == 3  # the cap covers every stage


def test_soft_threshold() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 0.25, 2.0])
    assert torch.equal(soft_threshold(x, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 1.0]))
