"""Not implemented yet: registers nothing until its issue lands."""

from typing import Any

from dha_core.hookspecs import hookimpl


@hookimpl
def dha_register(registry: Any) -> None:
    """Registers nothing yet."""
