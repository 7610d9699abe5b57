"""``space=timm``: any timm architecture as a fixed network (no architecture choices).

DHA then searches only the augmentation policy and the hyper-parameters. The space has no
choice groups, so a relaxation has nothing to drive; the supernet is the timm model, and
the derived child is a fresh copy of it carrying the trained weights. Models are always
built with ``pretrained=False``: nothing is downloaded.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn

from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import DataSpec, SearchSpace, Supernet
from dha_core.types import ChoiceGroup, MixingWeights, Selection

__all__ = ["TimmSpaceConfig", "TimmSupernet", "TimmSpace", "create_timm_space"]

log = logging.getLogger(__name__)

# Set from the data or fixed by this space (no pretrained weights, no hub access).
_RESERVED_KWARGS = frozenset(
    {"pretrained", "num_classes", "in_chans", "checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay",
     "pretrained_strict", "cache_dir", "features_only"}
)


class TimmSpaceConfig(ComponentConfig):
    """Config of ``space=timm``."""

    model: str = Field("resnet18", description="A timm.create_model name (see timm.list_models()).")
    model_kwargs: dict[str, bool | int | float | str | None] = Field(
        default_factory=dict,
        description="Extra keyword arguments for timm.create_model, e.g. drop_rate or drop_path_rate.",
    )

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        import timm  # deferred: importing timm (and torchvision) takes seconds

        if not timm.is_model(value):
            close = timm.list_models(f"*{value}*")[:5]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise ValueError(f"unknown timm model {value!r}{hint}")
        return value

    @field_validator("model_kwargs")
    @classmethod
    def _check_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(value) & _RESERVED_KWARGS)
        if reserved:
            raise ValueError(f"{', '.join(reserved)} cannot be set: classes and channels come from the data, "
                             "and models are never pretrained")
        return value


class TimmSupernet(Supernet):
    """Wraps a timm model; mixing weights are not used (there are no choice groups).

    Attributes:
        model: The timm model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # timm spreads drop-path over depth; remember each layer's share of the peak (on
        # the layer itself, so copies of the supernet keep it) and rescale only the peak.
        from timm.layers import DropPath

        layers = [m for m in model.modules() if isinstance(m, DropPath)]
        peak = max((float(m.drop_prob) for m in layers), default=0.0)
        for m in layers:
            m.dha_drop_share = float(m.drop_prob) / peak if peak > 0 else 1.0
        self._warned_drop_path = False

    def forward(self, x: torch.Tensor, weights: MixingWeights | None = None) -> torch.Tensor:
        """Runs the model.

        Args:
            x: Images.
            weights: Must be ``None`` or empty: this space has no choice groups.

        Returns:
            Logits.
        """
        if weights is not None and weights.values:
            raise ValueError(f"space=timm has no choice groups, got weights for {', '.join(sorted(weights.values))}")
        return self.model(x)

    def set_drop_path(self, prob: float) -> None:
        """Sets the deepest block's drop-path rate; shallower blocks keep timm's linear profile.

        timm only creates drop-path layers when ``model_kwargs.drop_path_rate > 0``; without
        them the call logs a warning once and does nothing.
        """
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {prob}")
        from timm.layers import DropPath

        found = False
        for m in self.model.modules():
            if isinstance(m, DropPath):
                m.drop_prob = prob * getattr(m, "dha_drop_share", 1.0)
                found = True
        if not found and prob > 0 and not self._warned_drop_path:
            log.warning("space=timm: the model has no drop-path layers; set space.model_kwargs.drop_path_rate > 0 "
                        "to use train.drop_path")
            self._warned_drop_path = True


class TimmSpace(SearchSpace):
    """A fixed timm network: no choice groups, derivation copies the weights.

    Args:
        config: The space config.
        data_spec: ``num_classes``, ``channels`` and ``image_size`` of the data.
    """

    name = "timm"

    def __init__(self, config: TimmSpaceConfig, data_spec: DataSpec) -> None:
        self.config = config
        self.data_spec = data_spec

    def _create(self) -> nn.Module:
        import timm

        return timm.create_model(
            self.config.model,
            pretrained=False,
            num_classes=self.data_spec.num_classes,
            in_chans=self.data_spec.channels,
            **self.config.model_kwargs,
        )

    def choice_groups(self) -> list[ChoiceGroup]:
        """None: the architecture is fixed."""
        return []

    def build_supernet(self) -> TimmSupernet:
        """A freshly initialised model, wrapped as a supernet."""
        return TimmSupernet(self._create())

    def build_child(self, selection: Selection) -> nn.Module:
        """A freshly initialised timm model (``selection`` must be empty)."""
        if selection:
            raise ValueError(f"space=timm has no choice groups, got a selection for {', '.join(sorted(selection))}")
        return self._create()

    @torch.no_grad()
    def derive(self, supernet: Supernet, selection: Selection) -> nn.Module:
        """A fresh timm model with the supernet's trained weights (on its device and mode)."""
        if not isinstance(supernet, TimmSupernet):
            raise TypeError(f"expected a TimmSupernet, got {type(supernet).__name__}")
        child = self.build_child(selection)
        child.load_state_dict(supernet.model.state_dict())
        param = next(supernet.parameters(), None)
        if param is not None:
            child = child.to(param.device)
        return child.train(supernet.training)

    def genotype(self, selection: Selection) -> dict[str, Any]:
        """The model name and its kwargs (the whole architecture)."""
        return {"model": self.config.model, "model_kwargs": dict(self.config.model_kwargs)}

    def selection_from_genotype(self, genotype: dict[str, Any]) -> Selection:
        """The empty selection, after checking that ``genotype`` names this space's model."""
        if genotype.get("model") != self.config.model:
            raise ValueError(f"genotype is for timm model {genotype.get('model')!r}, this space builds "
                             f"{self.config.model!r}")
        return {}


def create_timm_space(config: TimmSpaceConfig, data_spec: DataSpec) -> TimmSpace:
    """Any timm model as a fixed network: DA and HPO only (pretrained=False)."""
    return TimmSpace(config, data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    """Registers ``space=timm``."""
    registry.add("space", "timm", create_timm_space, config=TimmSpaceConfig)
