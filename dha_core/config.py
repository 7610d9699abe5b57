"""The run configuration: one validated pydantic model for a whole search.

A :class:`RunConfig` composes one config per component kind (a discriminated union on the
component ``name``, built from whatever plugins are registered) plus ``train`` and
``output``. In YAML each component is a mapping with a ``name`` and its own fields::

    space: {name: darts, C: 8, layers: 5}
    aug: {name: kornia, temperature: 0.5}
    train: {epochs: 2, batch_size: 32}
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, create_model, field_validator

from dha_core.config_base import ComponentConfig, StrictModel
from dha_core.errors import UserInputError
from dha_core.config_files import apply_overrides, load_yaml
from dha_core.kinds import KIND_TABLE, RETRAIN_KINDS

__all__ = [
    "COMPONENT_FIELDS",
    "DEFAULT_COMPONENTS",
    "TrainConfig",
    "OutputConfig",
    "RetrainConfig",
    "RunConfig",
    "run_config_model",
    "resolve_config",
    "load_config",
    "save_config",
    "format_validation_error",
]

# RunConfig field -> registry kind, and field -> default component (from the kinds table).
COMPONENT_FIELDS: dict[str, str] = {k.field: k.name for k in KIND_TABLE}
DEFAULT_COMPONENTS: dict[str, str] = {k.field: k.default for k in KIND_TABLE}


class TrainConfig(StrictModel):
    """Training-loop settings shared by every combination of components."""

    epochs: int | None = Field(
        None, ge=1, description="Search epochs; null: 10 without a time budget, as many as the budget allows with one."
    )
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed (0 to 2**32-1).")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    grad_clip: float | None = Field(5.0, gt=0, description="Max global norm of weight gradients; null disables.")
    drop_path: float = Field(0.0, ge=0, lt=1, description="Drop-path probability, scheduled linearly with progress.")
    aux_weight: float = Field(0.4, ge=0, description="Weight of the auxiliary head's loss, where the space has one.")
    finetune_epochs: int = Field(0, ge=0, description="Optional fine-tuning of the derived child.")
    max_steps_per_epoch: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(
        None,
        gt=0,
        description="Training seconds of the search stage (validation and test excluded). Every schedule follows "
        "the fraction of it spent, and the stage ends when it is spent.",
    )
    search_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Progress of the search stage at which the architecture is fixed (frozen and folded); the "
        "rest of the stage trains that child with the same weights. null: 0.5 for one-stage runs, 1 (search to "
        "the end) when a retrain stage follows.",
    )
    bn_recalibration_batches: int = Field(
        0,
        ge=0,
        description="Clean training batches (no augmentation) on which the ready model's batch-norm statistics "
        "are re-estimated before it is evaluated and exported; summary.json reports the accuracy before and "
        "after. 0: keep the running statistics of training.",
    )
    max_nonfinite_steps: int = Field(5, ge=1, description="Consecutive non-finite steps before the run stops.")
    checkpoint_every: int = Field(50, ge=1, description="Steps between checkpoints (also at every epoch end).")
    log_every: int = Field(1, ge=1)
    eval_every: int = Field(1, ge=1, description="Epochs between validation passes.")
    progress: Literal["auto", "bar", "log", "off"] = Field(
        "auto", description="auto: tqdm bars when stderr is a terminal, else plain lines (log); bar; log; off. "
                            "true/false are accepted as auto/off.")
    progress_every: int = Field(50, ge=1, description="Steps between plain progress lines (progress: log); "
                                                       "there is also one line per epoch.")

    @field_validator("progress", mode="before")
    @classmethod
    def _progress_aliases(cls, value: Any) -> Any:
        if isinstance(value, bool):  # the former boolean field
            return "auto" if value else "off"
        return value
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision of the network's forward: auto (bf16 on CUDA with bf16 support, "
        "else fp32), fp32, bf16 or fp16 (with a GradScaler).",
    )
    channels_last: Literal["auto"] | bool = Field(
        "auto", description="channels_last memory format for the network and its input batches; auto: "
        "true on CUDA under bf16/fp16; on CPU, per stage with a time budget, the format that runs a timed "
        "training pass of the stage's network faster; else false."
    )
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null: torch's choice (all cores).")
    compile: bool = Field(False, description="torch.compile the network's training forward.")

    @field_validator("channels_last", mode="before")
    @classmethod
    def _check_channels_last(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError("must be auto, true or false")

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value


class OutputConfig(StrictModel):
    """Where the run directory goes."""

    dir: str = Field("runs", min_length=1, description="Parent folder of run directories.")
    name: str | None = Field(None, description="Run folder name; default: <time>-<space>-<relax>-<aug>-<hpo>.")
    plots: bool = True
    overwrite: bool = Field(False, description="Allow writing into an existing non-empty run directory.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or value in {".", ".."}):
            raise ValueError("must be a plain folder name")
        return value


class RetrainConfig(StrictModel):
    """Second stage of two-stage presets: train the derived architecture from scratch.

    ``aug`` and ``hpo`` are component configs like the top-level ones (validated the same
    way); the model below is the static part, the registry-dependent fields are added by
    :func:`run_config_model`.
    """

    epochs: int | None = Field(None, ge=1, description="null: 10 without a time budget, unbounded with one.")
    time_budget_s: float | None = Field(None, gt=0, description="Training seconds of the retrain stage.")

    if TYPE_CHECKING:  # added by run_config_model() (registry-dependent unions)
        aug: ComponentConfig
        hpo: ComponentConfig


class RunConfig(StrictModel):
    """The static base of the run config: what the core may rely on, typed.

    :func:`run_config_model` derives the validated model from it, narrowing each
    component field to the discriminated union of the registered components (and adding
    ``retrain.aug`` / ``retrain.hpo``). The core is typed against this base.
    """

    space: ComponentConfig
    relax: ComponentConfig
    aug: ComponentConfig
    hpo: ComponentConfig
    data: ComponentConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    retrain: RetrainConfig | None = None
    version: Literal[1] = 1

    def component(self, field: str) -> ComponentConfig:
        """The component config of section ``field`` (one of :data:`~dha_core.kinds.CONFIG_FIELDS`)."""
        if field not in COMPONENT_FIELDS:
            raise KeyError(f"{field!r} is not a component section")
        return getattr(self, field)


RETRAIN_DEFAULTS: dict[str, str] = {name: DEFAULT_COMPONENTS[name] for name in RETRAIN_KINDS}

DEFAULT_EPOCHS = 10
"""Epochs of a stage that has neither ``epochs`` nor ``time_budget_s``."""

ONE_STAGE_SEARCH_FRACTION = 0.5
"""Default ``train.search_fraction`` of a run without a retrain stage (see docs/results.md)."""


def stage_epochs(epochs: int | None, time_budget_s: float | None) -> int | None:
    """A stage's epoch limit: ``epochs``, else 10 without a budget, else None (the budget decides)."""
    if epochs is not None:
        return epochs
    return None if time_budget_s is not None else DEFAULT_EPOCHS


