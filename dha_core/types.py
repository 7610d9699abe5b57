"""Plain data types shared by the component interfaces.

A search space exposes its choice points as :class:`ChoiceGroup` objects. A relaxation
turns its parameters into :class:`MixingWeights` (continuous, possibly sparse) during the
search and into a :class:`Selection` (discrete) at the end. Both are keyed by group name,
so neither side needs to know the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

__all__ = [
    "ChoiceGroup",
    "MixingWeights",
    "SelectedOp",
    "Selection",
    "selection_to_json",
    "selection_from_json",
]


@dataclass(frozen=True)
class ChoiceGroup:
    """A set of mixed edges that share one discrete decision.

    In a DARTS cell a group is an intermediate node: ``edges`` are its incoming edges and
    ``keep`` is 2 (two inputs per node). In a MobileNet space a group is one block with a
    single edge and ``keep`` is 1.

    Attributes:
        name: Unique key, e.g. ``"normal/node0"`` or ``"stage2/block1"``.
        edges: Names of the incoming edges (the order defines edge indices).
        ops: Candidate op names, identical for every edge of the group.
        keep: How many (edge, op) pairs the discrete selection keeps.
        none_op: Name of an op that means "no connection", which genotype rules exclude
            when ranking (DARTS' ``none``), or ``None``.
        edge_inputs: For each edge, the index of the node it reads from (used by
            genotype formats); defaults to the edge index.
    """

    name: str
    edges: tuple[str, ...]
    ops: tuple[str, ...]
    keep: int = 1
    none_op: str | None = None
    edge_inputs: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(num_edges, num_ops)``: the shape of this group's mixing-weight matrix."""
        return (len(self.edges), len(self.ops))

    @property
    def size(self) -> int:
        return len(self.edges) * len(self.ops)


@dataclass
class MixingWeights:
    """Continuous mixing weights for every choice group.

    Attributes:
        values: Group name -> tensor of shape ``group.shape``. Entries outside ``active``
            are treated as zero and their candidates are not computed.
        active: Group name -> list of ``(edge, op)`` index pairs to compute, or ``None``
            for a dense group (all candidates computed). Held as Python ints so that a
            space can skip work without a device synchronisation.
    """

    values: dict[str, torch.Tensor]
    active: dict[str, list[tuple[int, int]] | None] = field(default_factory=dict)

    def active_pairs(self, group: str) -> list[tuple[int, int]] | None:
        return self.active.get(group)


class SelectedOp(NamedTuple):
    """One kept ``(edge, op)`` pair and the scale folded into the derived child."""

    edge: int
    op: int
    weight: float = 1.0


Selection = dict[str, list[SelectedOp]]
"""Group name -> the (edge, op) pairs kept by the discrete architecture."""


def selection_to_json(selection: Selection) -> dict[str, list[list[Any]]]:
    """Converts a selection to JSON-serialisable lists ``[edge, op, weight]``."""
    return {g: [[int(s.edge), int(s.op), float(s.weight)] for s in ops] for g, ops in selection.items()}


def selection_from_json(data: dict[str, list[list[Any]]]) -> Selection:
    """Inverse of :func:`selection_to_json`."""
    return {g: [SelectedOp(int(e), int(o), float(w)) for e, o, w in ops] for g, ops in data.items()}
