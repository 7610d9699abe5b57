"""Atomic checkpoint files, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from dha_core.errors import UserInputError

__all__ = ["atomic_save", "load_checkpoint"]


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Saves ``obj`` with :func:`torch.save` to a temp file, then ``os.replace``s it.

    A crash at any point leaves either the old file or the new one, never a torn one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint safely (no pickled code is executed)."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"checkpoint not found: {p}")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise UserInputError(f"cannot load checkpoint {p}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
