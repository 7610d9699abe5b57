"""Planted tasks: a space and datasets where the right answer is known by construction.

``space=planted`` has one choice group with one edge and one op per input channel:
op ``chK`` passes only channel ``K`` of the image to a small trainable head. In
``dataset=planted`` the label is a function of channel ``informative`` alone (its mean
brightness, above or below 0.5); the other channels are noise with the same statistics.
So exactly one op, ``ch<informative>``, can solve the task: a search that works selects it.

The plugins are registered into the live registry by :func:`register_planted` (the same
``registry.add`` path a third-party package uses).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from pydantic import Field
from torch import nn

from dha_core.config_base import ComponentConfig
from dha_core.interfaces import Dataset, DataSpec, SearchSpace, Supernet
from dha_core.registry import get_registry, reset_registry
from dha_core.types import ChoiceGroup, MixingWeights, Selection
from dha_plugins.datasets.common import DatasetConfig
from dha_plugins.datasets.synthetic import LabelledImages

GROUP = "cell/node0"


class PlantedSpaceConfig(ComponentConfig):
    width: int = Field(8, ge=1)


class _PickChannel(nn.Module):
    def __init__(self, channel: int) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.channel : self.channel + 1]


class _Head(nn.Module):
    """1x1 conv -> ReLU -> global mean -> linear: can read a channel's brightness."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class PlantedSupernet(Supernet):
    def __init__(self, space: PlantedSpace) -> None:
        super().__init__()
        self.ops = nn.ModuleList(_PickChannel(k) for k in range(space.channels))
        self.head = _Head(space.config.width, space.num_classes)

    def forward(self, x: torch.Tensor, weights: MixingWeights | None = None) -> torch.Tensor:
        pairs = None if weights is None else weights.active_pairs(GROUP)
        if pairs is None:
            pairs = [(0, k) for k in range(len(self.ops))]
        out = torch.zeros_like(x[:, :1])
        for _, k in pairs:
            w = 1.0 / len(self.ops) if weights is None else weights.values[GROUP][0, k]
            out = out + w * self.ops[k](x)
        return self.head(out)


class PlantedChild(nn.Module):
    def __init__(self, space: PlantedSpace, selection: Selection) -> None:
        super().__init__()
        self.picks = [(s.op, s.weight) for s in selection[GROUP]]
        self.head = _Head(space.config.width, space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x[:, :1])
        for k, w in self.picks:
            out = out + w * x[:, k : k + 1]
        return self.head(out)


class PlantedSpace(SearchSpace):
    name = "planted"

    def __init__(self, config: PlantedSpaceConfig, data_spec: DataSpec) -> None:
        self.config = config
        self.data_spec = data_spec
        self.channels = data_spec.channels
        self.num_classes = data_spec.num_classes

    def choice_groups(self) -> list[ChoiceGroup]:
        return [ChoiceGroup(GROUP, (f"{GROUP}/in",), tuple(f"ch{k}" for k in range(self.channels)), keep=1)]

    def named_genotypes(self) -> dict[str, dict[str, Any]]:
        """``chK``: the architecture that reads channel ``K`` (for ``relax=fixed``)."""
        return {f"ch{k}": {GROUP: [{"edge": f"{GROUP}/in", "op": f"ch{k}"}]} for k in range(self.channels)}

    def build_supernet(self) -> PlantedSupernet:
        return PlantedSupernet(self)

    def build_child(self, selection: Selection) -> PlantedChild:
        return PlantedChild(self, selection)

    def derive(self, supernet: Supernet, selection: Selection) -> PlantedChild:
        child = self.build_child(selection)
        assert isinstance(supernet, PlantedSupernet)
        child.head.load_state_dict(supernet.head.state_dict())
        return child


class PlantedDataConfig(DatasetConfig):
    informative: int = Field(0, ge=0)
    channels: int = Field(4, ge=2)
    num_train: int = Field(512, ge=2)
    num_test: int = Field(256, ge=1)
    image_size: int = Field(4, ge=1)
    data_seed: int = Field(0, ge=0)


def make_planted(n: int, informative: int, channels: int, size: int, seed: int) -> LabelledImages:
    """Every channel is a uniform brightness level plus pixel noise; the label is whether
    channel ``informative``'s level is above 0.5."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.rand(n, channels, 1, 1, generator=g)
    images = (levels + 0.1 * torch.randn(n, channels, size, size, generator=g)).clamp(0, 1)
    labels = (levels[:, informative, 0, 0] > 0.5).long()
    return LabelledImages(images, labels)


class PlantedDataset(Dataset):
    def __init__(self, config: PlantedDataConfig) -> None:
        super().__init__(config.val_fraction, config.split_seed, config.train_subset, config.test_subset)
        self.config = config
        self.num_classes = 2
        self.channels = config.channels
        self.image_size = config.image_size
        self.mean = (0.5,) * config.channels
        self.std = (0.3,) * config.channels
        self.classes = ["dark", "bright"]

    def train_source(self) -> LabelledImages:
        c = self.config
        return make_planted(c.num_train, c.informative, c.channels, c.image_size, c.data_seed)

    def test_source(self) -> LabelledImages:
        c = self.config
        return make_planted(c.num_test, c.informative, c.channels, c.image_size, c.data_seed + 1)


def register_planted() -> Iterator[None]:
    """Adds ``space=planted`` and ``dataset=planted`` for the duration of a test (a fixture body)."""
    reset_registry()
    registry = get_registry()
    registry.add("space", "planted", lambda config, data_spec, **_: PlantedSpace(config, data_spec),
                 config=PlantedSpaceConfig)
    registry.add("dataset", "planted", lambda config, **_: PlantedDataset(config), config=PlantedDataConfig)
    yield
    reset_registry()


def planted_config(out_dir: Any, relax: dict[str, Any], informative: int, seed: int, **train: Any) -> dict[str, Any]:
    """A search on the planted task: no augmentation, fixed SGD, only the architecture is searched."""
    return {
        "space": {"name": "planted"},
        "relax": relax,
        "aug": "none",
        "hpo": {"name": "fixed", "lr": 0.1, "lr_min": 0.01, "wd": 0.0},
        "data": {"name": "planted", "informative": informative},
        "train": {"epochs": 6, "batch_size": 32, "device": "cpu", "progress": False, "seed": seed,
                  "checkpoint_every": 10_000, "search_fraction": 1.0, **train},
        "output": {"dir": str(out_dir), "name": f"seed{seed}", "plots": False},
    }
