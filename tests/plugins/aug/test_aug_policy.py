"""DHA's learnable policy: tau, sampling, the plan, both backends, the policy loss and its step."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from dha_core.types import DataSpec
from dha_plugins.aug import op_levels as L
from dha_plugins.aug.kornia_policy import KorniaPolicy, KorniaPolicyConfig
from dha_plugins.aug.policy import AugPlan
from dha_plugins.aug.torchvision_policy import TorchvisionPolicy, TorchvisionPolicyConfig

SPEC = DataSpec(num_classes=10, channels=3, image_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
NO_FIXED = {"crop": False, "flip": False, "cutout": 0}


def _images(b: int = 16, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), generator=g).float() / 255


def _kornia(**kw) -> KorniaPolicy:
    return KorniaPolicy(KorniaPolicyConfig(**kw), data_spec=SPEC)


def _torchvision(**kw) -> TorchvisionPolicy:
    return TorchvisionPolicy(TorchvisionPolicyConfig(**kw), data_spec=SPEC)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- tau and config


def test_tau_is_a_uniform_parameter_in_the_state_dict() -> None:
    policy = _kornia()
    assert isinstance(policy.tau, torch.nn.Parameter)
    assert policy.tau.shape == (14, 14)
    assert torch.count_nonzero(policy.tau) == 0
    assert "tau" in policy.state_dict()
    p = policy.probabilities()
    torch.testing.assert_close(p, torch.full((14, 14), 1 / 196))
    assert policy.learnable


def test_single_op_policy_and_invert_option() -> None:
    single = _kornia(policy="single")
    assert single.tau.shape == (14,)
    assert single.sample_plan(5, _gen(0)).ops.shape == (5, 1)
    with_invert = _kornia(ops=list(L.ALL_OPS))
    assert with_invert.tau.shape == (15, 15)
    assert "Invert" in with_invert.op_names


@pytest.mark.parametrize(
    "bad",
    [
        {"ops": ["Rotate", "Blur"]},
        {"ops": ["Rotate", "Rotate"]},
        {"ops": []},
        {"magnitude_max": 9.0},
        {"magnitude_max": 0.0},
        {"temperature": 0.0},
        {"momentum": 0.0},  # nesterov defaults to true
        {"unknown_field": 1},
        {"interpolation": "bicubic"},
    ],
)
def test_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValidationError):
        KorniaPolicyConfig(**bad)


def test_state_dict_roundtrip_restores_tau() -> None:
    a, b = _kornia(), _kornia()
    with torch.no_grad():
        a.tau.normal_()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.tau, b.tau)


# ---------------------------------------------------------------------------- sampling


def test_sampling_is_deterministic_under_a_seeded_generator() -> None:
    policy = _kornia(cutout=6)
    x = _images()
    y1, plan1 = policy(x, _gen(123))
    y2, plan2 = policy(x, _gen(123))
    assert torch.equal(y1, y2)
    for field in ("index", "ops", "levels", "signs"):
        assert torch.equal(getattr(plan1, field), getattr(plan2, field))
    _, plan3 = policy(x, _gen(124))
    assert not torch.equal(plan1.levels, plan3.levels)


def test_sampling_with_a_generator_leaves_the_global_rng_alone() -> None:
    policy = _kornia(cutout=4)
    state = torch.get_rng_state()
    policy(_images(), _gen(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_non_cpu_generator_is_rejected() -> None:
    # A stand-in: only the device is inspected, and CUDA generators need a GPU to construct.
    cuda_like = SimpleNamespace(device=torch.device("cuda", 0))
    with pytest.raises(ValueError, match="CPU"):
        _kornia().sample_plan(4, cuda_like)  # type: ignore[arg-type]


def test_plan_fields_are_consistent() -> None:
    # Full strength: a weakened plan moves levels towards each op's identity (beyond M for
    # Posterize) and swaps unscaled ops for Identity (test_aug_pipeline_defaults.py).
    policy = _kornia(magnitude_max=3.0, strength_max=1.0)
    plan = policy.sample_plan(512, _gen(1))
    n = policy.num_ops
    assert plan.ops.shape == plan.levels.shape == plan.signs.shape == (512, 2)
    assert torch.equal(plan.ops[:, 0], plan.index // n) and torch.equal(plan.ops[:, 1], plan.index % n)
    assert plan.levels.min() >= 0 and plan.levels.max() <= 3.0
    signed = torch.tensor([name in L.SIGNED_OPS for name in policy.op_names])[plan.ops]
    assert set(plan.signs[signed].tolist()) == {-1.0, 1.0}
    assert set(plan.signs[~signed].tolist()) == {1.0}
    assert len(plan) == 512
    op, level, sign = plan.describe(0)[0]
    assert op in policy.op_names and 0 <= level <= 3 and sign in (-1.0, 1.0)


def test_each_sample_draws_its_own_pair_from_the_relaxed_matrix() -> None:
    policy = _kornia(temperature=1.0)
    with torch.no_grad():
        policy.tau.fill_(-30.0)  # only two entries have mass
        policy.tau[2, 5] = 0.0
        policy.tau[7, 1] = 0.0
    index = policy.sample_plan(400, _gen(3)).index
    assert set(index.tolist()) == {2 * 14 + 5, 7 * 14 + 1}
    # Gumbel noise is redrawn per batch: over many batches both entries lead sometimes.
    shares = [(policy.sample_plan(64, _gen(s)).index == 2 * 14 + 5).float().mean().item() for s in range(40)]
    assert min(shares) < 0.5 < max(shares)


def test_temperature_sets_the_per_batch_diversity() -> None:
    """Per-sample draws: several pairs per batch, more at a higher temperature."""

    def distinct(temperature: float) -> float:
        policy = _kornia(temperature=temperature)
        return sum(policy.sample_plan(256, _gen(s)).index.unique().numel() for s in range(10)) / 10

    low, high = distinct(0.5), distinct(5.0)
    assert 1 < low < high
    assert high > 100  # close to uniform over the 196 pairs


# ---------------------------------------------------------------------------- application


@pytest.mark.parametrize("make", [_kornia, _torchvision])
def test_identity_plan_returns_the_input_exactly(make) -> None:
    policy = make(**NO_FIXED)
    x = _images(6)
    plan = AugPlan.fixed(policy.op_names, [["Identity", "Identity"]] * 6, levels=8.0)
    out = policy.apply_plan(x, plan)
    assert torch.equal(out, x)
    # Mixed batch: the (Identity, Identity) samples stay bit-identical, the others change.
    # Solarize at level 0 inverts every pixel.
    mixed = AugPlan.fixed(policy.op_names, [["Identity", "Identity"], ["Solarize", "Identity"]] * 3, levels=0.0)
    out = policy.apply_plan(x, mixed)
    assert torch.equal(out[0::2], x[0::2])
    assert not torch.equal(out[1::2], x[1::2])


def _assert_chained_close(a: torch.Tensor, b: torch.Tensor) -> None:
    """Bound for two chained ops. Each op agrees within 1/255 (test_aug_op_parity); a
    discontinuous second op (Posterize, Solarize, Equalize) can still turn the < 1e-4
    grayscale-weight difference of Color/Contrast into a one-level flip for a rare pixel."""
    diff = (a - b).abs()
    assert diff.mean() < 0.1 / 255
    assert diff.flatten(1).mean(1).max() < 0.2 / 255
    assert (diff > 1.01 / 255).float().mean() < 1e-3


def test_kornia_and_torchvision_backends_agree_on_a_sampled_plan() -> None:
    x = _images(64)
    for interpolation in ("nearest", "bilinear"):
        for temperature in (0.5, 5.0):
            kp = _kornia(interpolation=interpolation, temperature=temperature, fill="zero", **NO_FIXED)
            tp = _torchvision(interpolation=interpolation, temperature=temperature, fill="zero", **NO_FIXED)
            plan = kp.sample_plan(64, _gen(5))
            _assert_chained_close(kp.apply_plan(x, plan), tp.apply_plan(x, plan))


def _cutout_mask(y: torch.Tensor, side: int) -> torch.Tensor:
    """``(B, H, W)`` pixels that hold the cutout fill (the dataset mean) on every channel,
    after checking that each sample has exactly one such filled rectangle of at most
    ``side x side`` and at least the smallest border-clipped square."""
    fill = torch.tensor(SPEC.mean).view(1, 3, 1, 1)
    mask = (y == fill).all(1)
    for i, m in enumerate(mask):
        ys, xs = m.nonzero(as_tuple=True)
        assert ys.numel() >= (side - side // 2) ** 2, f"sample {i}: no cutout square"
        h, w = int(ys.max() - ys.min()) + 1, int(xs.max() - xs.min()) + 1
        assert h <= side and w <= side and ys.numel() == h * w, f"sample {i}: not one filled square"
    return mask


def test_backends_share_sampling_and_fixed_ops() -> None:
    x = _images(32)
    # Zero fill for the geometric ops, so that only cutout paints the mean.
    cfg = {"cutout": 5, "interpolation": "nearest", "fill": "zero", "crop": True}
    yk, pk = _kornia(**cfg)(x, _gen(9))
    yt, pt = _torchvision(**cfg)(x, _gen(9))
    assert torch.equal(pk.index, pt.index) and torch.equal(pk.levels, pt.levels)
    _assert_chained_close(yk, yt)
    # Cutout runs after the policy, so its squares survive exactly, at the same place in both.
    assert torch.equal(_cutout_mask(yk, 5), _cutout_mask(yt, 5))


def test_fused_geometric_warp_equals_one_call_per_op() -> None:
    x = _images(96)
    fused, unfused = _kornia(**NO_FIXED), _kornia(fuse_geometric=False, **NO_FIXED)
    for interpolation in ("nearest", "bilinear"):
        fused.config.interpolation = unfused.config.interpolation = interpolation
        plan = fused.sample_plan(96, _gen(2))
        assert torch.equal(fused.apply_plan(x, plan), unfused.apply_plan(x, plan))


def test_kornia_backend_makes_one_call_per_op_present(monkeypatch: pytest.MonkeyPatch) -> None:
    from dha_plugins.aug import kornia_policy, ops_kornia

    calls: list[tuple[str, int]] = []
    patched = {}
    for name, fn in ops_kornia.KORNIA_OPS.items():
        def spy(images, level, sign, mode, _fn=fn, _name=name, **kwargs):
            calls.append((_name, images.shape[0]))
            return _fn(images, level, sign, mode, **kwargs)
        patched[name] = spy
    monkeypatch.setattr(kornia_policy, "KORNIA_OPS", patched)
    policy = _kornia(fuse_geometric=False, **NO_FIXED)
    plan = policy.sample_plan(128, _gen(4))
    policy.apply_plan(_images(128), plan)
    expected = []
    for pos in range(2):
        present = plan.ops[:, pos].unique().tolist()
        expected += [(policy.op_names[o], int((plan.ops[:, pos] == o).sum())) for o in present if policy.op_names[o] != "Identity"]
    assert sorted(calls) == sorted(expected)


def test_single_op_policy_applies_one_op_per_sample() -> None:
    kp, tp = _kornia(policy="single", **NO_FIXED), _torchvision(policy="single", **NO_FIXED)
    x = _images(32)
    plan = kp.sample_plan(32, _gen(0))
    assert torch.equal(plan.index, plan.ops[:, 0])
    assert (kp.apply_plan(x, plan) - tp.apply_plan(x, plan)).abs().max() <= 1 / 255


@pytest.mark.parametrize("make", [_kornia, _torchvision])
def test_fixed_ops_run_around_the_policy(make) -> None:
    """Crop, flip, the policy, then cutout, replayed draw by draw from the same seed.

    The policy holds only ``Identity``, so it leaves every image as it is: whatever changes
    the batch is the fixed ops, and the expected output is built here per sample from the
    documented draw order (crop offsets ``(B, 2)``, flips ``(B,)``, the policy's plan,
    cutout centres: rows ``(B,)`` then columns ``(B,)``).
    """
    b, size, pad, side = 24, 16, 2, 4
    policy = make(ops=["Identity"], crop=True, flip=True, cutout=side)
    assert policy.fixed_ops.padding == SPEC.image_size // 8 == pad
    x = _images(b)
    y, plan = policy(x, _gen(0))
    assert y.shape == x.shape and set(plan.ops.flatten().tolist()) == {0}

    g = _gen(0)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=g)
    flips = torch.rand(b, generator=g) < 0.5
    policy.sample_plan(b, g)  # the policy's own draws sit between the pre- and post-ops
    rows = torch.randint(0, size, (b,), generator=g)
    cols = torch.randint(0, size, (b,), generator=g)
    # The draws exercise every branch: shifted crops, flipped and unflipped samples.
    assert (offsets != pad).any(1).sum() > b // 2 and 0 < int(flips.sum()) < b

    padded = F.pad(x, (pad,) * 4)  # zero padding (pad_mode="constant")
    fill = torch.tensor(SPEC.mean).view(3, 1, 1)
    for i in range(b):
        oy, ox = offsets[i].tolist()
        want = padded[i, :, oy : oy + size, ox : ox + size].clone()
        if flips[i]:
            want = want.flip(-1)
        top, left = int(rows[i]) - side // 2, int(cols[i]) - side // 2
        want[:, max(top, 0) : top + side, max(left, 0) : left + side] = fill
        assert torch.equal(y[i], want), f"sample {i}"
    # And, read off the output alone: one clipped square of the mean per sample.
    _cutout_mask(y, side)


# ---------------------------------------------------------------------------- policy loss and step


def _random_policy_and_plan(b: int = 32):
    policy = _kornia(baseline="none")  # Eq. 2 literally; the baseline has its own test
    with torch.no_grad():
        policy.tau.normal_(generator=_gen(7))
    plan = policy.sample_plan(b, _gen(8))
    losses = torch.rand(b, generator=_gen(9)) * 3
    return policy, plan, losses


def test_policy_loss_gradient_matches_closed_form() -> None:
    policy, plan, losses = _random_policy_and_plan()
    loss = policy.policy_loss(losses, plan)
    loss.backward()
    p = torch.softmax(policy.tau.detach().flatten().double(), 0)
    eye = torch.eye(p.numel(), dtype=torch.float64)
    expected = -sum(losses[i].double() * p[k] * (eye[k] - p) for i, k in enumerate(plan.index.tolist())) / len(plan)
    torch.testing.assert_close(policy.tau.grad.flatten().double(), expected, rtol=1e-5, atol=1e-9)
    # and the value: -mean_i p_{k_i} L_i
    torch.testing.assert_close(loss.double(), -(p[plan.index] * losses.double()).mean(), rtol=1e-6, atol=0)


def test_policy_loss_does_not_backprop_into_the_losses() -> None:
    policy, plan, losses = _random_policy_and_plan()
    losses.requires_grad_(True)
    policy.policy_loss(losses, plan).backward()
    assert losses.grad is None


def test_policy_step_is_one_sgd_step_on_tau() -> None:
    policy = KorniaPolicy(KorniaPolicyConfig(optimizer="sgd", baseline="none", lr=2.0, momentum=0.0, nesterov=False))
    with torch.no_grad():
        policy.tau.normal_(generator=_gen(1))
    plan = policy.sample_plan(16, _gen(2))
    losses = torch.rand(16, generator=_gen(3))
    before = policy.tau.detach().clone()
    policy.policy_loss(losses, plan).backward()
    grad = policy.tau.grad.clone()
    policy.tau.grad = None
    metrics = policy.policy_step(losses, plan)
    torch.testing.assert_close(policy.tau.detach(), before - 2.0 * grad)
    assert set(metrics) == {"loss", "entropy", "top1_index", "top1_prob", "top2_index", "top2_prob", "top3_index", "top3_prob"}
    p = policy.probabilities().flatten()
    assert metrics["top1_prob"] == pytest.approx(p.max().item())
    assert p[int(metrics["top1_index"])].item() == pytest.approx(p.max().item())
    assert metrics["entropy"] == pytest.approx(policy.entropy(), rel=1e-5)


def test_policy_moves_towards_pairs_with_high_loss() -> None:
    policy = _kornia(lr=5.0)
    target = policy.op_names.index("Rotate") * 14 + policy.op_names.index("Equalize")
    for step in range(60):
        plan = policy.sample_plan(64, _gen(step))
        losses = torch.where(plan.index == target, 5.0, 0.5)
        policy.policy_step(losses, plan)
    p = policy.probabilities().flatten()
    assert int(p.argmax()) == target
    assert policy.report()["top"][0]["ops"] == ["Rotate", "Equalize"]
    assert policy.entropy() < math.log(196)


def test_policy_step_checks_the_loss_shape() -> None:
    policy, plan, _ = _random_policy_and_plan(8)
    with pytest.raises(ValueError, match="shape"):
        policy.policy_step(torch.rand(9), plan)


def test_optimizer_state_roundtrip_reproduces_the_next_step() -> None:
    a = _kornia()
    for step in range(3):
        plan = a.sample_plan(16, _gen(step))
        a.policy_step(torch.rand(16, generator=_gen(100 + step)), plan)
    state = a.optimizer_state_dict()
    assert state["state"], "momentum buffer expected after steps"
    b = _kornia()
    b.load_state_dict(a.state_dict())
    b.load_optimizer_state_dict(state)
    plan = a.sample_plan(16, _gen(50))
    losses = torch.rand(16, generator=_gen(51))
    a.policy_step(losses, plan)
    b.policy_step(losses, plan)
    assert torch.equal(a.tau, b.tau)
    fresh = _kornia()
    fresh.load_state_dict(state_dict := a.state_dict())  # without optimizer state the step differs
    fresh.policy_step(losses, plan)
    a.policy_step(losses, plan)
    assert not torch.equal(fresh.tau, a.tau) and state_dict is not None


def test_report_lists_entropy_top_pairs_and_probabilities() -> None:
    policy = _kornia(report_top_k=4)
    report = policy.report()
    assert report["entropy"] == pytest.approx(math.log(196), rel=1e-6)
    assert report["max_entropy"] == pytest.approx(math.log(196))
    assert len(report["top"]) == 4
    assert len(report["pair_probs"]) == 14 and sum(map(sum, report["pair_probs"])) == pytest.approx(1.0)
    with torch.no_grad():
        policy.tau[3, 4] = 5.0
    top = policy.report()["top"][0]
    assert top["ops"] == [policy.op_names[3], policy.op_names[4]] and top["index"] == 3 * 14 + 4
    assert "op_probs" in _kornia(policy="single").report()


def test_batch_mean_baseline_subtracts_the_mean_loss() -> None:
    """Eq. 2 with L_i - mean(L): equal to Eq. 2 on the centred losses, so a batch in which
    every sample has the same loss moves nothing."""
    policy, plan, losses = _random_policy_and_plan()
    centred = _kornia(baseline="batch_mean")
    with torch.no_grad():
        centred.tau.copy_(policy.tau)
    torch.testing.assert_close(centred.policy_loss(losses, plan), policy.policy_loss(losses - losses.mean(), plan))
    flat = centred.policy_loss(torch.full_like(losses, 2.0), plan)
    flat.backward()
    assert centred.tau.grad.abs().max() < 1e-7
