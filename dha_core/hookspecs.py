"""The pluggy hook specification: the single hook every dha plugin implements."""

from __future__ import annotations

import pluggy

PROJECT = "dha"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def dha_register(registry) -> None:  # type: ignore[no-untyped-def]
    """Registers components: call ``registry.add(kind, name, factory, config=Model)``.

    Args:
        registry: The :class:`dha_core.registry.Registry` being filled.
    """
