"""``relax=fixed``: train a given architecture, as DARTS' ``train.py --arch`` does.

The architecture is a genotype the space names (``DARTS_V2`` for ``space=darts``) or a
``genotype.json`` written by an earlier run. Its selected pairs get weight 1 and are the
only ones computed, so the supernet runs exactly the child network at the child's cost;
nothing is learned about the architecture. Everything else (augmentation, hyper-parameters,
budget, run directory, export) works as in a search::

    dha search --config configs/quickstart.yaml --set relax.name=fixed --set relax.genotype=DARTS_V2
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from dha_core.config_base import ComponentConfig
from dha_core.errors import UserInputError
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import ArchRelaxation, ArchStepContext
from dha_core.types import ChoiceGroup, MixingWeights, Selection

__all__ = ["FixedArchConfig", "FixedArchitecture", "create_fixed_arch", "load_named_or_file_genotype"]


class FixedArchConfig(ComponentConfig):
    """Config of ``relax=fixed``."""

    genotype: str = Field(
        ..., min_length=1,
        description="A genotype the space names (e.g. DARTS_V2) or the path of a genotype.json (e.g. from a run).",
    )


def load_named_or_file_genotype(value: str, space: Any) -> Selection:
    """Resolves ``value`` against the space's named genotypes, else reads it as a JSON file.

    Args:
        value: A name from ``space.named_genotypes()`` or a path.
        space: The search space.

    Returns:
        The selection (weights of 1).

    Raises:
        UserInputError: Unknown name, unreadable file, or a genotype that does not fit the space.
    """
    named = space.named_genotypes()
    if value in named:
        genotype, source = named[value], value
    else:
        path = Path(value)
        if not path.is_file():
            known = ", ".join(named) or "none"
            raise UserInputError(f"relax.genotype: {value!r} is neither a genotype this space names ({known}) "
                                 "nor an existing genotype.json file")
        try:
            genotype = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"relax.genotype: cannot read {path}: {exc}") from None
        if not isinstance(genotype, dict):
            raise UserInputError(f"relax.genotype: {path} must contain a JSON object")
        source = str(path)
    try:
        return space.selection_from_genotype(genotype)
    except (ValueError, KeyError, TypeError, NotImplementedError) as exc:
        raise UserInputError(f"relax.genotype: {source} does not fit this space: {exc}") from None


class FixedArchitecture(ArchRelaxation):
    """A fixed selection: weight 1 on its pairs, nothing else computed, nothing learned.

    Args:
        config: A :class:`FixedArchConfig`.
    """

    bilevel = False

    def __init__(self, config: FixedArchConfig) -> None:
        super().__init__()
        self.config = config
        self._selection: Selection = {}
        self._weights: dict[str, torch.Tensor] = {}
        self._active: dict[str, list[tuple[int, int]] | None] = {}

    def setup(self, groups: Sequence[ChoiceGroup], space: Any = None) -> None:
        """Reads the genotype into a selection of ``groups``.

        Raises:
            UserInputError: The genotype cannot be resolved or does not fit the space.
        """
        if not groups:
            return
        if space is None:
            raise ValueError("relax=fixed needs the space to read its genotype")
        self._selection = load_named_or_file_genotype(self.config.genotype, space)
        for g in groups:
            picks = self._selection[g.name]
            dense = torch.zeros(g.shape)
            for p in picks:
                dense[p.edge, p.op] = 1.0
            self.register_buffer(f"w_{len(self._weights)}", dense)
            self._weights[g.name] = dense
            self._active[g.name] = [(p.edge, p.op) for p in picks]

    def mixing_weights(self) -> MixingWeights:
        values = {name: self.get_buffer(f"w_{i}") for i, name in enumerate(self._weights)}
        return MixingWeights(values, dict(self._active))

    def selection(self) -> Selection:
        return {name: list(picks) for name, picks in self._selection.items()}

    def arch_step(self, ctx: ArchStepContext) -> dict[str, float]:
        return {}

    def report(self) -> dict[str, Any]:
        return {"relax": "fixed", "genotype": self.config.genotype}


def create_fixed_arch(config: FixedArchConfig) -> FixedArchitecture:
    """A given architecture (a named genotype or a genotype.json), trained as a fixed network."""
    return FixedArchitecture(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("relax", "fixed", create_fixed_arch, config=FixedArchConfig)
