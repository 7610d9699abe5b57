"""Saving and loading the ready-to-use model without pickled code.

``model.pt`` holds the space's config, the selection and a ``state_dict``; loading
rebuilds the child through the registered space and loads the weights with
``weights_only=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dha_core.checkpoint import atomic_save, load_checkpoint
from dha_core.errors import UserInputError
from dha_core.normalize import channel_stats, normalize
from dha_core.types import DataSpec, Selection, selection_from_json, selection_to_json

__all__ = ["NormalizedModel", "save_model", "load_model", "MODEL_FORMAT"]

MODEL_FORMAT = "dha.model/1"


class NormalizedModel(nn.Module):
    """Normalises ``[0, 1]`` images with the dataset statistics, then runs the network."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", channel_stats(mean))
        self.register_buffer("std", channel_stats(std))

    @classmethod
    def for_data(cls, net: nn.Module, spec: DataSpec) -> NormalizedModel:
        """Normalises with ``spec``'s statistics (which the dataset always provides)."""
        if spec.mean is None or spec.std is None:
            raise ValueError("the data spec has no mean/std to normalise with")
        return cls(net, spec.mean, spec.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(normalize(x, self.mean, self.std))
        return out[0] if isinstance(out, tuple) else out


def save_model(model: NormalizedModel, path: str | os.PathLike[str], *, space_config: dict[str, Any],
               data_spec: DataSpec, selection: Selection, extra: dict[str, Any] | None = None) -> None:
    """Writes ``model.pt`` atomically."""
    atomic_save(
        {
            "format": MODEL_FORMAT,
            "space": space_config,
            "data_spec": data_spec.to_json(),
            "selection": selection_to_json(selection),
            "state_dict": model.state_dict(),
            "extra": extra or {},
        },
        path,
    )


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> NormalizedModel:
    """Loads a ready-to-use model written by a search.

    Args:
        path: ``model.pt`` or a run directory containing it.
        map_location: Device for the weights.

    Returns:
        The model in eval mode; it takes ``[0, 1]`` images of shape ``(B, C, H, W)``.
    """
    from dha_core.registry import get_registry

    p = Path(path)
    if p.is_dir():
        p = p / "model.pt"
    blob = load_checkpoint(p, map_location)
    if blob.get("format") != MODEL_FORMAT:
        raise UserInputError(f"{p}: not a dha model file (format {blob.get('format')!r})")
    registry = get_registry()
    space_cfg = blob["space"]
    component = registry.get("space", space_cfg["name"])
    config = component.config.model_validate(space_cfg)
    spec = DataSpec.from_json(blob["data_spec"])
    space = component.create(config, data_spec=spec)
    net = space.build_child(selection_from_json(blob["selection"]))
    model = NormalizedModel.for_data(net, spec)
    model.load_state_dict(blob["state_dict"])
    return model.to(map_location).eval()
