"""The base pydantic model every dha config derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel", "ComponentConfig", "STRICT_CONFIG"]

STRICT_CONFIG = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)
"""Settings of every dha config model.

``allow_inf_nan=False``: a float field given ``inf`` or ``nan`` (``--set hpo.wd_up=inf``)
fails validation. A field that does accept them says so in its description and opts in
with ``Field(..., allow_inf_nan=True)``.
"""


class StrictModel(BaseModel):
    """A config model that rejects unknown keys and non-finite floats, and validates on
    assignment."""

    model_config = STRICT_CONFIG


class ComponentConfig(StrictModel):
    """Base for a component's config. The registry adds the ``name`` discriminator."""
