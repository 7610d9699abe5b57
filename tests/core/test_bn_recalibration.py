"""Batch-norm recalibration: exact statistics, what it leaves alone, and the run's report."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import dha_core
from dha_core.bn_recalibration import recalibrate_batchnorm
from dha_core.evaluate import evaluate
from dha_core.results import SearchResult
from tests.conftest import tiny_raw_config

CPU = torch.device("cpu")


class AuxNet(nn.Module):
    """conv -> BN -> dropout -> head, plus an auxiliary head used only in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6, momentum=0.1)
        self.drop = nn.Dropout(0.9)
        self.head = nn.Linear(6, 4)
        self.aux_bn = nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.bn(self.conv(x)))).mean((2, 3))
        if self.training:
            return self.head(h) + self.aux_bn(self.conv(x)).mean((1, 2, 3))[:, None]
        return self.head(h)


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(8, 3, 5, 5, generator=g) * 2 + 1, torch.zeros(8, dtype=torch.long)) for _ in range(n)]


def test_statistics_are_the_mean_over_the_batches() -> None:
    torch.manual_seed(0)
    net = AuxNet()
    batches = _batches(5)
    with torch.no_grad():  # the BN inputs, computed independently of the BN layer
        feats = [net.conv(x) for x, _ in batches]
    expected_mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    expected_var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    assert recalibrate_batchnorm(net, batches, CPU, max_batches=10) == 5
    torch.testing.assert_close(net.bn.running_mean, expected_mean)
    torch.testing.assert_close(net.bn.running_var, expected_var)
    assert int(net.bn.num_batches_tracked) == 5


def test_leaves_weights_mode_momentum_and_unused_layers_alone() -> None:
    torch.manual_seed(0)
    net = AuxNet()
    net.aux_bn.running_mean.fill_(3.0)
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "tracked" not in k}
    net.train()
    recalibrate_batchnorm(net, _batches(3), CPU, max_batches=3)
    assert net.training and net.bn.momentum == 0.1
    for k, v in weights.items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0)
    # the auxiliary head is not on the eval path: its statistics are kept, not reset
    assert torch.all(net.aux_bn.running_mean == 3.0)
    # dropout stayed off: the same batches give the same statistics again
    first = net.bn.running_mean.clone()
    recalibrate_batchnorm(net, _batches(3), CPU, max_batches=3)
    torch.testing.assert_close(net.bn.running_mean, first, rtol=0, atol=0)


def test_max_batches_and_zero() -> None:
    torch.manual_seed(0)
    net = AuxNet()
    before = net.bn.running_mean.clone()
    assert recalibrate_batchnorm(net, _batches(4), CPU, max_batches=0) == 0
    torch.testing.assert_close(net.bn.running_mean, before, rtol=0, atol=0)
    assert recalibrate_batchnorm(net, _batches(4), CPU, max_batches=2) == 2
    assert int(net.bn.num_batches_tracked) == 2


def test_recovers_accuracy_lost_to_stale_statistics() -> None:
    """A classifier whose running statistics were left from another input distribution
    (as after training on augmented images) is repaired by recalibrating on clean images."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 512, 64)]
    trained = evaluate(net, batches, CPU)["acc"]
    bn = net[2]
    bn.running_mean.add_(5.0 * torch.randn(16, generator=g))  # statistics of a shifted distribution
    bn.running_var.mul_(20.0)
    stale = evaluate(net, batches, CPU)["acc"]
    recalibrate_batchnorm(net, batches, CPU, max_batches=8)
    recalibrated = evaluate(net, batches, CPU)["acc"]
    assert trained > 0.9
    assert stale < trained - 0.1
    assert recalibrated >= trained - 0.02


def _fit(tmp_path: Path, batches: int) -> SearchResult:
    """A tiny search with ``train.bn_recalibration_batches=batches``, written to runs/r."""
    raw = tiny_raw_config(tmp_path / "runs")
    raw["train"]["bn_recalibration_batches"] = batches
    return dha_core.build(**{k: raw[k] for k in ("space", "relax", "aug", "hpo")}, dataset=raw["data"],
                          train=raw["train"], output={"dir": str(tmp_path / "runs"), "name": "r"}).fit()


def test_run_reports_before_and_after_and_exports_the_recalibrated_model(tmp_path: Path) -> None:
    result = _fit(tmp_path, 3)
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    report = summary["bn_recalibration"]
    assert report["batches"] == 3 and report["images"] == 3 * 16
    assert 0.0 <= report["test_acc_before"] <= 1.0 and 0.0 <= report["val_acc_before"] <= 1.0
    # model.pt is the recalibrated model and reproduces the reported test accuracy
    loaded = dha_core.load_model(tmp_path / "runs" / "r")
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(loaded(x), result.model.cpu()(x), rtol=0, atol=0)


def test_off_reports_none(tmp_path: Path) -> None:
    assert _fit(tmp_path, 0).summary["bn_recalibration"] is None
