"""One DHA joint step, opened up: which batch each update sees, clipping, and the losses
handed to the policy (docs/architecture.md, "One step")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import dha_core
from tests.conftest import random_batch, tiny_raw_config


def _stage(tmp_path: Path, **sections: Any) -> Any:
    defaults = {"relax": "ista", "aug": {"name": "kornia", "crop": False, "flip": False},
                "hpo": {"name": "hypergrad", "hyper_batch": "held_out"}}
    raw = tiny_raw_config(tmp_path, **(defaults | sections))
    searcher = dha_core.build(config=raw)
    searcher.prepare()
    return searcher.builder.build(searcher.plan[0])


def _batch(seed: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return random_batch(seed, n)


def test_each_update_sees_the_batch_the_algorithm_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage(tmp_path)
    step_fn = stage.step_fn
    train, val = _batch(0), _batch(1)
    monkeypatch.setattr(step_fn, "next_val_batch", lambda: val)
    seen: dict[str, Any] = {"mean_loss": []}

    original_aug = stage.aug.forward

    def aug_spy(x: torch.Tensor, generator: Any = None) -> Any:
        out = original_aug(x, generator)
        seen["aug_in"], seen["aug_out"] = x.clone(), out[0].clone()
        return out

    original_policy_step = stage.aug.policy_step

    def policy_spy(per_sample: torch.Tensor, plan: Any) -> dict[str, float]:
        seen["per_sample"] = per_sample.clone()
        return original_policy_step(per_sample, plan)

    original_mean_loss = step_fn.mean_loss

    def mean_loss_spy(batch: Any) -> torch.Tensor:
        seen["mean_loss"].append(batch)
        return original_mean_loss(batch)

    original_hpo_step = stage.hpo.step

    def hpo_spy(hyper_grad: Any = None) -> dict[str, float]:
        grads = [p.grad for p in step_fn.weights if p.grad is not None]
        seen["grad_norm_at_weight_step"] = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        return original_hpo_step(hyper_grad)

    monkeypatch.setattr(stage.aug, "forward", aug_spy)
    monkeypatch.setattr(stage.aug, "policy_step", policy_spy)
    monkeypatch.setattr(step_fn, "mean_loss", mean_loss_spy)
    monkeypatch.setattr(stage.hpo, "step", hpo_spy)
    monkeypatch.setattr(step_fn, "grad_clip", 1e-3)  # small enough that clipping must act

    outcome = step_fn(train, 0)

    # 1. the policy augments the training batch (and changes it)
    assert torch.equal(seen["aug_in"], train[0]) and not torch.equal(seen["aug_out"], train[0])
    # 3. the policy learns from one loss per sample, whose mean is the reported training loss
    #    (that they are the augmented batch's cross-entropies is the test below)
    assert seen["per_sample"].shape == (16,)
    assert outcome.metrics["loss"] == pytest.approx(float(seen["per_sample"].mean()), rel=1e-5)
    # 4. the weight gradients are clipped before the weight step
    assert seen["grad_norm_at_weight_step"] <= 1e-3 * (1 + 1e-4)
    assert outcome.metrics["grad_norm"] > 1e-3  # ... and they needed it
    # 6. the held-out hypergradient uses the clean validation batch, exactly once
    assert len(seen["mean_loss"]) == 1 and seen["mean_loss"][0] is val
    assert outcome.metrics["hyper_applied"] == 1.0


def test_next_train_mode_draws_no_validation_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage(tmp_path, hpo={"name": "hypergrad", "hyper_batch": "next_train"})
    drawn: list[int] = []
    monkeypatch.setattr(stage.step_fn, "next_val_batch", lambda: drawn.append(1) or _batch(1))
    for step in range(2):
        stage.step_fn(_batch(10 + step), step)
    assert drawn == []  # single-level ista and next_train: no extra pass at all


def test_per_sample_losses_are_the_augmented_batch_cross_entropy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recompute the forward on the very images the policy produced, before any update."""
    stage = _stage(tmp_path, hpo={"name": "fixed", "lr": 1e-12, "schedule": "constant", "wd": 0.0})
    step_fn = stage.step_fn
    captured: dict[str, Any] = {}
    original_policy_step = stage.aug.policy_step
    original_aug = stage.aug.forward

    def aug_spy(x: torch.Tensor, generator: Any = None) -> Any:
        out = original_aug(x, generator)
        captured["x_aug"] = out[0].detach().clone()
        # the network as the forward sees it (ista's b moves only after the forward)
        with torch.no_grad():
            logits = step_fn.forward_net(step_fn.normalize(out[0]), stage.relax.mixing_weights())
        captured["logits"] = logits[0] if isinstance(logits, tuple) else logits
        return out

    def policy_spy(per_sample: torch.Tensor, plan: Any) -> dict[str, float]:
        captured["per_sample"] = per_sample.clone()
        return original_policy_step(per_sample, plan)

    monkeypatch.setattr(stage.aug, "forward", aug_spy)
    monkeypatch.setattr(stage.aug, "policy_step", policy_spy)
    x, y = _batch(3)
    stage.step_fn((x, y), 0)
    expected = F.cross_entropy(captured["logits"], y, reduction="none")
    torch.testing.assert_close(captured["per_sample"], expected, atol=1e-5, rtol=1e-5)
