"""The base pydantic model every dha config derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel", "ComponentConfig"]


class StrictModel(BaseModel):
    """A config model that rejects unknown keys and validates on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ComponentConfig(StrictModel):
    """Base for a component's config. The registry adds the ``name`` discriminator."""
