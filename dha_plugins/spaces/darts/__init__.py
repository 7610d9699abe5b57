"""``space=darts``: DARTS cells with sparse-aware mixed edges, genotypes and derivation.

Modules:
    config: :class:`DartsSpaceConfig` and the op list.
    ops: the candidate ops and cell building blocks.
    layout: channel/resolution plan, stem, preprocessing, auxiliary head.
    supernet: :class:`DartsSupernet` (mixed cells).
    child: :class:`DartsChild` (the evaluation network of a genotype).
    genotype: DARTS-format genotype import/export and ``DARTS_V2``.
    space: :class:`DartsSpace`, the :class:`~dha_core.interfaces.SearchSpace`.
"""

from __future__ import annotations

from typing import Any

from dha_core.hookspecs import hookimpl
from dha_core.interfaces import DataSpec
from dha_plugins.spaces.darts.child import DartsChild
from dha_plugins.spaces.darts.config import DARTS_OPS, DartsSpaceConfig
from dha_plugins.spaces.darts.genotype import DARTS_V2, load_genotype, save_genotype
from dha_plugins.spaces.darts.space import DartsSpace, count_child_params
from dha_plugins.spaces.darts.supernet import DartsSupernet

__all__ = [
    "DARTS_OPS",
    "DARTS_V2",
    "DartsChild",
    "DartsSpace",
    "DartsSpaceConfig",
    "DartsSupernet",
    "count_child_params",
    "create_darts_space",
    "load_genotype",
    "save_genotype",
]


def create_darts_space(config: DartsSpaceConfig, data_spec: DataSpec) -> DartsSpace:
    """DARTS cell space: 8 candidate ops per edge, shared normal/reduction cells."""
    return DartsSpace(config, data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    """Registers ``space=darts``."""
    registry.add("space", "darts", create_darts_space, config=DartsSpaceConfig)
