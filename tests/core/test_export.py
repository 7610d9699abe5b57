"""``dha export --format onnx``: a file onnxruntime loads and runs, equal to ``load_model``'s outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import dha_core
from dha_core.cli import main
from tests.conftest import tiny_raw_config

pytest.importorskip("onnx", reason="the onnx extra is not installed (it is part of the dev extra)")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (it is part of the dev extra)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (it is part of the dev extra)")

SMALL_DARTS = {"name": "darts", "C": 4, "layers": 3, "nodes": 2}
SMALL_MOBILENET = {"name": "mobilenet", "stage_widths": [8, 8], "depths": [1, 2], "strides": [2, 1],
                   "stem_channels": 8, "first_block_channels": 8, "last_channels": 16}


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("space, relax", [(SMALL_DARTS, "ista"), (SMALL_MOBILENET, "softmax")],
                         ids=["darts", "mobilenet"])
def test_onnx_export_runs_in_onnxruntime_and_matches_load_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], space: dict[str, Any], relax: str
) -> None:
    raw = tiny_raw_config(tmp_path / "runs", space=space, relax=relax)
    raw["data"].update(image_size=16, num_train=48, num_test=16)
    raw["train"].update(epochs=1, max_steps_per_epoch=2, batch_size=8)
    raw["output"]["plots"] = False
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    assert main(["-q", "search", "--config", str(config), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    onnx_file = run / "model.onnx"
    assert out.strip() == f"wrote {onnx_file}"

    import onnx

    onnx.checker.check_model(onnx.load(str(onnx_file)))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # batch 3: the batch axis is dynamic
    (got,) = session.run(["logits"], {"images": x.numpy()})
    with torch.no_grad():
        want = dha_core.load_model(run)(x).numpy()
    assert got.shape == want.shape == (3, 10)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(want).max() > 1e-3  # not a model that outputs zeros for everything