def search_fraction(config: RunConfig) -> float:
    """The resolved ``train.search_fraction`` of a run config."""
    if config.train.search_fraction is not None:
        return float(config.train.search_fraction)
    return 1.0 if config.retrain is not None else ONE_STAGE_SEARCH_FRACTION


def _component_union(kind: str) -> Any:
    from dha_core.registry import get_registry

    models = [c.config for c in get_registry().components(kind)]
    if not models:
        return ComponentConfig
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="name")]  # noqa: UP007


@functools.lru_cache(maxsize=1)
def run_config_model() -> type[RunConfig]:
    """Builds the ``RunConfig`` model from the registered components."""
    fields: dict[str, Any] = {f: (_component_union(kind), ...) for f, kind in COMPONENT_FIELDS.items()}
    fields["train"] = (TrainConfig, Field(default_factory=TrainConfig))
    fields["output"] = (OutputConfig, Field(default_factory=OutputConfig))
    retrain = create_model(
        "RetrainConfig",
        __base__=RetrainConfig,
        **{name: (_component_union(name), ...) for name in RETRAIN_KINDS},
    )
    fields["retrain"] = (retrain | None, None)
    fields["version"] = (Literal[1], 1)
    return create_model("RunConfig", __base__=RunConfig, **fields)


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    """``("retrain", "hpo", "fixed", "lr")`` -> ``"retrain.hpo.lr"`` (drops union tags)."""
    parts: list[str] = []
    previous: Any = None
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not (isinstance(previous, str) and _is_tag(previous, item)):
            parts.append(str(item))
        previous = item
    return ".".join(parts).replace(".[", "[")


