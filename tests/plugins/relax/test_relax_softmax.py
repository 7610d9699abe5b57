"""relax=softmax: DARTS first/second-order gradients, the genotype rule, the resource penalty."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from dha_core import get_registry
from dha_core.interfaces import ArchStepContext, DataSpec
from dha_core.types import ChoiceGroup, MixingWeights, SelectedOp
from dha_plugins.relax.softmax import SoftmaxConfig, SoftmaxRelaxation
from dha_plugins.relax.unrolled import finite_difference_hvp, unrolled_arch_grads


def _tiny(channels: int = 2, keep: int = 2) -> Any:
    reg = get_registry()
    spec = DataSpec(num_classes=3, channels=3, image_size=4)
    return reg.create("space", reg.get("space", "tiny").config(channels=channels, keep=keep), data_spec=spec)


def _batches(seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple((torch.randn(6, 3, 4, 4, generator=gen, dtype=dtype), torch.randint(0, 3, (6,), generator=gen))
                 for _ in range(2))


def _smooth(net: torch.nn.Module) -> torch.nn.Module:
    """Swaps ReLU for tanh: the central difference is O(eps^2)-accurate only on a smooth
    loss (a finite step may cross ReLU kinks), and the comparison below is about the
    formula, not about kinks."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.Tanh())
    return net


def _setup(order: str = "second", **kw: Any) -> tuple[Any, Any, SoftmaxRelaxation]:
    torch.manual_seed(0)
    space = _tiny()
    net = _smooth(space.build_supernet()).double()
    relax = SoftmaxRelaxation(SoftmaxConfig(order=order, init_std=0.5, **kw))
    relax.setup(space.choice_groups(), space)
    relax.double()
    return space, net, relax


def test_finite_difference_hvp_is_exact_on_a_bilinear_form() -> None:
    # grad_alpha of alpha^T M w is M w, linear in w: the central difference is exact, and
    # its Jacobian-vector product with v is M v. The "(p - n) / 2. * eps" precedence bug
    # would return (eps^2 / 4) * M v here, off by orders of magnitude.
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(5, generator=gen, dtype=torch.float64)
    v = torch.randn(5, generator=gen, dtype=torch.float64)
    w0 = w.clone()
    (hvp,) = finite_difference_hvp(lambda: [M @ w], [w], [v], r=0.01)
    assert torch.allclose(hvp, M @ v, rtol=1e-8, atol=1e-10)
    assert torch.equal(w, w0)  # restored exactly
    (zero,) = finite_difference_hvp(lambda: [M @ w], [w], [torch.zeros(5, dtype=torch.float64)])
    assert torch.equal(zero, torch.zeros(4, dtype=torch.float64))


def test_finite_difference_hvp_matches_autograd_on_a_nonlinear_function() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, generator=gen, dtype=torch.float64)

    def f(a_: torch.Tensor, w_: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(a_ * w_) ** 2).sum() + (a_.exp() * w_.sin()).sum()

    exact = torch.autograd.functional.jacobian(lambda w_: torch.autograd.grad(f(a, w_), a, create_graph=True)[0], w) @ v
    (approx,) = finite_difference_hvp(lambda: [torch.autograd.grad(f(a, w), a)[0]], [w], [v], r=1e-3)
    assert torch.allclose(approx, exact, rtol=1e-6, atol=1e-9)


def _reference_weights(relax: SoftmaxRelaxation) -> MixingWeights:
    """DARTS' mixing weights built from the alpha parameters alone: ``softmax(alpha[e])`` per
    edge, every candidate dense. The references below use this instead of
    ``relax.mixing_weights()``, so a relaxation that mixes with anything else (a temperature,
    the wrong axis) disagrees with them rather than cancelling out."""
    values = {g.name: torch.softmax(a, dim=-1) for g, a in zip(relax.groups, relax.alphas, strict=True)}
    return MixingWeights(values, {g.name: None for g in relax.groups})


