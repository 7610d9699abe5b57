"""The one table of component kinds: registry kind, config section and default component.

Every other place that lists kinds (the registry, the run config, the CLI, ``build()``,
the summary, ``dha sweep`` and ``dha ablate``) reads :data:`KIND_TABLE`.

The dataset kind is the one whose two names differ: plugins register it as ``dataset``
(``registry.add("dataset", ...)``, ``dha list --kind dataset``) and a run config holds it
in its ``data`` section (``data: {name: sample}``). Wherever a kind is named by the user
(``--swap``, ``--grid``), both spellings are accepted; :func:`kind` resolves either.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Kind", "KIND_TABLE", "KINDS", "CONFIG_FIELDS", "RETRAIN_KINDS", "kind"]


@dataclass(frozen=True)
class Kind:
    """One component kind.

    Attributes:
        name: The registry kind (what plugins register and ``dha list`` shows).
        field: The run config's section that selects the component.
        default: The component a config that omits the section gets.
        context: The keyword arguments the core passes to this kind's factories
            (``factory(config, **context)``); a factory declares the ones it uses.
    """

    name: str
    field: str
    default: str
    context: tuple[str, ...] = ()


KIND_TABLE: tuple[Kind, ...] = (
    Kind("space", "space", "darts", ("data_spec",)),
    Kind("relax", "relax", "ista", ("epochs", "seed")),
    Kind("aug", "aug", "kornia", ("data_spec",)),
    Kind("hpo", "hpo", "hypergrad"),
    Kind("dataset", "data", "sample"),
)

KINDS: tuple[str, ...] = tuple(k.name for k in KIND_TABLE)
"""Registry kinds, in the table's order."""

CONFIG_FIELDS: tuple[str, ...] = tuple(k.field for k in KIND_TABLE)
"""Run config sections that select a component, in the table's order."""

RETRAIN_KINDS: tuple[str, ...] = ("aug", "hpo")
"""The kinds a ``retrain`` stage configures on its own (same defaults as the search's)."""


def kind(name: str) -> Kind | None:
    """The kind named ``name``, by registry kind or by config section (``dataset`` or ``data``)."""
    for k in KIND_TABLE:
        if name in (k.name, k.field):
            return k
    return None
