"""``hpo=hypergrad``: the closed-form hypergradient against autograd and finite differences,
the hyper-optimizer, the hyper-batch modes, safety and state.

The references are independent of the plugin: finite differences step ``torch.optim``
copies, and autograd differentiates an explicit one-step update written out here.
Everything runs in float64 so that the 1e-4 relative tolerance tests the math, not rounding.
"""

from __future__ import annotations

import copy
import functools
import io
import math
from collections.abc import Callable

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn
from torch.func import functional_call

from dha_core import get_registry
from dha_plugins.hpo.hypergrad import HypergradHPOConfig, HypergradHyperOptimizer

LR0, WD0 = 0.05, 2e-3
WARMUP = 3  # steps before the checked one, so momentum / Adam moments are non-trivial
RTOL = 1e-4

OPTIMIZERS = {
    "sgd": {"optimizer": "sgd", "momentum": 0.9, "nesterov": False},
    "sgd_nesterov": {"optimizer": "sgd", "momentum": 0.9, "nesterov": True},
    "sgd_plain": {"optimizer": "sgd", "momentum": 0.0, "nesterov": False},
    "adamw": {"optimizer": "adamw", "betas": (0.8, 0.95), "eps": 1e-6},
}


# ----------------------------------------------------------------------------- fixtures
def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _groups(net: nn.Module, layout: str) -> list[dict]:
    """Parameter groups as the orchestrator passes them."""
    w1, b1, w2, b2 = net.parameters()
    if layout == "split":
        return [
            {"name": "backbone", "params": [w1]},
            {"name": "head", "params": [w2]},
            {"name": "no_decay", "params": [b1, b2]},
        ]
    return [{"name": "backbone", "params": [w1, w2]}, {"name": "no_decay", "params": [b1, b2]}]


def _batches(n: int, seed: int = 1) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (8,), generator=gen))
        for _ in range(n)
    ]


TRAIN = _batches(WARMUP + 2)
HYPER = _batches(1, seed=7)[0]


