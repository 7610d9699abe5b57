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
    "DataSpec",
    "MixingWeights",
    "SelectedOp",
    "Selection",
    "selection_to_json",
    "selection_from_json",
]


@dataclass(frozen=True)
class DataSpec:
    """What components need to know about the data; the core builds it from the dataset.

    Spaces get it as the ``data_spec`` context (``num_classes``, ``channels``,
    ``image_size``), augmentation policies too (``image_size``, ``mean`` for fills).

    Attributes:
        num_classes: Number of classes.
        channels: Image channels.
        image_size: Image side in pixels.
        mean: Per-channel mean in ``[0, 1]`` (None: unknown, e.g. in a unit test).
        std: Per-channel standard deviation (None: unknown).
    """

    num_classes: int
    channels: int = 3
    image_size: int = 32
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain mapping (lists for the statistics), as ``model.pt`` stores it."""
        out: dict[str, Any] = {"num_classes": self.num_classes, "channels": self.channels,
                               "image_size": self.image_size}
        if self.mean is not None:
            out["mean"] = list(self.mean)
        if self.std is not None:
            out["std"] = list(self.std)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataSpec:
        """Inverse of :meth:`to_json`."""
        mean, std = data.get("mean"), data.get("std")
        return cls(int(data["num_classes"]), int(data["channels"]), int(data["image_size"]),
                   None if mean is None else tuple(float(m) for m in mean),
                   None if std is None else tuple(float(s) for s in std))


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
