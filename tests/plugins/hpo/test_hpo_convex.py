"""On a convex problem started from a too-small lr, ``hypergrad`` raises the lr and beats
``fixed`` at that lr within the same number of steps (issue 6, "Correctness also")."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dha_core.interfaces import HyperOptimizer
from dha_plugins.hpo.fixed import FixedHPOConfig, FixedHyperOptimizer
from dha_plugins.hpo.hypergrad import HypergradHPOConfig, HypergradHyperOptimizer

STEPS = 100
LR0, WD0 = 0.01, 1e-4


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed features of a noisy linearly separable problem."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=gen, dtype=torch.float64)
    w = torch.randn(10, generator=gen, dtype=torch.float64)
    y = (x @ w + 0.5 * torch.randn(256, generator=gen, dtype=torch.float64) > 0).double()
    return x, y


def _train(hpo: HyperOptimizer) -> float:
    """Full-batch logistic regression from zero weights; returns the final training loss."""
    x, y = _data()
    model = nn.Linear(10, 1).double()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    params = [model.weight, model.bias]
    hpo.attach([{"name": "backbone", "params": [model.weight]}, {"name": "no_decay", "params": [model.bias]}], STEPS)

    def loss() -> torch.Tensor:
        # Logistic loss written out: the fused BCE kernel is slow under CPU thread contention.
        z = model(x).squeeze(1)
        return (nn.functional.softplus(z) - y * z).mean()

    for _ in range(STEPS):
        hpo.zero_grad()
        loss().backward()
        hpo.step(lambda: list(torch.autograd.grad(loss(), params)))
    with torch.no_grad():
        return float(loss())


@pytest.mark.parametrize("mode", ["held_out", "next_train"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_hypergrad_raises_small_lr_and_beats_fixed(mode: str, momentum: float) -> None:
    fixed = FixedHyperOptimizer(FixedHPOConfig(lr=LR0, wd=WD0, momentum=momentum, schedule="constant"))
    fixed_loss = _train(fixed)
    hypergrad = HypergradHyperOptimizer(
        HypergradHPOConfig(
            lr_low=1e-3, lr_up=10.0, lr_init=LR0, wd_low=1e-6, wd_up=1e-2, wd_init=WD0,
            momentum=momentum, lr_hyper_lr=1.0, wd_hyper_lr=1e-3, hyper_batch=mode,
            hyper_optimizer="sgd", log_space=False, decay="none",
        )
    )
    hyper_loss = _train(hypergrad)
    assert fixed.hyperparameters()["lr"] == LR0
    assert hypergrad.hyperparameters()["lr"] > 10 * LR0
    assert hyper_loss < fixed_loss - 0.05, (hyper_loss, fixed_loss)
