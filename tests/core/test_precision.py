"""``train.precision``, ``channels_last``, ``threads`` and ``compile`` (dha_core/precision.py).

What must hold whatever the setting: augmentation, the relaxation's weights, the losses,
the weights and batch-norm statistics stay float32; the hypergradient's dot products stay
float32 or better; the saved model is a contiguous float32 model whose TorchScript export
gives ``load_model``'s logits; fp16 overflows are skipped steps, not non-finite errors; a
compiled forward follows every change of the ISTA support.

The hypergradient tolerance (``test_bf16_hypergradient_matches_finite_differences``):
bf16 keeps 8 significant bits, so each rounding to bf16 has relative error at most
``u = 2**-8``. Under CPU autocast the held-out gradient of ``Linear -> Tanh -> Linear``
goes through ``K = 12`` roundings on its longest path (forward: the input and both weight
matrices and biases are cast, the two linear outputs and the tanh output are rounded;
backward: the logits' gradient, the hidden gradient, the tanh derivative product and the
weight gradient are rounded). To first order the normwise relative error of ``h`` is then
at most ``K * u`` (about 0.047), and by Cauchy-Schwarz the closed-form hypergradients
``-<h, d>`` and ``-lr * <h, theta>`` move by at most ``K * u * ||h|| * ||d||`` and
``K * u * lr * ||h|| * ||theta||``. The reference is a central finite difference at float64;
the float32 closed form must match it to ``1e-4`` of the same scale.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dha_core
from dha_core import precision as precision_mod
from dha_core.config import resolve_config
from dha_core.errors import UserInputError
from dha_core.export import export_run
from dha_core.precision import RunPerformance, thread_scope
from dha_plugins.hpo.hypergrad import HypergradHPOConfig, HypergradHyperOptimizer, _group_dots
from tests.conftest import random_batch, tiny_raw_config

CPU = torch.device("cpu")
U_BF16 = 2.0**-8
K_ROUNDINGS = 12

DHA = {
    "space": {"name": "darts", "C": 4, "layers": 3, "nodes": 2},
    "relax": {"name": "ista", "recover_every": 2},
    "aug": {"name": "kornia"},
    "hpo": {"name": "hypergrad", "hyper_batch": "held_out"},
}


def _stage(tmp_path: Path, train: dict[str, Any] | None = None, **sections: Any) -> Any:
    raw = tiny_raw_config(tmp_path / "runs", **(DHA | sections))
    raw["train"].update(train or {})
    searcher = dha_core.build(config=raw)
    searcher.prepare()
    return searcher.builder.build(searcher.plan[0])


def _batch(seed: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return random_batch(seed, n)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("train, resolved", [
    ({}, ("fp32", False)),  # auto on CPU: fp32, contiguous (today's behaviour)
    ({"precision": "bf16"}, ("bf16", False)),
    ({"precision": "fp32", "channels_last": True}, ("fp32", True)),
    ({"precision": "fp16", "channels_last": "auto"}, ("fp16", False)),
])
def test_resolution_on_cpu(train: dict[str, Any], resolved: tuple[str, bool]) -> None:
    cfg = resolve_config({"train": train}).train
    perf = RunPerformance.resolve(cfg, CPU)
    assert (perf.precision, perf.channels_last) == resolved
    assert (perf.grad_scaler() is not None) == (perf.precision == "fp16")
    assert perf.autocast_dtype == {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[perf.precision]


def test_auto_on_cuda_is_bf16_and_channels_last_where_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = resolve_config({}).train
    monkeypatch.setattr(precision_mod, "conv_gradient_check", lambda device, precision, channels_last: None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    perf = RunPerformance.resolve(cfg, torch.device("cuda:0"))
    assert (perf.precision, perf.channels_last) == ("bf16", True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    perf = RunPerformance.resolve(cfg, torch.device("cuda:0"))
    assert (perf.precision, perf.channels_last) == ("fp32", False)
    with pytest.raises(UserInputError, match=r"^train.precision: bf16 is not supported on cuda:0"):
        RunPerformance.resolve(resolve_config({"train": {"precision": "bf16"}}).train, torch.device("cuda:0"))
    with pytest.raises(UserInputError, match=r"^train.precision: fp16 is supported on cuda and cpu"):
        RunPerformance.resolve(resolve_config({"train": {"precision": "fp16"}}).train, torch.device("mps"))


@pytest.mark.parametrize("key, value, needle", [
    ("precision", "fp8", "'auto', 'fp32', 'bf16' or 'fp16'"),
    ("precision", 16, "'auto', 'fp32', 'bf16' or 'fp16'"),
    ("channels_last", "sometimes", "must be auto, true or false"),
    ("channels_last", 1, "must be auto, true or false"),
    ("threads", 0, "greater than or equal to 1"),
    ("threads", "many", "valid integer"),
    ("compile", "maybe", "valid boolean"),
])
def test_bad_values_are_one_line(key: str, value: Any, needle: str) -> None:
    with pytest.raises(UserInputError) as exc:
        resolve_config({"train": {key: value}})
    message = str(exc.value)
    assert "\n" not in message and f"train.{key}" in message and needle in message


def test_conv_check_detects_wrong_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A convolution that is wrong only in channels_last is caught; the correct one passes."""
    real = F.conv2d

    def broken(x: torch.Tensor, w: torch.Tensor, *args: Any) -> torch.Tensor:
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            w = w * 1.5
        return real(x, w, *args)

    precision_mod.conv_gradient_check.cache_clear()
    try:
        assert precision_mod.conv_gradient_check(CPU, "fp32", True) is None
        precision_mod.conv_gradient_check.cache_clear()
        monkeypatch.setattr(precision_mod, "F", type("F", (), {"conv2d": staticmethod(broken)}))
        assert precision_mod.conv_gradient_check(CPU, "fp32", False) is None
        failure = precision_mod.conv_gradient_check(CPU, "fp32", True)
        assert failure is not None and "output off by" in failure
    finally:
        precision_mod.conv_gradient_check.cache_clear()


