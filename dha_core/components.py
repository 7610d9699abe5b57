"""Builds the components a run config names, through the registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dha_core.config import RunConfig
from dha_core.config_base import ComponentConfig
from dha_core.errors import UserInputError
from dha_core.interfaces import ArchRelaxation, AugmentationPolicy, Dataset, HyperOptimizer, SearchSpace, Supernet
from dha_core.registry import get_registry
from dha_core.types import DataSpec

__all__ = ["DataBundle", "build_dataset", "build_space", "build_relax", "build_aug", "build_hpo", "weight_param_groups"]

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """A dataset with its splits materialised and its spec for the other components."""

    dataset: Dataset
    spec: DataSpec


def build_dataset(config: RunConfig) -> DataBundle:
    """Builds the dataset and materialises every split, so data errors surface before a
    run directory exists."""
    dataset: Dataset = get_registry().create("dataset", config.data)
    for split in ("train", "val", "test"):
        if len(dataset.split(split)) == 0:
            raise UserInputError(f"data: the {split} split is empty")
    spec = DataSpec(
        num_classes=int(dataset.num_classes),
        channels=int(dataset.channels),
        image_size=int(dataset.image_size),
        mean=tuple(float(m) for m in dataset.mean),
        std=tuple(float(s) for s in dataset.std),
    )
    return DataBundle(dataset, spec)


def build_space(space_config: ComponentConfig, spec: DataSpec) -> SearchSpace:
    return get_registry().create("space", space_config, data_spec=spec)


def build_relax(relax_config: ComponentConfig, space: SearchSpace, supernet: Supernet, epochs: int | None = None,
                seed: int = 0) -> ArchRelaxation:
    """Builds the relaxation.

    Args:
        relax_config: The relaxation's config.
        space: The search space.
        supernet: Its supernet.
        epochs: The search length in epochs (None: a time budget decides), for schedules
            such as Gumbel's.
        seed: The run's seed, from which relaxations derive their own unless configured.
    """
    relax: ArchRelaxation = get_registry().create("relax", relax_config, epochs=epochs, seed=seed)
    groups = space.choice_groups()
    if not groups:
        log.info("space %r has no architecture choices: relax=%r is ignored", space.name, relax_config.name)
    relax.setup(groups, space=space)
    return relax


def build_aug(aug_config: ComponentConfig, spec: DataSpec) -> AugmentationPolicy:
    return get_registry().create("aug", aug_config, data_spec=spec)


def build_hpo(hpo_config: ComponentConfig) -> HyperOptimizer:
    return get_registry().create("hpo", hpo_config)


def weight_param_groups(net: nn.Module) -> list[dict[str, Any]]:
    """Splits weights into ``backbone`` (conv/linear weights) and ``no_decay`` (BN, biases)."""
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    for _, p in net.named_parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"name": "backbone", "params": decay}]
    if no_decay:
        groups.append({"name": "no_decay", "params": no_decay})
    return groups