def _assert_softmax_of_alpha(weights: dict[str, torch.Tensor], relax: SoftmaxRelaxation) -> None:
    """``weights[g]`` equals ``exp(alpha) / sum_ops exp(alpha)`` row by row, written out by hand."""
    assert set(weights) == {g.name for g in relax.groups}
    for g, a in zip(relax.groups, relax.alphas, strict=True):
        e = a.detach().exp()
        want = e / e.sum(dim=1, keepdim=True)
        assert weights[g.name].shape == g.shape
        torch.testing.assert_close(weights[g.name].detach(), want, rtol=1e-12, atol=1e-12)


def test_mixing_weights_are_softmax_of_alpha_per_edge() -> None:
    _, net, relax = _setup()
    # init_std=0.5 makes the logits far from uniform, so a scaled or transposed softmax differs.
    assert all(float(a.detach().std()) > 0.1 for a in relax.alphas)
    _assert_softmax_of_alpha(relax.probabilities(), relax)
    mixing = relax.mixing_weights()
    _assert_softmax_of_alpha(mixing.values, relax)
    assert mixing.active == {g.name: None for g in relax.groups}  # dense: every candidate computed
    # The weights stay differentiable in alpha (the arch gradient flows through them).
    for g, a in zip(relax.groups, relax.alphas, strict=True):
        (grad,) = torch.autograd.grad(mixing.values[g.name][0, 0], a, retain_graph=True)
        assert grad[0].abs().sum() > 0 and torch.count_nonzero(grad[1:]) == 0  # softmax is per edge
    # What the supernet computes with them is what it computes with softmax(alpha).
    x = _batches()[0][0]
    torch.testing.assert_close(net(x, mixing), net(x, _reference_weights(relax)), rtol=0, atol=0)


def _exact_second_order(net: Any, relax: SoftmaxRelaxation, train: Any, val: Any, xi: float, mu: float, wd: float,
                        bufs: list[torch.Tensor]) -> list[torch.Tensor]:
    """dL_val(w'(alpha), alpha)/dalpha with w' differentiated through autograd (no FD); the
    mixing weights are ``softmax(alpha)`` built directly from the parameters."""
    names = [n for n, _ in net.named_parameters()]
    params = [p for _, p in net.named_parameters()]

    def loss_at(weights: list[torch.Tensor], batch: Any) -> torch.Tensor:
        out = functional_call(net, dict(zip(names, weights)), (batch[0], _reference_weights(relax)))
        return F.cross_entropy(out, batch[1])

    grads = torch.autograd.grad(loss_at(params, train), params, create_graph=True)
    unrolled = [p - xi * (g + wd * p + mu * v) for p, g, v in zip(params, grads, bufs)]
    return [g.detach() for g in torch.autograd.grad(loss_at(unrolled, val), list(relax.alphas))]


def test_second_order_gradient_matches_exact_autograd() -> None:
    _, net, relax = _setup()
    train, val = _batches()
    xi, mu, wd = 0.5, 0.9, 3e-4
    gen = torch.Generator().manual_seed(7)
    bufs = [0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in net.parameters()]

    def loss(batch: Any) -> torch.Tensor:
        return F.cross_entropy(net(batch[0], relax.mixing_weights()), batch[1])

    w_before = [p.detach().clone() for p in net.parameters()]
    ours, _ = unrolled_arch_grads(loss, list(relax.alphas), list(net.parameters()), train, val, lr=xi, momentum=mu,
                                  weight_decay=wd, momentum_buffers=bufs, r=0.01)
    exact = _exact_second_order(net, relax, train, val, xi, mu, wd, bufs)
    ref_val = F.cross_entropy(net(val[0], _reference_weights(relax)), val[1])
    first = [g.detach() for g in torch.autograd.grad(ref_val, list(relax.alphas))]

    ours_v, exact_v, first_v = (torch.cat([g.flatten() for g in gs]) for gs in (ours, exact, first))
    err = float((ours_v - exact_v).norm())
    # The second-order term is a sizeable part of the gradient here, so a missing or
    # eps^2-shrunk correction (the "/2.*eps" bug) cannot pass the 1e-4 check below.
    assert float((exact_v - first_v).norm()) > 0.05 * float(exact_v.norm())
    assert err <= 1e-4 * float(exact_v.norm()), err
    # Weights are restored bit for bit and their .grad is untouched.
    assert all(torch.equal(p, w) for p, w in zip(net.parameters(), w_before))
    assert all(p.grad is None for p in net.parameters())