def test_a_wrong_combination_is_refused_or_avoided(monkeypatch: pytest.MonkeyPatch) -> None:
    def check(device: torch.device, precision: str, channels_last: bool) -> str | None:
        return "depthwise conv: weight gradient off" if channels_last else None

    monkeypatch.setattr(precision_mod, "conv_gradient_check", check)
    with pytest.raises(UserInputError, match=r"^train.channels_last: bf16 \+ channels_last computes wrong .* "
                                             r"weight gradient off\); use channels_last: false$"):
        RunPerformance.resolve(resolve_config({"train": {"precision": "bf16", "channels_last": True}}).train, CPU)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    perf = RunPerformance.resolve(resolve_config({}).train, torch.device("cuda:0"))  # auto: avoided
    assert (perf.precision, perf.channels_last) == ("bf16", False)
    monkeypatch.setattr(precision_mod, "conv_gradient_check", lambda device, precision, channels_last: "bad")
    with pytest.raises(UserInputError, match=r"^train.precision: bf16 computes wrong convolution results"):
        RunPerformance.resolve(resolve_config({"train": {"precision": "bf16"}}).train, CPU)
    perf = RunPerformance.resolve(resolve_config({}).train, torch.device("cuda:0"))
    assert (perf.precision, perf.channels_last) == ("fp32", False)


