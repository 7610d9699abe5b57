"""Reading one choice group's entry out of the mixing weights a supernet is given."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dha_core.types import ChoiceGroup, MixingWeights

__all__ = ["group_mixing"]

Pairs = Sequence[tuple[int, int]]


def group_mixing(
    weights: MixingWeights | None, group: ChoiceGroup, dense_pairs: Pairs, ref: torch.Tensor
) -> tuple[torch.Tensor, Pairs]:
    """The mixing weights of ``group`` and the ``(edge, op)`` pairs to compute.

    Args:
        weights: The supernet's mixing weights; ``None`` mixes every candidate uniformly.
        group: The choice group.
        dense_pairs: Every pair the group's module can compute, used when ``weights`` is
            ``None`` or has no ``active`` entry for the group.
        ref: A tensor whose dtype and device the uniform weights take.

    Returns:
        ``(w, pairs)``: ``w`` of shape ``group.shape`` and the pairs to compute.

    Raises:
        KeyError: ``weights`` has no entry for the group.
        ValueError: The group's entry has the wrong shape.
    """
    if weights is None:
        return ref.new_full(group.shape, 1.0 / len(group.ops)), dense_pairs
    try:
        w = weights.values[group.name]
    except KeyError:
        # The bare group name reads better than the dict's own KeyError.
        raise KeyError(f"mixing weights have no entry for group {group.name!r}") from None
    if tuple(w.shape) != group.shape:
        raise ValueError(f"mixing weights of {group.name!r} have shape {tuple(w.shape)}, expected {group.shape}")
    active = weights.active_pairs(group.name)
    return w, dense_pairs if active is None else active