def test_arch_step_second_order_uses_context_and_momentum_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    _, net, relax = _setup()
    train, val = _batches(seed=3)
    bufs = [torch.full_like(p, 0.05) for p in net.parameters()]
    calls: list[Any] = []
    received: list[dict[str, torch.Tensor]] = []
    # Records the mixing weights every supernet forward of the step receives.
    net.register_forward_pre_hook(lambda _m, args: received.append(args[1].values))

    def loss(batch: Any) -> torch.Tensor:
        calls.append(batch)
        return F.cross_entropy(net(batch[0], relax.mixing_weights()), batch[1])

    captured: list[list[torch.Tensor]] = []
    monkeypatch.setattr(relax, "apply_grads", lambda grads: captured.append(list(grads)))
    ctx = ArchStepContext(loss=loss, weight_params=list(net.parameters()), weight_lr=0.3, weight_momentum=0.9,
                          weight_decay=1e-3, train_batch=train, val_batch=val, momentum_buffers=bufs)
    metrics = relax.arch_step(ctx)
    assert "softmax/val_loss" in metrics
    # train (virtual step), val (at w'), train twice (finite difference).
    assert [c is train for c in calls] == [True, False, True, True]
    assert len(received) == 4
    for weights in received:
        _assert_softmax_of_alpha(weights, relax)  # apply_grads is stubbed: alpha is unchanged
    exact = _exact_second_order(net, relax, train, val, 0.3, 0.9, 1e-3, bufs)
    for got, want in zip(captured[0], exact):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-8)


def test_first_order_step_is_adam_on_the_validation_gradient() -> None:
    _, net, relax = _setup(order="first", lr=0.01, weight_decay=0.0)
    train, val = _batches(seed=4)

    def loss(batch: Any) -> torch.Tensor:
        return F.cross_entropy(net(batch[0], relax.mixing_weights()), batch[1])

    ref = [torch.nn.Parameter(a.detach().clone()) for a in relax.alphas]
    ref_val = F.cross_entropy(net(val[0], _reference_weights(relax)), val[1])
    grads = torch.autograd.grad(ref_val, list(relax.alphas))
    opt = torch.optim.Adam(ref, lr=0.01, betas=(0.5, 0.999))
    for p, g in zip(ref, grads):
        p.grad = g.clone()
    opt.step()
    relax.arch_step(ArchStepContext(loss=loss, weight_params=list(net.parameters()), weight_lr=0.1,
                                    train_batch=train, val_batch=val))
    for a, r in zip(relax.alphas, ref):
        assert torch.allclose(a, r, atol=1e-12)
    assert all(p.grad is None for p in net.parameters())


def test_bilevel_step_requires_a_validation_batch() -> None:
    _, net, relax = _setup(order="first")
    ctx = ArchStepContext(loss=lambda b: torch.zeros(()), weight_params=[], weight_lr=0.1)
    with pytest.raises(ValueError, match="val_batch"):
        relax.arch_step(ctx)


def test_zero_groups_never_evaluate_the_loss() -> None:
    relax = SoftmaxRelaxation(SoftmaxConfig(order="second"))
    relax.setup([])

    def boom(batch: Any) -> torch.Tensor:
        raise AssertionError("no loss needed without choices")

    assert relax.arch_step(ArchStepContext(loss=boom, weight_params=[], weight_lr=0.1)) == {}
    assert relax.selection() == {} and relax.mixing_weights().values == {}


