"""The ``dha`` command line: commands, exit codes and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import dha_core
from dha_core.cli import main
from tests.conftest import tiny_raw_config


def write_config(tmp_path: Path, **sections: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_raw_config(tmp_path / "runs", **sections)))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("dha: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("argv_tail, sections, needles", [
    (["--set", "relax.name=nonexistent"], {}, ["relax", "nonexistent", "available:", "uniform"]),
    ([], {"space": "nonexistent"}, ["space", "nonexistent", "available:"]),
    (["--set", "train.batch_size=abc"], {}, ["train.batch_size", "valid integer"]),
    (["--set", "train.epochs=0"], {}, ["train.epochs", "greater than or equal to 1"]),
    ([], {"hpo": {"name": "fixed", "lr": -0.1}}, ["hpo.lr", "greater than 0"]),
    (["--set", "train.nonsense=1"], {}, ["train.nonsense", "unknown key"]),
    (["--set", "aug.nonsense=1"], {}, ["aug.nonsense", "unknown key"]),
    ([], {"data": {"name": "imagefolder", "root": "/does/not/exist"}}, ["data.root", "/does/not/exist"]),
    ([], {"data": {"name": "cifar10", "root": "/does/not/exist"}}, ["data.root", "/does/not/exist"]),
    (["--set", "train.device=gpu7"], {}, ["train.device"]),
    (["--set", "train.precision=fp8"], {}, ["train.precision", "'bf16'"]),
    (["--set", "train.channels_last=sometimes"], {}, ["train.channels_last", "auto, true or false"]),
    (["--set", "train.threads=0"], {}, ["train.threads", "greater than or equal to 1"]),
    (["--set", "train.compile=maybe"], {}, ["train.compile", "boolean"]),
])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv_tail: list[str], sections: dict[str, Any],
    needles: list[str],
) -> None:
    config = write_config(tmp_path, **sections)
    code, _, err = run_cli(capsys, "search", "--config", str(config), *argv_tail)
    assert_bad_input(code, err, *needles)
    assert not (tmp_path / "runs").exists()


def test_unreadable_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("train: {epochs: 1\n")
    code, _, err = run_cli(capsys, "search", "--config", str(config))
    assert_bad_input(code, err, str(config), "cannot parse YAML")


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "search", "--config", str(tmp_path / "nope.yaml"))
    assert_bad_input(code, err, "nope.yaml", "not found")


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_existing_run_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    code, _, err = run_cli(capsys, "search", "--config", str(config), "--out", str(out))
    assert_bad_input(code, err, str(out), "already exists")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_bad_image_names_file_then_skip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    root = tmp_path / "folder"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (10, 12), color=(40 * i, 100 if cls == "a" else 10, 0)).save(d / f"{i}.png")
    bad = root / "train" / "a" / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    config = write_config(tmp_path, data={"name": "imagefolder", "root": str(root), "image_size": 8})
    code, _, err = run_cli(capsys, "search", "--config", str(config), "--out", str(tmp_path / "r1"))
    assert_bad_input(code, err, str(bad))
    assert not (tmp_path / "r1").exists()
    code, out, _ = run_cli(capsys, "-q", "search", "--config", str(config), "--out", str(tmp_path / "r2"),
                           "--skip-bad-images")
    assert code == 0, out
    assert (tmp_path / "r2" / "summary.json").is_file()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_search_eval_export_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "-q", "search", "--config", str(config), "--out", str(run))
    assert code == 0
    assert "test accuracy" in out
    summary = json.loads((run / "summary.json").read_text())
    code, out, _ = run_cli(capsys, "eval", str(run), "--json")
    assert code == 0
    assert json.loads(out)["acc"] == summary["test_acc"]
    code, out, _ = run_cli(capsys, "export", str(run), "--format", "torchscript")
    assert code == 0 and (run / "model.ts").is_file()
    # the exported program is the whole model, normalisation included
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.jit.load(str(run / "model.ts"))(x), dha_core.load_model(run)(x))
    code, out, _ = run_cli(capsys, "list", "--json")
    listed = json.loads(out)
    assert {"space", "relax", "aug", "hpo", "dataset"} <= set(listed)
    assert "tiny" in [c["name"] for c in listed["space"]]


def test_onnx_without_packages_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    # Simulate an install without the onnx extra (CI installs it: the dev extra includes it).
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnx", "onnxscript") else find_spec(name, *a))
    config = write_config(tmp_path)
    run = tmp_path / "run"
    assert run_cli(capsys, "-q", "search", "--config", str(config), "--out", str(run))[0] == 0
    code, _, err = run_cli(capsys, "export", str(run), "--format", "onnx")
    assert_bad_input(code, err, "onnx", "pip install")
    assert not (run / "model.onnx").exists()


def test_eval_and_resume_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "nope"))
    assert_bad_input(code, err, "run directory not found")
    code, _, err = run_cli(capsys, "resume", str(tmp_path / "nope"))
    assert_bad_input(code, err, "run directory not found")


@pytest.mark.parametrize("launcher", ["dha", "module"])
def test_console_script_entry_point(tmp_path: Path, launcher: str) -> None:
    """The installed ``dha`` script (``[project.scripts]``) and ``python -m dha_core.cli``."""
    if launcher == "dha":
        script = shutil.which("dha", path=str(Path(sys.executable).parent)) or shutil.which("dha")
        assert script is not None, "the `dha` console script is not installed next to this Python"
        command = [script]
    else:
        command = [sys.executable, "-m", "dha_core.cli"]
    proc = subprocess.run([*command, "search", "--config", str(tmp_path / "x.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"dha: error: config file not found: {tmp_path / 'x.yaml'}"]
