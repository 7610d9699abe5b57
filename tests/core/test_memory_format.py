"""``channels_last: auto`` on CPU: each time-budgeted stage takes the faster memory format
(dha_core/memory_format.py), and the timing leaves no trace in the training that follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import dha_core
from dha_core import stage_builder
from dha_core.config import resolve_config
from dha_core.memory_format import MIN_SPEEDUP, FormatTiming, time_memory_formats
from dha_core.precision import RunPerformance
from dha_core.runtime import seed_everything
from dha_core.searcher import Searcher
from tests.conftest import random_batch, tiny_raw_config

CPU = torch.device("cpu")
DHA = {
    "space": {"name": "darts", "C": 4, "layers": 3, "nodes": 2},
    "relax": {"name": "ista", "recover_every": 2},
    "aug": {"name": "kornia"},
    "hpo": {"name": "hypergrad", "hyper_batch": "held_out"},
}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 1, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def _forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x)


@pytest.mark.parametrize(("contiguous_s", "channels_last_s", "expected"), [
    (1.0, 0.5, True), (1.0, 1.0 / MIN_SPEEDUP, True), (1.0, 0.99, False), (0.5, 1.0, False)])
def test_channels_last_only_when_clearly_faster(contiguous_s: float, channels_last_s: float, expected: bool) -> None:
    assert FormatTiming(contiguous_s, channels_last_s).channels_last is expected


def test_timing_restores_buffers_grads_rng_and_format() -> None:
    net = _net()
    net[0].weight.grad = torch.full_like(net[0].weight, 7.0)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    rng = torch.get_rng_state()
    timing = time_memory_formats(net, _forward, (4, 3, 8, 8))
    assert timing.contiguous_s > 0 and timing.channels_last_s > 0
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert torch.equal(net[0].weight.grad, torch.full_like(net[0].weight, 7.0))
    assert net[1].weight.grad is None
    assert all(p.is_contiguous() for p in net.parameters())


def test_timing_measures_each_format_with_its_own_tensors() -> None:
    """With a clock that charges 1.5 s to a contiguous pass and 0.5 s to a channels_last one,
    channels_last wins: each format is timed with network and input in that format."""
    net, now, last_format = _net(), [0.0], [False]

    def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        last_format[0] = module[0].weight.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return module(x)

    def clock() -> float:  # read at a pass's start and end: charge the pass just run at its end
        now[0] += 0.5 if last_format[0] else 1.5
        return now[0]

    timing = time_memory_formats(net, forward, (4, 3, 8, 8), clock=clock)
    assert timing.contiguous_s == pytest.approx(1.5) and timing.channels_last_s == pytest.approx(0.5)
    assert timing.channels_last


@pytest.mark.parametrize(("channels_last", "measure"), [("auto", True), (True, False), (False, False)])
def test_only_auto_on_cpu_measures(channels_last: Any, measure: bool) -> None:
    perf = RunPerformance.resolve(resolve_config({"train": {"channels_last": channels_last}}).train, CPU)
    assert perf.measure_memory_format is measure
    assert perf.channels_last is (channels_last is True)


def _fake_timing(monkeypatch: pytest.MonkeyPatch, channels_last: bool) -> list[tuple[int, ...]]:
    calls: list[tuple[int, ...]] = []
    real = stage_builder.time_memory_formats

    def fake(net: nn.Module, forward: Any, shape: tuple[int, ...], **kw: Any) -> FormatTiming:
        calls.append(shape)
        real(net, forward, shape, repeats=1)  # run it, for its side effects (there must be none)
        return FormatTiming(1.0, 0.5) if channels_last else FormatTiming(0.5, 1.0)

    monkeypatch.setattr(stage_builder, "time_memory_formats", fake)
    return calls


def _budgeted_searcher(tmp_path: Path) -> Searcher:
    """A prepared searcher of a DHA config bounded by a 1-s budget."""
    raw = tiny_raw_config(tmp_path / "runs", **DHA)
    raw["train"].pop("epochs")
    raw["train"]["time_budget_s"] = 1.0
    searcher = Searcher(resolve_config(raw))
    searcher.prepare()
    return searcher


@pytest.mark.parametrize("faster_channels_last", [True, False])
def test_a_budgeted_stage_takes_the_faster_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  faster_channels_last: bool) -> None:
    calls = _fake_timing(monkeypatch, faster_channels_last)
    searcher = _budgeted_searcher(tmp_path)
    stage = searcher.builder.build(searcher.plan[0])
    assert calls == [(16, 3, 8, 8)]
    convs = [m for m in stage.net.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1
             and m.weight.shape[-1] > 1]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) is faster_channels_last
                         and m.weight.is_contiguous() is not faster_channels_last for m in convs)
    assert stage.perf.channels_last is faster_channels_last
    assert stage.history["memory_format"]["channels_last"] is faster_channels_last


def test_an_epoch_bounded_run_does_not_measure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_timing(monkeypatch, True)
    raw = tiny_raw_config(tmp_path / "runs", **DHA)
    summary = dha_core.build(config=raw).fit().summary
    assert calls == []
    assert summary["performance"]["channels_last"] is False


def test_timing_leaves_training_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage built after a timing that kept contiguous tensors takes the same step, bit for
    bit, as a stage built with ``channels_last: false`` (RNG, batch-norm statistics and
    gradients are restored)."""
    _fake_timing(monkeypatch, False)
    outcomes = []
    # cost_weight 0: under a time budget ISTA's default weighs candidates by their latency,
    # timed at setup, which can move the first supports between any two runs.
    relax = {"name": "ista", "recover_every": 2, "cost_weight": 0.0}
    for i, channels_last in enumerate(["auto", False]):
        raw = tiny_raw_config(tmp_path / f"r{i}", **(DHA | {"relax": relax}))
        raw["train"].pop("epochs")
        raw["train"].update(time_budget_s=1.0, channels_last=channels_last, seed=3)
        searcher = Searcher(resolve_config(raw))
        seed_everything(3)  # as fit() does
        searcher.prepare()
        stage = searcher.builder.build(searcher.plan[0])
        stage.step_fn.next_val_batch = lambda: random_batch(1)
        stage.step_fn(random_batch(0), 0)
        outcomes.append({k: v.clone() for k, v in stage.net.state_dict().items()})
    assert outcomes[0].keys() == outcomes[1].keys()
    for k in outcomes[0]:
        assert torch.equal(outcomes[0][k], outcomes[1][k]), k


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_a_measured_channels_last_run_saves_a_contiguous_model(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timing(monkeypatch, True)
    raw = tiny_raw_config(tmp_path / "runs", **DHA)
    raw["train"].pop("epochs")
    raw["train"]["time_budget_s"] = 0.5
    raw["output"]["name"] = "run"
    result = dha_core.build(config=raw).fit()
    perf = result.summary["performance"]
    assert perf["channels_last"] == {"search": True}
    assert perf["memory_format_timing"]["search"]["channels_last_s"] == 0.5
    blob = torch.load(tmp_path / "runs" / "run" / "model.pt", weights_only=True)
    assert all(t.is_contiguous() for t in blob["state_dict"].values())
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(result.model.cpu()(x), dha_core.load_model(tmp_path / "runs" / "run")(x),
                                   rtol=0, atol=0)


class _OtherRank:
    """A non-main rank whose rank 0 measured channels_last faster."""

    is_main = False

    def broadcast(self, obj: Any) -> Any:
        assert obj is None  # this rank does not time
        return FormatTiming(1.0, 0.5)


def test_every_rank_takes_rank_0s_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DDP's gradient buckets need one layout on every rank: a non-main rank does not time
    and takes rank 0's choice."""
    calls = _fake_timing(monkeypatch, False)
    searcher = _budgeted_searcher(tmp_path)
    builder = searcher.builder
    net = builder.space.build_supernet()
    builder.dist = _OtherRank()  # type: ignore[assignment]
    perf, timing = builder._stage_performance(searcher.plan[0], net, builder._prepared_relax)
    assert calls == [] and perf.channels_last and timing == FormatTiming(1.0, 0.5)