def test_thread_scope_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with thread_scope(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with thread_scope(None):
        assert torch.get_num_threads() == before


def test_fit_runs_with_the_configured_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tiny_raw_config(tmp_path / "runs")
    raw["train"].update({"threads": 2, "epochs": 1})
    seen: list[int] = []
    from dha_core.joint_step import JointStep

    original = JointStep.__call__

    def spy(self: JointStep, batch: Any, step: int) -> Any:
        seen.append(torch.get_num_threads())
        return original(self, batch, step)

    monkeypatch.setattr(JointStep, "__call__", spy)
    before = torch.get_num_threads()
    summary = dha_core.build(config=raw).fit().summary
    assert seen and set(seen) == {2}
    assert torch.get_num_threads() == before
    assert summary["performance"] == {"precision": "fp32", "channels_last": False, "compile": False, "threads": 2}


# ----------------------------------------------------------------------------- what stays fp32
def test_bf16_step_keeps_the_full_precision_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage(tmp_path, {"precision": "bf16"})
    step_fn = stage.step_fn
    seen: dict[str, Any] = {"conv_inputs": [], "mixing_autocast": []}

    def conv_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen["conv_inputs"].append(torch.is_autocast_enabled("cpu"))

    hooks = [m.register_forward_pre_hook(conv_hook) for m in stage.net.modules() if isinstance(m, nn.Conv2d)]
    original_aug, original_policy, original_mixing = stage.aug.forward, stage.aug.policy_step, stage.relax.mixing_weights

    def aug_spy(x: torch.Tensor, generator: Any = None) -> Any:
        assert not torch.is_autocast_enabled("cpu")
        out = original_aug(x, generator)
        seen["aug_out"] = out[0]
        return out

    def policy_spy(per_sample: torch.Tensor, plan: Any) -> dict[str, float]:
        seen["per_sample"] = per_sample
        seen["policy_autocast"] = torch.is_autocast_enabled("cpu")
        return original_policy(per_sample, plan)

    def mixing_spy() -> Any:
        seen["mixing_autocast"].append(torch.is_autocast_enabled("cpu"))
        weights = original_mixing()
        seen["mixing_dtypes"] = {v.dtype for v in weights.values.values()}
        return weights

    monkeypatch.setattr(stage.aug, "forward", aug_spy)
    monkeypatch.setattr(stage.aug, "policy_step", policy_spy)
    monkeypatch.setattr(stage.relax, "mixing_weights", mixing_spy)
    val = _batch(1)
    monkeypatch.setattr(step_fn, "next_val_batch", lambda: val)
    outcome = step_fn(_batch(0), 0)
    for h in hooks:
        h.remove()

    assert not outcome.skipped
    # the network's forward ran under bf16 autocast (training forward and held-out forward)
    assert seen["conv_inputs"] and all(seen["conv_inputs"])
    # augmentation: float32 images in [0, 1], before autocast
    x_aug = seen["aug_out"]
    assert x_aug.dtype == torch.float32 and float(x_aug.min()) >= 0.0 and float(x_aug.max()) <= 1.0
    # the relaxation's weights are computed outside autocast, in float32
    assert seen["mixing_autocast"] and not any(seen["mixing_autocast"])
    assert seen["mixing_dtypes"] == {torch.float32}
    # the policy learns from float32 losses, outside autocast
    assert seen["per_sample"].dtype == torch.float32 and not seen["policy_autocast"]
    # weights, batch-norm statistics, relaxation and policy parameters stay float32
    for module in (stage.net, stage.relax, stage.aug):
        for name, t in module.state_dict().items():
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                assert t.dtype == torch.float32, name


def test_channels_last_network_and_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = _stage(tmp_path, {"channels_last": True})
    convs = [m for m in stage.net.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[-1] > 1
             and m.weight.shape[1] > 1]  # (C, 1, k, k) depthwise weights are both formats at once
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert all(not m.weight.is_contiguous() for m in convs)
    seen: list[bool] = []
    original = stage.net.forward

    def spy(x: torch.Tensor, weights: Any = None) -> Any:
        seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return original(x, weights)

    monkeypatch.setattr(stage.net, "forward", spy)
    stage.step_fn.next_val_batch = lambda: _batch(1)
    assert not stage.step_fn(_batch(0), 0).skipped
    assert seen == [True, True]  # the training batch and the held-out batch


def test_held_out_gradient_is_float32_from_a_bf16_forward(tmp_path: Path) -> None:
    stage = _stage(tmp_path, {"precision": "bf16"})
    step_fn = stage.step_fn
    val = _batch(1)
    step_fn.next_val_batch = lambda: val
    h_bf16 = [g for g in step_fn._hyper_grad() if g is not None]
    step_fn.perf = RunPerformance(CPU)  # same state, fp32
    h_fp32 = [g for g in step_fn._hyper_grad() if g is not None]
    assert h_bf16 and all(g.dtype == torch.float32 for g in h_bf16)
    flat16, flat32 = torch.cat([g.flatten() for g in h_bf16]), torch.cat([g.flatten() for g in h_fp32])
    assert not torch.equal(flat16, flat32)  # the bf16 forward did run
    # Same direction, within bf16's rounding (measured: cosine ~0.9 on this supernet, whose conv
    # weights feed batch norms whose backward cancels; docs/architecture.md, "Precision").
    assert float(F.cosine_similarity(flat16, flat32, dim=0)) > 0.5


def test_hypergradient_dot_products_stay_full_precision_under_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    h, d, theta = ([torch.randn(4096, generator=g) for _ in range(3)] for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hd, h_theta = _group_dots(h, d, theta)
    assert hd.dtype == torch.float32 and h_theta.dtype == torch.float32
    ref = torch.dot(torch.cat(h).double(), torch.cat(d).double())
    scale = float(torch.cat(h).double().norm() * torch.cat(d).double().norm())
    assert abs(float(hd) - float(ref)) <= 1e-5 * scale  # float32 accumulation, not bf16 (~4e-3)


# ----------------------------------------------------------------------------- hypergradient
def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 5))