def _loss(net: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    return nn.functional.cross_entropy(net(batch[0]), batch[1])


def _flat(groups: list[dict]) -> list[Tensor]:
    return [p for g in groups for p in g["params"]]


def _closure(net: nn.Module, groups: list[dict], batch: tuple[Tensor, Tensor]) -> Callable[[], list[Tensor]]:
    return lambda: list(torch.autograd.grad(_loss(net, batch), _flat(groups)))


def _hypergrad(opt: dict, **overrides) -> HypergradHyperOptimizer:
    # The closed-form math is checked on plain SGD steps in linear space without decay (the
    # adam hyper-optimizer, log space and decay have their own tests below).
    fields = {"lr_init": LR0, "wd_init": WD0, "wd_low": 1e-5, "wd_up": 1e-2, "lr_hyper_lr": 0.0, "wd_hyper_lr": 0.0,
              "hyper_optimizer": "sgd", "log_space": False, "decay": "none", "hyper_batch": "held_out"}
    return HypergradHyperOptimizer(HypergradHPOConfig(**(OPTIMIZERS[opt] | fields | overrides)))


def _train_ours(hpo: HypergradHyperOptimizer, net: nn.Module, groups: list[dict], steps: int) -> list[dict]:
    """``steps`` iterations on TRAIN; held_out uses HYPER. Returns the metrics."""
    hpo.attach(groups, total_steps=steps)
    out = []
    for batch in TRAIN[:steps]:
        hpo.zero_grad()
        _loss(net, batch).backward()
        out.append(hpo.step(_closure(net, groups, HYPER)))
    return out


# ----------------------------------------------------------------------------- references
def _torch_opt(opt: dict, groups: list[dict], lrs: dict[str, float], wds: dict[str, float]) -> torch.optim.Optimizer:
    tg = [{"params": g["params"], "lr": lrs[g["name"]], "weight_decay": wds[g["name"]]} for g in groups]
    if opt["optimizer"] == "sgd":
        return torch.optim.SGD(tg, lr=LR0, momentum=opt["momentum"], nesterov=opt["nesterov"])
    return torch.optim.AdamW(tg, lr=LR0, betas=opt["betas"], eps=opt["eps"])


def _base_values(groups: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    return {g["name"]: LR0 for g in groups}, {g["name"]: (0.0 if g["name"] == "no_decay" else WD0) for g in groups}


def _warm_reference(opt_name: str, layout: str) -> tuple[nn.Module, list[dict], torch.optim.Optimizer]:
    """torch.optim after WARMUP steps at (LR0, WD0), with the training grads of the next step in p.grad.

    A fresh copy each call (finite differences step it); the warm-up itself runs once.
    """
    # Copied together so the optimizer's groups and state keep pointing at the copied weights.
    net, groups, topt = copy.deepcopy(_warm_reference_cached(opt_name, layout))
    topt.zero_grad()
    _loss(net, TRAIN[WARMUP]).backward()  # deepcopy does not carry .grad
    return net, groups, topt


@functools.lru_cache(maxsize=None)
def _warm_reference_cached(opt_name: str, layout: str) -> tuple[nn.Module, list[dict], torch.optim.Optimizer]:
    net = _net()
    groups = _groups(net, layout)
    lrs, wds = _base_values(groups)
    topt = _torch_opt(OPTIMIZERS[opt_name], groups, lrs, wds)
    for batch in TRAIN[:WARMUP]:
        topt.zero_grad()
        _loss(net, batch).backward()
        topt.step()
    return net, groups, topt


def _finite_difference(opt_name: str, layout: str, hyper_batch, which: str, names: list[str]) -> float:
    """Central difference of L_hyper(theta'(lr, wd)) in ``which`` ('lr'/'wd') of the groups ``names``."""
    base = LR0 if which == "lr" else WD0
    eps = base * 1e-4

    def loss_at(delta: float) -> float:
        net, groups, topt = _warm_reference(opt_name, layout)
        for tg, g in zip(topt.param_groups, groups, strict=True):
            if g["name"] in names:
                tg["lr" if which == "lr" else "weight_decay"] += delta
        topt.step()
        with torch.no_grad():
            return float(_loss(net, hyper_batch))

    return (loss_at(eps) - loss_at(-eps)) / (2 * eps)


def _autograd(opt_name: str, layout: str, hyper_batch) -> dict[str, tuple[float, float]]:
    """d L_hyper / d(lr_g, wd_g) per group through an explicit differentiable one-step update."""
    opt = OPTIMIZERS[opt_name]
    net, groups, topt = _warm_reference(opt_name, layout)
    lrs = {g["name"]: torch.tensor(LR0, dtype=torch.float64, requires_grad=True) for g in groups}
    wds = {g["name"]: torch.tensor(WD0, dtype=torch.float64, requires_grad=True) for g in groups}
    names = {id(p): n for n, p in net.named_parameters()}
    new = {}
    for g in groups:
        lr, wd = lrs[g["name"]], (wds[g["name"]] if g["name"] != "no_decay" else 0.0)
        for p in g["params"]:
            theta, grad, state = p.detach(), p.grad.detach(), topt.state[p]
            if opt["optimizer"] == "sgd":
                g_wd = grad + wd * theta
                mu = opt["momentum"]
                buf = mu * state["momentum_buffer"] + g_wd if mu else g_wd
                d = g_wd + mu * buf if opt["nesterov"] else buf
                new[names[id(p)]] = theta - lr * d
            else:
                b1, b2 = opt["betas"]
                t = float(state["step"]) + 1
                m = b1 * state["exp_avg"] + (1 - b1) * grad
                v = b2 * state["exp_avg_sq"] + (1 - b2) * grad * grad
                u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + opt["eps"])
                new[names[id(p)]] = theta * (1 - lr * wd) - lr * u
    loss = nn.functional.cross_entropy(functional_call(net, new, (hyper_batch[0],)), hyper_batch[1])
    keys = [g["name"] for g in groups]
    grads = torch.autograd.grad(loss, [lrs[k] for k in keys] + [wds[k] for k in keys], allow_unused=True)
    values = [0.0 if g is None else float(g) for g in grads]  # no_decay's wd is not in the graph
    return {k: (values[i], values[len(keys) + i]) for i, k in enumerate(keys)}


def _close(ours: float, ref: float) -> bool:
    return abs(ours - ref) <= RTOL * abs(ref) + 1e-12


# ----------------------------------------------------------------------------- closed form
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_closed_form_matches_autograd_and_finite_differences_held_out(opt_name: str) -> None:
    net = _net()
    groups = _groups(net, "shared")
    metrics = _train_ours(_hypergrad(opt_name), net, groups, WARMUP + 1)[-1]
    assert metrics["hyper_applied"] == 1.0
    auto = _autograd(opt_name, "shared", HYPER)
    # Shared pair: the lr moves every group, the wd only the decaying ones.
    auto_lr = sum(v[0] for v in auto.values())
    auto_wd = auto["backbone"][1]
    fd_lr = _finite_difference(opt_name, "shared", HYPER, "lr", ["backbone", "no_decay"])
    fd_wd = _finite_difference(opt_name, "shared", HYPER, "wd", ["backbone"])
    assert _close(auto_lr, fd_lr) and _close(auto_wd, fd_wd), (auto_lr, fd_lr, auto_wd, fd_wd)
    assert _close(metrics["hypergrad_lr"], auto_lr), (metrics["hypergrad_lr"], auto_lr)
    assert _close(metrics["hypergrad_wd"], auto_wd), (metrics["hypergrad_wd"], auto_wd)
    assert auto["no_decay"][1] == 0.0  # the BN/bias group has no wd to differentiate


@pytest.mark.parametrize("opt_name", ["sgd_nesterov", "adamw"])
def test_next_train_uses_next_training_gradient(opt_name: str) -> None:
    net = _net()
    groups = _groups(net, "shared")
    hpo = _hypergrad(opt_name, hyper_batch="next_train")

    def never() -> list[Tensor]:
        raise AssertionError("next_train must not call the hyper_grad closure")

    hpo.attach(groups, total_steps=10)
    metrics = []
    for batch in TRAIN[: WARMUP + 2]:
        hpo.zero_grad()
        _loss(net, batch).backward()
        metrics.append(hpo.step(never))
    assert metrics[0]["hyper_applied"] == 0.0 and all(m["hyper_applied"] == 1.0 for m in metrics[1:])
    # The hypergradient reported at step WARMUP+1 belongs to step WARMUP, with h from the next batch.
    nxt = TRAIN[WARMUP + 1]
    fd_lr = _finite_difference(opt_name, "shared", nxt, "lr", ["backbone", "no_decay"])
    fd_wd = _finite_difference(opt_name, "shared", nxt, "wd", ["backbone"])
    assert _close(metrics[-1]["hypergrad_lr"], fd_lr), (metrics[-1]["hypergrad_lr"], fd_lr)
    assert _close(metrics[-1]["hypergrad_wd"], fd_wd), (metrics[-1]["hypergrad_wd"], fd_wd)


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_per_group_pairs(opt_name: str) -> None:
    net = _net()
    groups = _groups(net, "split")
    metrics = _train_ours(_hypergrad(opt_name, per_group=True), net, groups, WARMUP + 1)[-1]
    auto = _autograd(opt_name, "split", HYPER)
    for name in ("backbone", "head", "no_decay"):
        fd_lr = _finite_difference(opt_name, "split", HYPER, "lr", [name])
        assert _close(auto[name][0], fd_lr)
        assert _close(metrics[f"hypergrad_lr/{name}"], auto[name][0]), name
    for name in ("backbone", "head"):
        fd_wd = _finite_difference(opt_name, "split", HYPER, "wd", [name])
        assert _close(auto[name][1], fd_wd)
        assert _close(metrics[f"hypergrad_wd/{name}"], auto[name][1]), name
    assert metrics["wd/no_decay"] == 0.0 and metrics["hypergrad_wd/no_decay"] == 0.0
    assert metrics["lr"] == metrics["lr/backbone"]


def test_per_group_values_move_independently_and_no_decay_stays_zero() -> None:
    net = _net()
    groups = _groups(net, "split")
    hpo = _hypergrad("sgd", per_group=True, lr_hyper_lr=1e-2, wd_hyper_lr=1e-3)
    _train_ours(hpo, net, groups, 4)
    report = hpo.report()["per_group"]
    assert report["no_decay"]["wd"] == 0.0
    assert report["backbone"]["lr"] != report["head"]["lr"]
    assert report["backbone"]["wd"] != report["head"]["wd"]
    assert all(g["weight_decay"] == 0.0 for g in hpo.param_groups if g["name"] == "no_decay")


# ----------------------------------------------------------------------------- hyper-optimizer
@pytest.mark.parametrize("log_space", [False, True])
def test_hyper_step_applies_chain_rule(log_space: bool) -> None:
    lr_eta, wd_eta = (1e-3, 1e-4) if not log_space else (0.5, 0.5)
    net = _net()
    groups = _groups(net, "shared")
    hpo = _hypergrad("sgd", log_space=log_space, lr_hyper_lr=lr_eta, wd_hyper_lr=wd_eta, lr_up=1.0)
    hpo.attach(groups, total_steps=1)
    hpo.zero_grad()
    _loss(net, TRAIN[0]).backward()
    metrics = hpo.step(_closure(net, groups, HYPER))
    dlr, dwd = metrics["hypergrad_lr"], metrics["hypergrad_wd"]
    new = hpo.hyperparameters()
    if log_space:
        assert math.log(new["lr"]) == pytest.approx(math.log(LR0) - lr_eta * LR0 * dlr, rel=1e-12)
        assert math.log(new["wd"]) == pytest.approx(math.log(WD0) - wd_eta * WD0 * dwd, rel=1e-12)
    else:
        assert new["lr"] == pytest.approx(LR0 - lr_eta * dlr, rel=1e-12)
        assert new["wd"] == pytest.approx(WD0 - wd_eta * dwd, rel=1e-12)
    assert new["lr"] != LR0 and new["wd"] != WD0
    # Metrics report what the weight step used (exp(log(x)) may differ from x in the last bit).
    assert metrics["lr"] == pytest.approx(LR0, rel=1e-12) and metrics["wd"] == pytest.approx(WD0, rel=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_hyper_optimizer_momentum(nesterov: bool) -> None:
    eta, mu = 1e-3, 0.5
    net = _net()
    groups = _groups(net, "shared")
    hpo = _hypergrad("sgd", lr_hyper_lr=eta, hyper_momentum=mu, hyper_nesterov=nesterov)
    metrics = _train_ours(hpo, net, groups, 3)
    lr, buf = LR0, 0.0
    for m in metrics:
        assert m["lr"] == pytest.approx(lr, rel=1e-12)
        g = m["hypergrad_lr"]
        buf = mu * buf + g
        lr -= eta * (g + mu * buf if nesterov else buf)
    assert hpo.hyperparameters()["lr"] == pytest.approx(lr, rel=1e-12)


def test_clamped_to_bounds() -> None:
    net = _net()
    groups = _groups(net, "shared")
    hpo = _hypergrad("sgd", lr_hyper_lr=1e6, wd_hyper_lr=1e6)
    metrics = _train_ours(hpo, net, groups, 1)[0]
    values = hpo.hyperparameters()
    cfg = hpo.config
    assert values["lr"] == (cfg.lr_up if metrics["hypergrad_lr"] < 0 else cfg.lr_low)
    assert values["wd"] == (cfg.wd_up if metrics["hypergrad_wd"] < 0 else cfg.wd_low)


def test_starts_at_midpoint_or_given_value() -> None:
    hpo = HypergradHyperOptimizer(HypergradHPOConfig(lr_low=0.01, lr_up=0.03, wd_low=1e-4, wd_up=3e-4, log_space=False))
    hpo.attach(_groups(_net(), "shared"), 1)
    assert hpo.hyperparameters() == pytest.approx({"lr": 0.02, "wd": 2e-4})
    hpo = HypergradHyperOptimizer(HypergradHPOConfig(lr_low=0.01, lr_up=0.04, log_space=True, wd_init=5e-4))
    hpo.attach(_groups(_net(), "shared"), 1)
    assert hpo.hyperparameters() == pytest.approx({"lr": 0.02, "wd": 5e-4})
    assert isinstance(hpo._lrs[0].raw, Tensor) and hpo._lrs[0].raw.dim() == 0


# ----------------------------------------------------------------------------- safety
def test_non_finite_hypergradient_is_skipped_and_counted() -> None:
    net = _net()
    groups = _groups(net, "shared")
    hpo = _hypergrad("sgd", lr_hyper_lr=1e-3, wd_hyper_lr=1e-4)
    hpo.attach(groups, total_steps=3)
    good = _closure(net, groups, HYPER)
    bad = lambda: [torch.full_like(p, math.inf) for p in _flat(groups)]  # noqa: E731
    hpo.zero_grad()
    _loss(net, TRAIN[0]).backward()
    before = [p.detach().clone() for p in _flat(groups)]
    metrics = hpo.step(bad)
    assert metrics["hyper_applied"] == 0.0 and metrics["hyper_skipped"] == 1.0
    assert hpo.hyperparameters() == {"lr": LR0, "wd": WD0}
    assert any(not torch.equal(a, b) for a, b in zip(before, _flat(groups), strict=True))  # weights still stepped
    hpo.zero_grad()
    _loss(net, TRAIN[1]).backward()
    metrics = hpo.step(good)
    assert metrics["hyper_applied"] == 1.0 and metrics["hyper_skipped"] == 1.0
    assert hpo.hyperparameters()["lr"] != LR0
    assert hpo.report()["hyper_skipped"] == 1 and hpo.report()["hyper_steps"] == 1


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"lr_low": 0.1, "lr_up": 0.01}, "lr_up"),
        ({"lr_low": 0.1, "lr_up": 0.1}, "lr_up"),
        ({"wd_low": 1e-3, "wd_up": 1e-4}, "wd_up"),
        ({"lr_low": -0.1}, "lr_low"),
        ({"wd_low": 0.0}, "wd_low"),
        ({"lr_init": 0.9}, "lr_init"),
        ({"wd_init": 1e-7}, "wd_init"),
    ],
)
def test_bounds_validated_with_error_naming_the_field(fields: dict, named: str) -> None:
    model = get_registry().get("hpo", "hypergrad").config
    with pytest.raises(ValidationError) as info:
        model(**fields)
    errors = info.value.errors()
    assert len(errors) == 1 and errors[0]["loc"] == (named,)
    assert named in str(info.value)


