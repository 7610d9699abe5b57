"""Raw run configs: reading a YAML file and applying ``--set key.path=value`` overrides.

Both produce plain mappings; :func:`dha_core.config.resolve_config` validates them.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from dha_core.errors import UserInputError
from dha_core.kinds import CONFIG_FIELDS

__all__ = ["load_yaml", "apply_overrides"]


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a YAML mapping; any problem is a :class:`UserInputError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read config file {p}: {exc}") from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserInputError(f"cannot parse YAML in {p}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"config file {p} must contain a mapping at the top level")
    return data


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Applies ``key.path=value`` overrides; values are parsed as YAML scalars.

    Setting ``<component>.name`` swaps the component: its other fields are dropped unless
    they are also set.

    Returns:
        The new mapping and the dotted keys that were set.
    """
    data = copy.deepcopy(raw)
    keys: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise UserInputError(f"--set {item!r}: expected key=value")
        key, _, text = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise UserInputError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        if len(parts) == 2 and parts[0] in CONFIG_FIELDS and parts[1] == "name":
            data[parts[0]] = {"name": value}
            keys.append(key)
            continue
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i == 0 and part in CONFIG_FIELDS:
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise UserInputError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping")
            node[part] = child
            node = child
        node[parts[-1]] = value
        keys.append(key)
    return data, tuple(keys)
