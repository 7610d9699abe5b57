"""Helpers shared by the dense relaxations (softmax, gumbel): the DARTS genotype rule and
candidate costs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dha_core.types import ChoiceGroup, SelectedOp, Selection

__all__ = ["allowed_ops", "darts_selection", "group_costs"]

log = logging.getLogger(__name__)


def allowed_ops(group: ChoiceGroup) -> list[int]:
    """Indices of the ops a discrete selection may use: every op but ``none_op``.

    A group made only of its ``none_op`` (degenerate, but possible through configs) keeps
    all its ops, so that a selection always exists.
    """
    ops = [i for i, name in enumerate(group.ops) if name != group.none_op]
    return ops or list(range(len(group.ops)))


def darts_selection(groups: Sequence[ChoiceGroup], probs: Mapping[str, torch.Tensor], fold_weights: bool) -> Selection:
    """The DARTS genotype rule.

    Per group: for every incoming edge take its strongest op other than ``none``; keep the
    ``keep`` edges whose strongest op is strongest; each kept edge contributes that op.

    Args:
        groups: The choice groups.
        probs: Group name -> ``(edges, ops)`` op probabilities (e.g. ``softmax(alpha)``).
        fold_weights: Give each selected op its probability as ``weight`` (the child then
            scales it, as the supernet did); otherwise weight 1.

    Returns:
        The selection, pairs ordered by edge index.
    """
    out: Selection = {}
    for g in groups:
        p = probs[g.name].detach().to("cpu", torch.float64)
        ops = allowed_ops(g)
        sub = p[:, ops]
        best_val, best_idx = sub.max(dim=1)
        # Stable sort: ties go to the lower edge index, so the rule is deterministic.
        order = sorted(range(len(g.edges)), key=lambda e: -float(best_val[e]))
        kept = sorted(order[: min(g.keep, len(g.edges))])
        out[g.name] = [
            SelectedOp(e, ops[int(best_idx[e])], float(best_val[e]) if fold_weights else 1.0) for e in kept
        ]
    return out


def group_costs(space: Any, groups: Sequence[ChoiceGroup], metric: str) -> dict[str, torch.Tensor] | None:
    """Per-candidate costs from ``space.candidate_costs(metric)``, checked against ``groups``.

    Args:
        space: The search space (may be ``None``).
        groups: The choice groups the relaxation drives.
        metric: ``"params"`` or ``"flops"``.

    Returns:
        Group name -> ``(edges, ops)`` float tensor, or ``None`` when the space cannot
        report costs for every group (the caller then disables its penalty).
    """
    fn = getattr(space, "candidate_costs", None)
    if fn is None:
        return None
    costs = fn(metric)
    out: dict[str, torch.Tensor] = {}
    for g in groups:
        c = costs.get(g.name)
        if c is None:
            return None
        c = torch.as_tensor(c, dtype=torch.float32)
        if tuple(c.shape) != g.shape:
            raise ValueError(f"space cost of group {g.name!r} has shape {tuple(c.shape)}, expected {g.shape}")
        out[g.name] = c
    return out
