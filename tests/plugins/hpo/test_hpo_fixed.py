"""``hpo=fixed``: DARTS defaults, schedules, equivalence with torch.optim, state."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from dha_core import get_registry
from dha_plugins.hpo.fixed import FixedHPOConfig, FixedHyperOptimizer, scheduled_lr


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _groups(net: nn.Module) -> list[dict]:
    w1, b1, w2, b2 = net.parameters()
    return [{"name": "backbone", "params": [w1, w2]}, {"name": "no_decay", "params": [b1, b2]}]


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(8, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (8,), generator=gen))
        for _ in range(n)
    ]


def test_darts_baseline_defaults() -> None:
    cfg = get_registry().get("hpo", "fixed").config()
    values = (cfg.optimizer, cfg.lr, cfg.lr_min, cfg.schedule, cfg.momentum, cfg.wd)
    assert values == ("sgd", 0.025, 0.001, "cosine", 0.9, 3e-4)
    assert get_registry().create("hpo", cfg).hyper_batch_size is None  # held-out batches: the training size


def test_schedules() -> None:
    cos = FixedHPOConfig(lr=0.1, lr_min=0.01)
    assert scheduled_lr(cos, 0, 100) == pytest.approx(0.1)
    assert scheduled_lr(cos, 50, 100) == pytest.approx(0.055)
    assert scheduled_lr(cos, 100, 100) == pytest.approx(0.01)
    assert scheduled_lr(cos, 150, 100) == pytest.approx(0.01)
    step = FixedHPOConfig(lr=0.1, schedule="step", step_every=10, step_gamma=0.5)
    assert [scheduled_lr(step, s, 100) for s in (0, 9, 10, 25)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert scheduled_lr(FixedHPOConfig(lr=0.1, schedule="constant"), 77, 100) == 0.1


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_matches_torch_optim_with_cosine_and_no_decay_group(optimizer: str) -> None:
    steps = 5
    net, ref = _net(), _net()
    cfg = FixedHPOConfig(optimizer=optimizer, lr=0.1, lr_min=0.01, wd=1e-2, nesterov=optimizer == "sgd")
    hpo = FixedHyperOptimizer(cfg)
    hpo.attach(_groups(net), total_steps=steps)
    ref_groups = [{"params": g["params"], "weight_decay": wd} for g, wd in zip(_groups(ref), (1e-2, 0.0), strict=True)]
    if optimizer == "sgd":
        topt = torch.optim.SGD(ref_groups, lr=0.1, momentum=0.9, nesterov=True)
    else:
        topt = torch.optim.AdamW(ref_groups, lr=0.1)
    used = []
    for s, (x, y) in enumerate(_batches(steps)):
        hpo.zero_grad()
        topt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        nn.functional.cross_entropy(ref(x), y).backward()
        lr = 0.01 + 0.5 * (0.1 - 0.01) * (1 + math.cos(math.pi * s / steps))
        for g in topt.param_groups:
            g["lr"] = lr
        topt.step()
        used.append(hpo.step())
        assert used[-1] == pytest.approx({"lr": lr, "wd": 1e-2})
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert [g["weight_decay"] for g in hpo.param_groups] == [1e-2, 0.0]
    assert hpo.report()["final"]["lr"] == pytest.approx(0.01)


def test_state_dict_resume() -> None:
    net = _net()
    hpo = FixedHyperOptimizer(FixedHPOConfig())
    hpo.attach(_groups(net), total_steps=6)
    batches = _batches(4)

    def run(h: FixedHyperOptimizer, model: nn.Module, bs) -> None:
        for x, y in bs:
            h.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            h.step()

    run(hpo, net, batches[:2])
    twin = copy.deepcopy(net)
    resumed = FixedHyperOptimizer(FixedHPOConfig())
    resumed.attach(_groups(twin), total_steps=1)
    resumed.load_state_dict(copy.deepcopy(hpo.state_dict()))
    assert resumed.hyperparameters() == hpo.hyperparameters()
    run(hpo, net, batches[2:])
    run(resumed, twin, batches[2:])
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="lr_min"):
        FixedHPOConfig(lr=0.01, lr_min=0.1)
    with pytest.raises(ValidationError, match="nesterov"):
        FixedHPOConfig(momentum=0.0, nesterov=True)
    with pytest.raises(ValidationError, match="lr"):
        FixedHPOConfig(lr=0.0)
    with pytest.raises(RuntimeError, match="attach"):
        FixedHyperOptimizer(FixedHPOConfig()).step()