def _is_tag(field: str, item: Any) -> bool:
    from dha_core.registry import get_registry

    kind = COMPONENT_FIELDS.get(field)
    return kind is not None and isinstance(item, str) and item in get_registry().names(kind)


def format_validation_error(exc: ValidationError, set_keys: tuple[str, ...] = ()) -> str:
    """One line naming every failing field path, for the CLI."""
    messages = []
    for err in exc.errors():
        path = _fmt_loc(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            origin = " (from --set)" if path in set_keys else ""
            messages.append(f"{path}: unknown key{origin}")
            continue
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        messages.append(f"{path}: {err['msg']}{shown}")
    return "invalid config: " + "; ".join(messages)


def _normalize_components(raw: dict[str, Any]) -> dict[str, Any]:
    """Fills default components, expands ``aug: kornia`` shorthands and checks names."""
    from dha_core.registry import get_registry

    registry = get_registry()
    data = copy.deepcopy(raw)
    for field, kind in COMPONENT_FIELDS.items():
        value = data.get(field, DEFAULT_COMPONENTS[field])
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            raise UserInputError(f"invalid config: {field}: expected a mapping with a 'name' key or a {kind} name")
        value = dict(value)
        value.setdefault("name", DEFAULT_COMPONENTS[field])
        if not isinstance(value["name"], str):
            raise UserInputError(f"invalid config: {field}.name: expected a string")
        registry.get(kind, value["name"])  # raises with the available names
        data[field] = value
    retrain = data.get("retrain")
    if isinstance(retrain, dict):
        retrain = dict(retrain)
        for field, default in RETRAIN_DEFAULTS.items():
            value = retrain.get(field, default)
            if isinstance(value, str):
                value = {"name": value}
            if not isinstance(value, dict):
                raise UserInputError(f"invalid config: retrain.{field}: expected a mapping with a 'name' key "
                                     f"or a {field} name")
            value = dict(value)
            value.setdefault("name", default)
            if not isinstance(value["name"], str):
                raise UserInputError(f"invalid config: retrain.{field}.name: expected a string")
            try:
                registry.get(field, value["name"])
            except UserInputError as exc:  # "aug: unknown aug 'x'; ..." -> "retrain.aug: ..."
                raise UserInputError(f"retrain.{exc}") from None
            retrain[field] = value
        data["retrain"] = retrain
    return data


def resolve_config(raw: dict[str, Any] | None = None, set_keys: tuple[str, ...] = ()) -> RunConfig:
    """Validates a raw mapping into a ``RunConfig``.

    Args:
        raw: Parsed YAML or keyword overrides; missing components get defaults.
        set_keys: Keys that came from ``--set`` (to word errors about them).

    Returns:
        The validated ``RunConfig``.

    Raises:
        UserInputError: Unknown component or invalid field, as one line.
    """
    data = _normalize_components(raw or {})
    try:
        return run_config_model().model_validate(data)
    except ValidationError as exc:
        raise UserInputError(format_validation_error(exc, set_keys)) from None


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Loads, overrides and validates a run config (the CLI's path)."""
    raw = load_yaml(path) if path is not None else {}
    raw, keys = apply_overrides(raw, overrides)
    return resolve_config(raw, set_keys=keys)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def save_config(config: RunConfig, path: str | os.PathLike[str]) -> None:
    """Writes the fully resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")