def test_registered_config_defaults() -> None:
    cfg = get_registry().get("hpo", "hypergrad").config()
    assert cfg.name == "hypergrad" and cfg.hyper_batch == "next_train" and cfg.hyper_batch_size is None
    assert cfg.optimizer == "sgd" and cfg.lr_low < cfg.lr_up and cfg.wd_low < cfg.wd_up
    sized = get_registry().get("hpo", "hypergrad").config(hyper_batch="next_train", hyper_batch_size=32)
    assert sized.hyper_batch_size == 32
    with pytest.raises(ValidationError, match="hyper_batch"):
        get_registry().get("hpo", "hypergrad").config(hyper_batch="val")
    hpo = get_registry().create("hpo", get_registry().get("hpo", "hypergrad").config(hyper_batch="next_train"))
    assert hpo.hyper_batch == "next_train"


# ----------------------------------------------------------------------------- grad contract
def test_held_out_closure_grads_do_not_leak() -> None:
    """A closure that accumulates into p.grad must give the same run as one using autograd.grad."""
    runs = []
    for style in ("autograd", "backward"):
        net = _net()
        groups = _groups(net, "shared")
        hpo = _hypergrad("sgd", lr_hyper_lr=1e-3, wd_hyper_lr=1e-4)
        hpo.attach(groups, total_steps=3)
        params = _flat(groups)

        def by_backward() -> list[Tensor]:
            _loss(net, HYPER).backward()
            return [p.grad for p in params]

        closure = _closure(net, groups, HYPER) if style == "autograd" else by_backward
        for batch in TRAIN[:3]:
            hpo.zero_grad()
            _loss(net, batch).backward()
            grads = [p.grad for p in params]
            values = [g.clone() for g in grads]
            hpo.step(closure)
            assert all(p.grad is g for p, g in zip(params, grads, strict=True))
            assert all(torch.equal(p.grad, v) for p, v in zip(params, values, strict=True))
        runs.append(([p.detach().clone() for p in params], hpo.hyperparameters()))
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert runs[0][1] == runs[1][1]


