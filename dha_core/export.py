"""``dha export``: TorchScript or ONNX files from a run's ``model.pt``."""

from __future__ import annotations

import importlib.util
import inspect
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from dha_core.checkpoint import load_checkpoint
from dha_core.errors import UserInputError
from dha_core.model_io import load_model
from dha_core.types import DataSpec

__all__ = ["export_run"]


def export_run(run_dir: Path, fmt: str, output: Path | None = None) -> Path:
    """Exports the run's model; the exported graph takes ``[0, 1]`` images.

    Args:
        run_dir: The run directory (or a ``model.pt`` path).
        fmt: ``"torchscript"`` or ``"onnx"``.
        output: Output file; defaults to ``model.ts`` / ``model.onnx`` beside ``model.pt``.

    Returns:
        The written file.

    Raises:
        UserInputError: Unknown format, missing ONNX packages, no model, or an output path
            that cannot be written (checked before anything is exported).
    """
    if fmt not in ("torchscript", "onnx"):
        raise UserInputError(f"--format: unknown export format {fmt!r}; expected torchscript or onnx")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserInputError(f"ONNX export needs {' and '.join(missing)}: pip install 'dha[onnx]'")
    model_path = run_dir / "model.pt" if run_dir.is_dir() else run_dir
    if not model_path.is_file():
        raise UserInputError(f"model not found: {model_path}")
    model = load_model(model_path).cpu().eval()
    spec = DataSpec.from_json(load_checkpoint(model_path)["data_spec"])
    example = torch.rand(1, spec.channels, spec.image_size, spec.image_size)
    out = output or model_path.with_name("model.ts" if fmt == "torchscript" else "model.onnx")
    _check_output(out)
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            # TorchScript is deprecated upstream but still the most portable format for C++ users.
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(model, example)
        traced.save(str(out))
    else:
        _export_onnx(model, example, out)
    return out


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    """Writes an ONNX file whose input ``images`` and output ``logits`` have a dynamic batch axis."""
    kwargs: dict[str, Any] = {"input_names": ["images"], "output_names": ["logits"]}
    if "dynamic_shapes" in inspect.signature(torch.onnx.export).parameters:
        # The torch.export-based exporter (torch >= 2.5); verbose=False keeps stdout to dha's own line.
        # An example batch of 2: torch.export specialises dimensions of size 1.
        example = example.expand(2, *example.shape[1:]).contiguous()
        kwargs.update(dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    else:
        kwargs.update(dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(out), **kwargs)

def _check_output(out: Path) -> None:
    """Checks that ``out`` can be written, before anything is exported (nothing is left behind).

    Raises:
        UserInputError: ``out`` is a directory, its folder does not exist, or the folder
            cannot be written (a read-only or virtual file system).
    """
    if out.is_dir():
        raise UserInputError(f"--output: {out} is a directory; give a file name")
    if not out.parent.is_dir():
        raise UserInputError(f"--output: folder {out.parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
    except OSError as exc:
        raise UserInputError(f"--output: cannot write {out}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
