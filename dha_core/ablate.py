"""``dha ablate``: swap components over seeds; a thin alias of :mod:`dha_core.sweep`.

``--swap KIND=A,B`` is the grid axis ``KIND.name=A,B``; everything else (engines, tables,
resume) is the sweep's.
"""

from __future__ import annotations

from collections.abc import Sequence

from dha_core.errors import UserInputError
from dha_core.kinds import CONFIG_FIELDS
from dha_core.kinds import kind as kind_named

__all__ = ["parse_swaps", "swaps_to_grid"]


def parse_swaps(swaps: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["aug=kornia,none"]`` -> ``[("aug", ["kornia", "none"])]``."""
    out: list[tuple[str, list[str]]] = []
    for item in swaps:
        kind, sep, values = item.partition("=")
        kind = kind.strip()
        if not sep or not values.strip():
            raise UserInputError(f"--swap {item!r}: expected KIND=A,B,...")
        found = kind_named(kind)
        if found is None:
            raise UserInputError(f"--swap {item!r}: unknown kind {kind!r}; expected one of "
                                 f"{', '.join(CONFIG_FIELDS)}")
        names = [v.strip() for v in values.split(",") if v.strip()]
        out.append((found.field, names))
    return out


def swaps_to_grid(swaps: Sequence[str]) -> list[str]:
    """``["aug=kornia,none"]`` -> ``["aug.name=kornia,none"]`` (sweep grid axes)."""
    return [f"{kind}.name={','.join(names)}" for kind, names in parse_swaps(swaps)]