def test_held_out_requires_closure_with_one_grad_per_weight() -> None:
    net = _net()
    groups = _groups(net, "shared")
    hpo = _hypergrad("sgd")
    hpo.attach(groups, 1)
    _loss(net, TRAIN[0]).backward()
    with pytest.raises(ValueError, match="needs the hyper_grad closure"):
        hpo.step(None)
    with pytest.raises(ValueError, match="returned 1 gradients for 4"):
        hpo.step(lambda: [None])


def test_next_train_survives_in_place_zeroing() -> None:
    """Without momentum the direction is p.grad itself; zeroing it in place must not corrupt it."""
    results = []
    for in_place in (False, True):
        net = _net()
        groups = _groups(net, "shared")
        hpo = _hypergrad("sgd_plain", hyper_batch="next_train")
        hpo.attach(groups, 2)
        out = []
        for batch in TRAIN[:2]:
            if in_place:
                for p in _flat(groups):
                    if p.grad is not None:
                        p.grad.zero_()
            else:
                hpo.zero_grad()
            _loss(net, batch).backward()
            out.append(hpo.step())
        results.append(out[-1]["hypergrad_lr"])
    assert results[0] == pytest.approx(results[1], rel=1e-12)
    assert results[0] != 0.0


@pytest.mark.parametrize("changed", [False, True])
def test_weights_changed_drops_the_pending_next_train_hypergradient(changed: bool) -> None:
    net = _net()
    groups = _groups(net, "shared")
    hpo = _hypergrad("sgd", hyper_batch="next_train", lr_hyper_lr=1e-3)
    hpo.attach(groups, 3)
    applied = []
    for i, batch in enumerate(TRAIN[:3]):
        hpo.zero_grad()
        _loss(net, batch).backward()
        applied.append(hpo.step()["hyper_applied"])
        if changed and i == 0:
            hpo.weights_changed()
    # step 0 has nothing pending; step 1 uses step 0's direction unless the network changed
    assert applied == ([0.0, 0.0, 1.0] if changed else [0.0, 1.0, 1.0])