G_NONE = ChoiceGroup("n", ("e0", "e1", "e2"), ("none", "a", "b"), keep=2, none_op="none")
G_SINGLE = ChoiceGroup("blk", ("e0",), ("k3", "k5", "zero"), keep=1, none_op=None)


def _with_alphas(values: list[list[list[float]]], fold: bool = True) -> SoftmaxRelaxation:
    relax = SoftmaxRelaxation(SoftmaxConfig(fold_weights=fold))
    relax.setup([G_NONE, G_SINGLE])
    with torch.no_grad():
        for a, v in zip(relax.alphas, values):
            a.copy_(torch.tensor(v))
    return relax


def test_genotype_rule_excludes_none_and_keeps_strongest_edges() -> None:
    relax = _with_alphas([
        [[9.0, 1.0, 0.0], [9.0, 0.0, 2.0], [9.0, 0.5, 0.4]],  # none dominates every edge
        [[0.0, 1.0, 3.0]],
    ])
    sel = relax.selection()
    probs = {g.name: torch.softmax(a.detach(), dim=-1) for g, a in zip(relax.groups, relax.alphas)}
    # Best non-none op per edge: e0 -> a, e1 -> b (strongest), e2 -> a; keep e1 and e0.
    assert [(s.edge, s.op) for s in sel["n"]] == [(0, 1), (1, 2)]
    assert sel["n"][1].weight == pytest.approx(float(probs["n"][1, 2].detach()))
    assert [(s.edge, s.op) for s in sel["blk"]] == [(0, 2)]  # no none_op: "zero" is a real op here
    unit = _with_alphas([[[0.0] * 3] * 3, [[0.0, 1.0, 0.0]]], fold=False).selection()
    assert unit["blk"] == [SelectedOp(0, 1, 1.0)]
    assert [(s.edge, s.op) for s in unit["n"]] == [(0, 1), (1, 1)]  # ties: lowest indices


class _CostSpace:
    """Stands in for a space that reports candidate costs."""

    def candidate_costs(self, metric: str = "params") -> dict[str, torch.Tensor]:
        assert metric == "flops"
        return {"n": torch.tensor([[0.0, 100.0, 10.0]] * 3), "blk": torch.tensor([[50.0, 200.0, 0.0]])}


def test_resource_penalty_gradient_and_effect() -> None:
    relax = SoftmaxRelaxation(SoftmaxConfig(penalty=2.0, penalty_metric="flops", lr=0.05, weight_decay=0.0))
    relax.setup([G_NONE, G_SINGLE], _CostSpace())
    # From alpha directly, not through the relaxation, so the cost is pinned to softmax(alpha).
    probs = {g.name: torch.softmax(a.detach(), dim=-1) for g, a in zip(relax.groups, relax.alphas)}
    expected = sum((probs[n] * c).sum() for n, c in _CostSpace().candidate_costs("flops").items())
    assert float(relax.expected_cost().detach()) == pytest.approx(float(expected))
    # Penalty = 2 * E[cost] / (3 * 100 + 200).
    assert float(relax.penalty_loss().detach()) == pytest.approx(2.0 * float(expected) / 500.0)

    # A loss that ignores alpha: the step is driven by the penalty alone.
    dummy = lambda batch: 0.0 * sum(a.sum() for a in relax.alphas)  # noqa: E731
    ctx = ArchStepContext(loss=dummy, weight_params=[], weight_lr=0.1, val_batch=(torch.zeros(1), torch.zeros(1)))
    start = float(relax.expected_cost().detach())
    for _ in range(20):
        metrics = relax.arch_step(ctx)
    assert "softmax/penalty" in metrics
    end = float(relax.expected_cost().detach())
    assert end < 0.8 * start
    assert relax.report()["expected_flops"] == pytest.approx(end)


def test_penalty_is_disabled_without_costs(caplog: pytest.LogCaptureFixture) -> None:
    relax = SoftmaxRelaxation(SoftmaxConfig(penalty=1.0))
    relax.setup([G_NONE], space=object())
    assert relax.penalty_loss() is None
    assert "penalty is disabled" in caplog.text
