"""Contract tests run against every registered hyper-optimizer (built-in or third-party)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import nn

from dha_core import get_registry
from dha_core.interfaces import HyperOptimizer

HPOS = get_registry().names("hpo")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))


def _groups(net: nn.Module) -> list[dict[str, Any]]:
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    return [{"name": "backbone", "params": decay}, {"name": "no_decay", "params": no_decay}]


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)


def _create(name: str) -> HyperOptimizer:
    registry = get_registry()
    return registry.create("hpo", registry.get("hpo", name).config())


def _train(hpo: HyperOptimizer, net: nn.Module, seeds: range) -> list[dict[str, float]]:
    """Steps as the orchestrator does: zero, backward, step with a held-out closure."""
    params = [p for g in _groups(net) for p in g["params"]]
    out = []
    for seed in seeds:
        hpo.zero_grad()
        x, y = _batch(seed)
        nn.functional.cross_entropy(net(x), y).backward()

        def hyper_grad() -> list[torch.Tensor | None]:
            hx, hy = _batch(1000 + seed)
            return list(torch.autograd.grad(nn.functional.cross_entropy(net(hx), hy), params, allow_unused=True))

        out.append(hpo.step(hyper_grad))
    return out


@pytest.mark.parametrize("name", HPOS)
def test_hyper_optimizer_contract(name: str) -> None:
    net = _net()
    hpo = _create(name)
    assert isinstance(hpo, HyperOptimizer)
    assert hpo.hyper_batch_size is None or hpo.hyper_batch_size >= 1
    hpo.attach(_groups(net), total_steps=10)
    before = [p.detach().clone() for p in net.parameters()]
    metrics = _train(hpo, net, range(3))
    for m in metrics:
        assert {"lr", "wd"} <= set(m) and all(isinstance(v, float) for v in m.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True)), "weights never moved"
    hyper = hpo.hyperparameters()
    assert {"lr", "wd"} <= set(hyper) and hyper["lr"] > 0 and hyper["wd"] >= 0
    assert sum(len(g["params"]) for g in hpo.param_groups) == len(list(net.parameters()))
    hpo.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    params = list(net.parameters())
    buffers = hpo.momentum_buffers(params)
    assert len(buffers) == len(params)
    assert all(b is None or b.shape == p.shape for b, p in zip(buffers, params, strict=True))
    hpo.weights_changed()
    assert isinstance(hpo.report(), dict)


@pytest.mark.parametrize("name", HPOS)
def test_state_dict_loads_weights_only_and_resumes_exactly(name: str) -> None:
    net_a = _net()
    hpo_a = _create(name)
    hpo_a.attach(_groups(net_a), total_steps=10)
    _train(hpo_a, net_a, range(3))
    buffer = io.BytesIO()
    torch.save({"hpo": hpo_a.state_dict(), "net": net_a.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # checkpoints never unpickle code

    net_b = _net()
    net_b.load_state_dict(saved["net"])
    hpo_b = _create(name)
    hpo_b.attach(_groups(net_b), total_steps=10)
    hpo_b.load_state_dict(saved["hpo"])
    metrics_a = _train(hpo_a, net_a, range(3, 5))
    metrics_b = _train(hpo_b, net_b, range(3, 5))
    assert metrics_a == metrics_b
    for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(a, b)
