"""DARTS-format genotypes: ``normal``/``reduce`` lists of ``[op, input]`` plus concat.

Input index 0 is ``c_{k-2}``, 1 is ``c_{k-1}`` and ``2 + j`` is intermediate node ``j``,
which is also the edge index of a node's choice group. The published format lists
exactly two inputs per node; a selection that keeps another number per node adds a
``<type>_counts`` list so that the flat list can still be split back into nodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dha_core.types import ChoiceGroup, SelectedOp, Selection

__all__ = ["DARTS_V2", "CELL_TYPES", "selection_to_genotype", "genotype_to_selection",
           "save_genotype", "load_genotype"]

CELL_TYPES: tuple[str, ...] = ("normal", "reduce")

DARTS_V2: dict[str, Any] = {
    "normal": [
        ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
        ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
        ["sep_conv_3x3", 1], ["skip_connect", 0],
        ["skip_connect", 0], ["dil_conv_3x3", 2],
    ],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [
        ["max_pool_3x3", 0], ["max_pool_3x3", 1],
        ["skip_connect", 2], ["max_pool_3x3", 1],
        ["max_pool_3x3", 0], ["skip_connect", 2],
        ["skip_connect", 2], ["max_pool_3x3", 1],
    ],
    "reduce_concat": [2, 3, 4, 5],
}
"""The second-order DARTS cell published by Liu et al. (2019)."""



def _groups_by_type(groups: Sequence[ChoiceGroup]) -> dict[str, list[ChoiceGroup]]:
    return {t: [g for g in groups if g.name.startswith(f"{t}/")] for t in CELL_TYPES}


def selection_to_genotype(groups: Sequence[ChoiceGroup], selection: Selection) -> dict[str, Any]:
    """Writes a selection in the DARTS genotype format.

    The selection's weights are not part of the format (a derived model carries them in
    its ``state_dict``).

    Args:
        groups: The DARTS space's choice groups (``normal/node*`` and ``reduce/node*``).
        selection: One entry per group.

    Returns:
        ``{"normal": [[op, input], ...], "normal_concat": [...], "reduce": ..., "reduce_concat": ...}``,
        plus ``"<type>_counts"`` when some node keeps other than ``group.keep`` inputs.

    Raises:
        KeyError: A group is missing from ``selection``.
    """
    out: dict[str, Any] = {}
    for cell_type, type_groups in _groups_by_type(groups).items():
        pairs: list[list[Any]] = []
        counts: list[int] = []
        for g in type_groups:
            if g.name not in selection:
                raise KeyError(f"selection has no entry for group {g.name!r}")
            inputs = g.edge_inputs or tuple(range(len(g.edges)))
            picks = selection[g.name]
            pairs.extend([g.ops[s.op], int(inputs[s.edge])] for s in picks)
            counts.append(len(picks))
        out[cell_type] = pairs
        out[f"{cell_type}_concat"] = list(range(2, 2 + len(type_groups)))
        if any(c != g.keep for c, g in zip(counts, type_groups, strict=True)):
            out[f"{cell_type}_counts"] = counts
    return out


def genotype_to_selection(groups: Sequence[ChoiceGroup], genotype: dict[str, Any]) -> Selection:
    """Reads a DARTS genotype into a selection with weights of 1.

    Args:
        groups: The DARTS space's choice groups.
        genotype: A mapping with ``normal``, ``reduce`` (lists of ``[op, input]`` pairs or
            ``(op, input)`` tuples) and optionally ``*_concat`` and ``*_counts``.

    Returns:
        The selection.

    Raises:
        ValueError: The genotype does not fit the space (unknown op, input out of range,
            wrong number of entries, or a concat other than every intermediate node).
    """
    selection: Selection = {}
    for cell_type, type_groups in _groups_by_type(groups).items():
        if cell_type not in genotype:
            raise ValueError(f"genotype has no {cell_type!r} list")
        entries = list(genotype[cell_type])
        n_nodes = len(type_groups)
        concat = genotype.get(f"{cell_type}_concat")
        if concat is not None and sorted(int(c) for c in concat) != list(range(2, 2 + n_nodes)):
            raise ValueError(
                f"{cell_type}_concat {list(concat)} is not supported: this space concatenates every "
                f"intermediate node ({list(range(2, 2 + n_nodes))})"
            )
        counts = genotype.get(f"{cell_type}_counts")
        if counts is None:
            if len(entries) % n_nodes:
                raise ValueError(f"{cell_type}: {len(entries)} entries cannot be split over {n_nodes} nodes")
            counts = [len(entries) // n_nodes] * n_nodes
        counts = [int(c) for c in counts]
        if len(counts) != n_nodes or sum(counts) != len(entries):
            raise ValueError(f"{cell_type}_counts {counts} does not match {len(entries)} entries and {n_nodes} nodes")
        start = 0
        for g, count in zip(type_groups, counts, strict=True):
            inputs = list(g.edge_inputs or range(len(g.edges)))
            picks: list[SelectedOp] = []
            for entry in entries[start : start + count]:
                op_name, source = entry[0], int(entry[1])
                if op_name not in g.ops:
                    raise ValueError(f"{g.name}: op {op_name!r} is not in this space's ops ({', '.join(g.ops)})")
                if source not in inputs:
                    raise ValueError(f"{g.name}: input {source} out of range (allowed: {inputs})")
                picks.append(SelectedOp(inputs.index(source), g.ops.index(op_name), 1.0))
            selection[g.name] = picks
            start += count
    return selection


def save_genotype(genotype: dict[str, Any], path: str | Path) -> None:
    """Writes a genotype as JSON."""
    Path(path).write_text(json.dumps(genotype, indent=2) + "\n")


def load_genotype(path: str | Path) -> dict[str, Any]:
    """Reads a JSON genotype written by :func:`save_genotype` (or by hand)."""
    return json.loads(Path(path).read_text())
