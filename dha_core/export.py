"""``dha export``: TorchScript or ONNX files from a run's ``model.pt``."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch

from dha_core.checkpoint import load_checkpoint
from dha_core.errors import UserInputError
from dha_core.model_io import load_model

__all__ = ["export_run"]


def export_run(run_dir: Path, fmt: str, output: Path | None = None) -> Path:
    """Exports the run's model; the exported graph takes ``[0, 1]`` images.

    Args:
        run_dir: The run directory (or a ``model.pt`` path).
        fmt: ``"torchscript"`` or ``"onnx"``.
        output: Output file; defaults to ``model.ts`` / ``model.onnx`` beside ``model.pt``.

    Returns:
        The written file.
    """
    model_path = run_dir / "model.pt" if run_dir.is_dir() else run_dir
    if not model_path.is_file():
        raise UserInputError(f"model not found: {model_path}")
    model = load_model(model_path).cpu().eval()
    spec = load_checkpoint(model_path)["data_spec"]
    example = torch.rand(1, spec["channels"], spec["image_size"], spec["image_size"])
    if fmt == "torchscript":
        out = output or model_path.with_name("model.ts")
        with torch.no_grad(), warnings.catch_warnings():
            # TorchScript is deprecated upstream but still the most portable format for C++ users.
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(model, example)
        traced.save(str(out))
        return out
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserInputError(f"ONNX export needs {' and '.join(missing)}: pip install 'dha[onnx]'")
        out = output or model_path.with_name("model.onnx")
        torch.onnx.export(model, (example,), str(out), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        return out
    raise UserInputError(f"--format: unknown export format {fmt!r}; expected torchscript or onnx")
