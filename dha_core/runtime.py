"""Device selection, seeding and RNG state capture for exact resume."""

from __future__ import annotations

import logging
import platform
import random
from typing import Any

import numpy as np
import torch

from dha_core.errors import UserInputError

__all__ = ["resolve_device", "seed_everything", "rng_state", "set_rng_state"]

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """Turns ``auto|cpu|cuda|cuda:N|mps`` into a device, checking it exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError("train.device: cuda requested but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"train.device: {name} does not exist ({torch.cuda.device_count()} CUDA devices)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserInputError("train.device: mps requested but not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states (as tensors/lists, loadable with ``weights_only=True``)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(_python_state()),
        "numpy": _numpy_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state() -> tuple[Any, ...]:
    version, internal, gauss = random.getstate()
    return version, list(internal), gauss


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``).

    Step times and float rounding differ by CPU type, so benchmarks and bit-exact checks record it.

    Returns:
        The model name, or ``"unknown"``.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
