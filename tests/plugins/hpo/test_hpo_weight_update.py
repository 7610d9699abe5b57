"""The shared weight-update core reproduces torch.optim.SGD / AdamW step for step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dha_plugins.hpo.weight_update import WeightOptimizer, apply_direction, normalize_groups

CASES = [
    ("sgd", {"momentum": 0.0, "nesterov": False}, 0.0),
    ("sgd", {"momentum": 0.0, "nesterov": False}, 1e-2),
    ("sgd", {"momentum": 0.9, "nesterov": False}, 1e-2),
    ("sgd", {"momentum": 0.9, "nesterov": True}, 1e-2),
    ("adamw", {"betas": (0.8, 0.95), "eps": 1e-6}, 5e-2),
]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _torch_optimizer(kind: str, params: list[torch.Tensor], lr: float, wd: float, kw: dict) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, **kw)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **kw)


@pytest.mark.parametrize(("kind", "kw", "wd"), CASES)
def test_matches_torch_optim(kind: str, kw: dict, wd: float) -> None:
    ours, ref = _net(), _net()
    ref.load_state_dict(ours.state_dict())
    params = list(ours.parameters())
    opt = WeightOptimizer(kind, len(params), **kw)
    torch_opt = _torch_optimizer(kind, list(ref.parameters()), 0.05, wd, kw)
    gen = torch.Generator().manual_seed(1)
    for step in range(5):
        x = torch.randn(8, 4, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 3, (8,), generator=gen)
        for model in (ours, ref):
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
        if step == 2:
            # A weight without a gradient keeps its value and state, as in torch.optim.
            params[0].grad = None
            next(ref.parameters()).grad = None
        with torch.no_grad():
            _, ps, d = opt.directions(params, list(range(len(params))), wd)
            apply_direction(ps, d, 0.05)
        torch_opt.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_wd_factor() -> None:
    assert WeightOptimizer("sgd", 1, momentum=0.9).wd_factor == 1.0
    assert WeightOptimizer("sgd", 1, momentum=0.9, nesterov=True).wd_factor == pytest.approx(1.9)
    assert WeightOptimizer("adamw", 1).wd_factor == 1.0
    with pytest.raises(ValueError, match="unknown weight optimizer"):
        WeightOptimizer("lamb", 1)  # type: ignore[arg-type]


def test_state_dict_roundtrip_continues_identically() -> None:
    net = _net()
    params = list(net.parameters())
    opt = WeightOptimizer("adamw", len(params))
    x = torch.randn(5, 4, dtype=torch.float64)
    for _ in range(2):
        net.zero_grad()
        net(x).sum().backward()
        with torch.no_grad():
            _, ps, d = opt.directions(params, list(range(len(params))), 0.01)
            apply_direction(ps, d, 0.01)
    twin = copy.deepcopy(net)
    twin_params = list(twin.parameters())
    restored = WeightOptimizer("adamw", len(params))
    restored.load_state_dict(copy.deepcopy(opt.state_dict()), twin_params)
    for model, o, ps_ in ((net, opt, params), (twin, restored, twin_params)):
        model.zero_grad()
        model(x).sum().backward()
        with torch.no_grad():
            _, ps, d = o.directions(ps_, list(range(len(ps_))), 0.01)
            apply_direction(ps, d, 0.01)
    for a, b in zip(params, twin_params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not 'sgd'"):
        WeightOptimizer("sgd", len(params)).load_state_dict(opt.state_dict(), params)


def test_normalize_groups() -> None:
    a, b, c = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    groups = normalize_groups(
        [{"name": "backbone", "params": [a]}, {"name": "no_decay", "params": [b]}, {"params": [c], "weight_decay": 0}],
        ("no_decay",),
        3e-4,
    )
    assert [g["name"] for g in groups] == ["backbone", "no_decay", "group2"]
    assert [g["decay"] for g in groups] == [True, False, False]
    assert [g["weight_decay"] for g in groups] == [3e-4, 0.0, 0.0]
    with pytest.raises(ValueError, match="also appears"):
        normalize_groups([{"name": "x", "params": [a]}, {"name": "y", "params": [a]}], (), 0.0)
    with pytest.raises(ValueError, match="at least one parameter"):
        normalize_groups([{"name": "x", "params": []}], (), 0.0)
    assert [len(g["params"]) for g in normalize_groups([{"params": []}, {"params": [a]}], (), 0.0)] == [0, 1]
