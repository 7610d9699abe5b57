"""Contract tests run against every registered augmentation (built-in or third-party)."""

from __future__ import annotations

import pytest
import torch

from dha_core import get_registry
from dha_core.interfaces import AugmentationPolicy
from dha_core.types import DataSpec

SPEC = DataSpec(num_classes=10, channels=3, image_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
AUGS = get_registry().names("aug")


def _build(name: str) -> AugmentationPolicy:
    component = get_registry().get("aug", name)
    fields = {"cutout": 4} if "cutout" in component.config.model_fields else {}
    return component.create(component.config(**fields), data_spec=SPEC)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", AUGS)
def test_augmentation_contract(name: str) -> None:
    aug = _build(name)
    assert isinstance(aug, AugmentationPolicy)
    x = torch.rand(8, 3, 16, 16, generator=_gen(0))
    state = torch.get_rng_state()
    y1, plan = aug(x, generator=_gen(5))
    assert torch.equal(torch.get_rng_state(), state), "a seeded call must not consume the global RNG"
    y2, _ = aug(x, generator=_gen(5))
    assert torch.equal(y1, y2), "not deterministic under a seeded generator"
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert y1.min() >= 0 and y1.max() <= 1
    assert isinstance(aug.report(), dict)
    if aug.learnable:
        metrics = aug.policy_step(torch.rand(8), plan)
        assert metrics and all(isinstance(v, float) for v in metrics.values())
        state_dict = aug.optimizer_state_dict()
        aug.load_optimizer_state_dict(state_dict)
        assert any(p.requires_grad for p in aug.parameters())
    else:
        assert plan is None
        assert aug.policy_step(torch.rand(8), plan) == {}


@pytest.mark.parametrize("name", [n for n in AUGS if n != "none"])
def test_augmentation_changes_images_with_a_different_seed(name: str) -> None:
    aug = _build(name)
    x = torch.rand(8, 3, 16, 16, generator=_gen(0))
    assert not torch.equal(aug(x, generator=_gen(5))[0], aug(x, generator=_gen(6))[0])