def _data(seed: int, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


LR, WD = 0.1, 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_hypergradient_matches_finite_differences(seed: int) -> None:
    """See the module docstring for the tolerance ``K * u * ||h|| * ||d||``."""
    train, hyper = _data(10 + seed), _data(20 + seed)
    results = {}
    for name in ("fp32", "bf16"):
        perf = RunPerformance(CPU, precision=name)  # type: ignore[arg-type]
        net = _mlp()
        groups = [{"name": "all", "params": list(net.parameters())}]
        hpo = HypergradHyperOptimizer(HypergradHPOConfig(
            momentum=0.0, lr_init=LR, wd_init=WD, wd_low=1e-5, wd_up=1e-2, lr_hyper_lr=0.0, wd_hyper_lr=0.0,
            no_decay_groups=(), hyper_batch="held_out", decay="none"))
        hpo.attach(groups, total_steps=1)
        theta0 = [p.detach().double().clone() for p in net.parameters()]
        hpo.zero_grad()
        F.cross_entropy(net(train[0]), train[1]).backward()
        grads = [p.grad.detach().double().clone() for p in net.parameters()]

        def closure(net: nn.Module = net, perf: RunPerformance = perf) -> list[torch.Tensor]:
            with perf.autocast():
                out = net(hyper[0])
            return list(torch.autograd.grad(F.cross_entropy(out.float(), hyper[1]), list(net.parameters())))

        metrics = hpo.step(closure)
        h = torch.cat([g.flatten() for g in closure()]).double()
        results[name] = (metrics["hypergrad_lr"], metrics["hypergrad_wd"], h)

    # float64 reference: L_hyper(theta - lr * (g + wd * theta)) by central differences
    ref_net = _mlp().double()

    def hyper_loss(lr: float, wd: float) -> float:
        with torch.no_grad():
            for p, t0, g in zip(ref_net.parameters(), theta0, grads, strict=True):
                p.copy_(t0 - lr * (g + wd * t0))
            return float(F.cross_entropy(ref_net(hyper[0].double()), hyper[1]))

    eps_lr, eps_wd = LR * 1e-5, WD * 1e-3
    fd_lr = (hyper_loss(LR + eps_lr, WD) - hyper_loss(LR - eps_lr, WD)) / (2 * eps_lr)
    fd_wd = (hyper_loss(LR, WD + eps_wd) - hyper_loss(LR, WD - eps_wd)) / (2 * eps_wd)
    d = torch.cat([(g + WD * t).flatten() for g, t in zip(grads, theta0, strict=True)])
    theta = torch.cat([t.flatten() for t in theta0])
    h_norm = float(results["fp32"][2].norm())
    scale_lr, scale_wd = h_norm * float(d.norm()), LR * h_norm * float(theta.norm())

    lr32, wd32, _ = results["fp32"]
    lr16, wd16, h16 = results["bf16"]
    assert abs(lr32 - fd_lr) <= 1e-4 * scale_lr and abs(wd32 - fd_wd) <= 1e-4 * scale_wd
    assert abs(lr16 - fd_lr) <= K_ROUNDINGS * U_BF16 * scale_lr
    assert abs(wd16 - fd_wd) <= K_ROUNDINGS * U_BF16 * scale_wd
    # h itself: the normwise bound the two above follow from
    assert float((h16 - results["fp32"][2]).norm()) <= K_ROUNDINGS * U_BF16 * h_norm
    assert lr16 != lr32  # autocast did act


# ----------------------------------------------------------------------------- fp16 loss scaling
def _set_scale(scaler: torch.amp.GradScaler, value: float) -> None:
    state = scaler.state_dict()
    state["scale"] = value
    scaler.load_state_dict(state)


def test_fp16_overflow_is_a_skipped_step_not_a_nonfinite_error(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    stage = _stage(tmp_path, {"precision": "fp16", "max_nonfinite_steps": 1})
    step_fn = stage.step_fn
    assert step_fn.scaler is not None
    step_fn.next_val_batch = lambda: _batch(99)
    _set_scale(step_fn.scaler, 2.0**126)  # scaled gradients overflow float32 for sure
    before = [p.detach().clone() for p in step_fn.weights]
    with caplog.at_level(logging.WARNING):
        first = step_fn(_batch(0), 0)
        second = step_fn(_batch(1), 1)  # two in a row: max_nonfinite_steps=1 must not raise
    assert first.skipped and second.skipped
    assert first.metrics["scaler_skipped"] == 1.0 and first.metrics["grad_scale"] == 2.0**125
    assert step_fn.nonfinite_run == 0 and step_fn.nonfinite_total == 0 and step_fn.scaler_skipped == 2
    assert "non-finite" not in caplog.text
    assert all(torch.equal(a, p) for a, p in zip(before, step_fn.weights, strict=True))  # no weight step
    _set_scale(step_fn.scaler, 1024.0)
    ok = step_fn(_batch(2), 2)
    assert not ok.skipped and ok.metrics["grad_scale"] == 1024.0 and ok.metrics["hyper_applied"] == 1.0
    assert not all(torch.equal(a, p) for a, p in zip(before, step_fn.weights, strict=True))
    # the scale is part of the stage's state (exact resume)
    state = stage.state_dict()
    assert state["grad_scaler"]["scale"] == 1024.0
    other = _stage(tmp_path / "other", {"precision": "fp16"})
    other.load_state_dict(copy.deepcopy(state))
    assert other.step_fn.scaler.get_scale() == 1024.0


def test_fp16_unscales_before_clipping_and_the_arch_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weight step and ISTA's step see the same gradients as without scaling (to fp16 rounding)."""
    stage = _stage(tmp_path, {"precision": "fp16", "grad_clip": None})
    step_fn = stage.step_fn
    step_fn.next_val_batch = lambda: _batch(99)
    _set_scale(step_fn.scaler, 4096.0)
    norms: list[float] = []
    original = stage.hpo.step

    original_arch = stage.relax.arch_step

    def arch_spy(ctx: Any) -> dict[str, float]:
        arch = [p.grad for p in stage.relax.arch_parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in arch]))))
        return original_arch(ctx)

    def spy(hyper_grad: Any = None) -> dict[str, float]:
        norms.insert(0, float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in step_fn.weights
                                                                       if p.grad is not None]))))
        return original(hyper_grad)

    monkeypatch.setattr(stage.relax, "arch_step", arch_spy)
    monkeypatch.setattr(stage.hpo, "step", spy)
    outcome = step_fn(_batch(0), 0)
    assert not outcome.skipped
    assert outcome.metrics["grad_norm"] == pytest.approx(norms[0], rel=1e-5)
    # unscaled: of the order of an fp32 gradient, not 4096 times larger
    assert 1e-4 < norms[0] < 100 and norms[1] < 100


