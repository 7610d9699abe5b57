"""The same code on a CUDA device: skipped where there is none (as on the CPU-only CI).

Run these first on a machine with a GPU: ``python -m pytest -q tests/core/test_cuda.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dha_core
from dha_plugins.aug.affine_warp import warp_affine_pixels
from dha_plugins.aug.kornia_policy import KorniaPolicy, KorniaPolicyConfig
from tests.conftest import tiny_raw_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")


def test_affine_warp_on_cuda_equals_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 32, 32, generator=g)
    matrices = torch.eye(2, 3).repeat(6, 1, 1) + 0.2 * (torch.rand(6, 2, 3, generator=g) - 0.5)
    cpu = warp_affine_pixels(images, matrices, "bilinear")
    gpu = warp_affine_pixels(images.cuda(), matrices, "bilinear")  # CPU matrices are moved over
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_kornia_policy_on_cuda_applies_the_same_plan_as_on_cpu() -> None:
    policy = KorniaPolicy(KorniaPolicyConfig(crop=False, flip=False, interpolation="bilinear"))
    images = torch.randint(0, 256, (64, 3, 32, 32), generator=torch.Generator().manual_seed(1)).float() / 255
    plan = policy.sample_plan(64, torch.Generator().manual_seed(2))
    cpu = policy.apply_plan(images, plan)
    gpu = policy.apply_plan(images.cuda(), plan)
    assert gpu.device.type == "cuda"
    # Colour ops agree to float rounding; equalize/posterize round to 8 bits, where a value
    # on a rounding boundary may land one level apart.
    diff = (gpu.cpu() - cpu).abs()
    assert float(diff.mean()) < 1e-3 and float((diff > 1.5 / 255).float().mean()) < 1e-3


@pytest.mark.parametrize("hpo", [{"name": "hypergrad", "hyper_batch": "held_out"}, "fixed"])
def test_dha_search_runs_on_cuda_and_the_model_loads_on_cpu(tmp_path: Path, hpo: object) -> None:
    raw = tiny_raw_config(tmp_path / "runs", relax="ista", aug="kornia", hpo=hpo)
    raw["space"] = {"name": "darts", "C": 4, "layers": 3, "nodes": 2}
    raw["train"].update({"device": "cuda", "epochs": 2, "max_steps_per_epoch": 3})
    result = dha_core.build(config=raw).fit()
    assert next(result.model.parameters()).device.type == "cuda"
    assert 0.0 <= result.summary["test_acc"] <= 1.0 and result.summary["steps"] == 6
    assert result.run_dir is not None
    loaded = dha_core.load_model(result.run_dir)  # map_location="cpu"
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.model.eval()(x.cuda()).cpu(), atol=1e-4, rtol=1e-4)