# ----------------------------------------------------------------------------- state
@pytest.mark.parametrize("mode", ["held_out", "next_train"])
def test_state_dict_resume_is_exact(mode: str) -> None:
    net = _net()
    groups = _groups(net, "split")
    kw = {"hyper_batch": mode, "per_group": True, "lr_hyper_lr": 1e-2, "wd_hyper_lr": 1e-3, "hyper_momentum": 0.5}
    hpo = _hypergrad("sgd_nesterov", **kw)
    hpo.attach(groups, total_steps=4)

    def run(h: HypergradHyperOptimizer, model: nn.Module, gs: list[dict], batches) -> list[dict]:
        out = []
        for batch in batches:
            h.zero_grad()
            _loss(model, batch).backward()
            out.append(h.step(_closure(model, gs, HYPER)))
        return out

    run(hpo, net, groups, TRAIN[:2])
    buffer = io.BytesIO()
    torch.save({"hpo": hpo.state_dict(), "model": net.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    twin = _net()
    twin.load_state_dict(saved["model"])
    twin_groups = _groups(twin, "split")
    resumed = _hypergrad("sgd_nesterov", **kw)
    resumed.attach(twin_groups, total_steps=4)
    resumed.load_state_dict(saved["hpo"])
    a = run(hpo, net, groups, TRAIN[2:4])
    b = run(resumed, twin, twin_groups, TRAIN[2:4])
    assert a == b
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    shared = _hypergrad("sgd_nesterov", hyper_batch=mode)
    shared.attach(_groups(_net(), "split"), 4)
    with pytest.raises(ValueError, match="pairs"):
        shared.load_state_dict(copy.deepcopy(saved["hpo"]))


@pytest.mark.parametrize("per_group", [False, True])
def test_empty_group_is_harmless(per_group: bool) -> None:
    net = _net()
    groups = [{"name": "head", "params": []}] + _groups(net, "shared")
    hpo = _hypergrad("sgd", per_group=per_group, lr_hyper_lr=1e-3, wd_hyper_lr=1e-4)
    metrics = _train_ours(hpo, net, groups, 2)
    assert all(m["hyper_applied"] == 1.0 and math.isfinite(m["hypergrad_lr"]) for m in metrics)
    assert hpo.hyperparameters()["lr"] != LR0  # the primary group (backbone) still learns


# ----------------------------------------------------------------------------- search defaults
def test_adam_hyper_step_is_normalised() -> None:
    """Adam's first step moves the raw value by exactly its step size, whatever the scale of
    the hypergradient (the reason it is the default: hypergradients span orders of magnitude)."""
    from dha_plugins.hpo.hypergrad import LearnedScalar

    for scale in (1e-6, 1.0, 1e4):
        x = LearnedScalar(1e-3, 1.0, 0.05, log_space=True, step_size=0.02, momentum=0.0, nesterov=False,
                          optimizer="adam")
        start = float(x.raw)
        x.descend(-scale)  # "the loss falls as the lr grows"
        assert float(x.raw) - start == pytest.approx(0.02, rel=1e-4)


def test_cosine_decay_scales_the_used_lr_and_the_hypergradient() -> None:
    net = _net()
    groups = _groups(net, "shared")
    hpo = _hypergrad("sgd", decay="cosine", decay_final=0.1)
    hpo.attach(groups, total_steps=0)
    hpo.on_progress(0.0)
    assert hpo.hyperparameters()["lr"] == pytest.approx(LR0)
    hpo.on_progress(0.5)
    assert hpo.hyperparameters()["lr"] == pytest.approx(LR0 * 0.55)
    hpo.on_progress(1.0)
    assert hpo.hyperparameters()["lr"] == pytest.approx(LR0 * 0.1)
    assert hpo.report()["learned_lr"] == [pytest.approx(LR0)]
    # The learned lr's hypergradient is factor x dL/dlr (chain rule through lr = learned x factor).
    hpo.zero_grad()
    _loss(net, TRAIN[0]).backward()
    metrics = hpo.step(_closure(net, groups, HYPER))
    assert metrics["lr"] == pytest.approx(LR0 * 0.1)
    assert metrics["lr_learned"] == pytest.approx(LR0)


def test_defaults_learn_in_log_space_with_adam_and_decay() -> None:
    cfg = HypergradHPOConfig()
    assert (cfg.log_space, cfg.hyper_optimizer, cfg.decay) == (True, "adam", "cosine")