# ----------------------------------------------------------------------------- whole runs
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("precision, channels_last", [("bf16", False), ("fp32", True)])
def test_search_exports_the_fp32_model(tmp_path: Path, precision: str, channels_last: bool) -> None:
    """The child of a bf16 (or channels_last) search: TorchScript == load_model == result.model."""
    raw = tiny_raw_config(tmp_path / "runs", **DHA)
    raw["train"].update({"precision": precision, "channels_last": channels_last, "epochs": 1})
    raw["output"]["name"] = "run"
    result = dha_core.build(config=raw).fit()
    run = tmp_path / "runs" / "run"
    assert result.summary["performance"]["precision"] == precision
    assert result.summary["performance"]["channels_last"] is channels_last
    blob = torch.load(run / "model.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in blob["state_dict"].values() if t.is_floating_point())
    assert all(t.is_contiguous() for t in blob["state_dict"].values())
    loaded = dha_core.load_model(run)
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = loaded(x)
        torch.testing.assert_close(result.model.cpu()(x), expected, rtol=0, atol=0)
        traced = torch.jit.load(str(export_run(run, "torchscript")))
        torch.testing.assert_close(traced(x), expected, rtol=1e-6, atol=1e-6)
    assert expected.dtype == torch.float32


def test_default_precision_changes_nothing(tmp_path: Path) -> None:
    """``auto`` on CPU and explicit ``fp32``/``channels_last: false`` give the same run, bit for bit."""
    summaries = []
    for i, train in enumerate([{}, {"precision": "fp32", "channels_last": False, "compile": False}]):
        raw = tiny_raw_config(tmp_path / f"r{i}", **DHA)
        raw["train"].update({"epochs": 1, **train})
        summary = dha_core.build(config=raw).fit().summary
        summaries.append({k: v for k, v in summary.items() if k not in ("wall_s", "stage_wall_s", "stage_train_s", "budget_used")})
    assert summaries[0] == summaries[1]


# ----------------------------------------------------------------------------- compile
def test_compiled_forward_follows_support_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new ISTA support recompiles; the compiled forward never reuses a stale graph.

    Dynamo's ``eager`` backend is used: the guards and recompilation under test are
    dynamo's, whatever backend then compiles the graph.
    """
    monkeypatch.setattr(precision_mod, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    stage = _stage(tmp_path, {"compile": True}, relax={"name": "ista"}, aug="none",
                   hpo={"name": "fixed", "lr": 0.01})
    step_fn = stage.step_fn
    assert step_fn.forward_net is not stage.net  # compiled, sharing the weights
    x = step_fn.normalize(_batch(0)[0])
    stage.net.eval()

    def check() -> None:
        with torch.no_grad():
            weights = stage.relax.mixing_weights()
            torch.testing.assert_close(step_fn.forward_net(x, weights), stage.net(x, weights), rtol=0, atol=0)

    check()
    node = stage.relax.nodes[0]
    old = list(node._support)
    new = [i for i in range(node.x.shape[0]) if i not in old][: len(old)]
    node.set_code(node.x.detach().clone() + 0.5, new)  # a different support and different weights
    check()
    stage.net.set_drop_path(0.0)
    stage.net.fold_group(node.group.name, stage.relax.mixing_weights().values[node.group.name])
    check()  # folded batch-norm parameters (in-place) are read, not baked in
    torch._dynamo.reset()


def test_compiled_training_matches_eager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_mod, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    summaries = []
    for i, flag in enumerate((False, True)):
        raw = tiny_raw_config(tmp_path / f"r{i}", **(DHA | {"relax": {"name": "ista", "recover_every": 2}}))
        raw["train"].update({"epochs": 2, "compile": flag})
        summary = dha_core.build(config=raw).fit().summary
        summaries.append({k: v for k, v in summary.items() if k not in ("wall_s", "stage_wall_s", "stage_train_s", "budget_used", "performance")})
    torch._dynamo.reset()
    assert summaries[0]["relax"] == summaries[1]["relax"]
    assert json.dumps(summaries[0], sort_keys=True) == json.dumps(summaries[1], sort_keys=True)
