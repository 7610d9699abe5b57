"""``momentum_buffers``: what DARTS' unrolled step reads, checked against ``torch.optim.SGD``."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dha_core import get_registry
from dha_core.interfaces import HyperOptimizer


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _groups(net: nn.Module) -> list[dict[str, Any]]:
    w1, b1, w2, b2 = net.parameters()
    return [{"name": "backbone", "params": [w1, w2]}, {"name": "no_decay", "params": [b1, b2]}]


def _loss(net: nn.Module, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (8,), generator=gen)
    return nn.functional.cross_entropy(net(x), y)


def _create(name: str, **fields: Any) -> HyperOptimizer:
    registry = get_registry()
    return registry.create("hpo", registry.get("hpo", name).config(**fields))


@pytest.mark.parametrize("name, fields", [
    ("fixed", {"schedule": "constant", "lr": 0.1, "wd": 0.0}),
    ("hypergrad", {"hyper_batch": "next_train", "lr_init": 0.1, "wd_init": 1e-4, "lr_hyper_lr": 0.0,
                   "wd_hyper_lr": 0.0}),
])
def test_buffers_equal_torch_sgd_momentum_buffers_in_any_order(name: str, fields: dict[str, Any]) -> None:
    net, ref = _net(), _net()
    hpo = _create(name, momentum=0.9, **fields)
    hpo.attach(_groups(net), total_steps=10)
    params = list(net.parameters())
    assert hpo.momentum_buffers(params) == [None] * 4  # no step yet
    decays = [g["weight_decay"] for g in hpo.param_groups]
    torch_sgd = torch.optim.SGD([{"params": g["params"], "weight_decay": wd}
                                 for g, wd in zip(_groups(ref), decays, strict=True)], lr=0.1, momentum=0.9)
    for seed in range(3):
        hpo.zero_grad()
        _loss(net, seed).backward()
        hpo.step(None)
        torch_sgd.zero_grad()
        _loss(ref, seed).backward()
        torch_sgd.step()
    expected = [torch_sgd.state[p]["momentum_buffer"] for p in ref.parameters()]
    for got, want in zip(hpo.momentum_buffers(params), expected, strict=True):
        torch.testing.assert_close(got, want)
    reversed_buffers = hpo.momentum_buffers(params[::-1])
    assert all(a is b for a, b in zip(reversed_buffers, hpo.momentum_buffers(params)[::-1], strict=True))
    assert hpo.momentum_buffers([torch.zeros(2)]) == [None]  # not one of its weights


@pytest.mark.parametrize("name", ["fixed", "hypergrad"])
def test_adamw_and_zero_momentum_have_no_buffers(name: str) -> None:
    for fields in ({"optimizer": "adamw"}, {"momentum": 0.0}):
        net = _net()
        hpo = _create(name, **fields)
        hpo.attach(_groups(net), total_steps=4)
        _loss(net, 0).backward()
        hpo.step(lambda: [p.grad for p in net.parameters()])
        assert hpo.momentum_buffers(list(net.parameters())) == [None] * 4


def test_interface_default_is_no_momentum_state() -> None:
    class Minimal(HyperOptimizer):
        def attach(self, param_groups: Any, total_steps: int) -> None: ...
        def step(self, hyper_grad: Any = None) -> dict[str, float]: return {"lr": 0.0, "wd": 0.0}
        @property
        def param_groups(self) -> list[dict[str, Any]]: return []
        def hyperparameters(self) -> dict[str, float]: return {"lr": 0.0, "wd": 0.0}
        def state_dict(self) -> dict[str, Any]: return {}
        def load_state_dict(self, state: dict[str, Any]) -> None: ...

    assert Minimal().momentum_buffers([torch.zeros(1), torch.zeros(2)]) == [None, None]
