"""``train.progress``: tqdm bars on a terminal, plain lines when stderr is a file or a pipe."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dha_core
from dha_core.config import resolve_config
from dha_core.progress import ProgressReporter, resolve_mode
from tests.conftest import tiny_raw_config

ESCAPES = re.compile(r"\r|\x1b")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(reporter: ProgressReporter, epochs: int, steps: int) -> None:
    for epoch in range(epochs):
        reporter.start_epoch(epoch)
        for step in range(steps):
            reporter.step({"loss": 2.5 - 0.01 * step, "lr": 0.025} if step != 2 else None)  # 3rd: skipped
        reporter.end_steps()
        reporter.end_epoch({"val_acc": 0.25 + epoch / 10, "val_loss": 2.0})
    reporter.close()
    reporter.write(f"search: {epochs} epochs, 1.0s")


def test_auto_follows_the_stream() -> None:
    assert resolve_mode("auto", io.StringIO()) == "log"
    assert resolve_mode("auto", _Terminal()) == "bar"
    assert resolve_mode("bar", io.StringIO()) == "bar" and resolve_mode("off", _Terminal()) == "off"
    with pytest.raises(ValueError, match="progress mode"):
        resolve_mode("sometimes")


def test_log_mode_writes_one_plain_line_per_epoch_and_every_n_steps() -> None:
    stream = io.StringIO()
    _drive(ProgressReporter("auto", "search", epochs=3, steps_per_epoch=7, every=3, stream=stream), 3, 7)
    text = stream.getvalue()
    assert not ESCAPES.search(text)
    lines = text.splitlines()
    epoch_lines = [line for line in lines if " done " in line]
    assert [line.split(" done ")[0] for line in epoch_lines] == [
        "search: epoch 1/3", "search: epoch 2/3", "search: epoch 3/3"]
    assert "val_acc 0.2500 val_loss 2.0000" in epoch_lines[0] and "7 steps" in epoch_lines[0]
    step_lines = [line for line in lines if " step " in line]
    # after steps 3 and 6 of 7 in each epoch; the 3rd step was skipped, so the line shows the 2nd's loss
    assert len(step_lines) == 6
    assert step_lines[0].startswith("search: epoch 1/3 step 3/7 (43%) loss 2.4900 lr 0.025 ")
    assert lines[-1] == "search: 3 epochs, 1.0s"
    assert len(lines) == 3 + 6 + 1


def test_bar_mode_draws_bars_and_off_writes_nothing() -> None:
    bars = _Terminal()
    _drive(ProgressReporter("auto", "search", epochs=2, steps_per_epoch=5, stream=bars), 2, 5)
    assert "\r" in bars.getvalue() and "search: 2 epochs, 1.0s" in bars.getvalue()
    silent = io.StringIO()
    _drive(ProgressReporter("off", "search", epochs=2, steps_per_epoch=5, stream=silent), 2, 5)
    assert silent.getvalue() == ""


def test_boolean_aliases_and_choices(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path)
    for given, expected in ((True, "auto"), (False, "off"), ("log", "log"), ("bar", "bar")):
        raw["train"]["progress"] = given
        assert resolve_config(raw).train.progress == expected
    config = resolve_config(raw)
    config.train.progress = False  # assignment is validated too (the CLI's -q does this)
    assert config.train.progress == "off"


def test_search_piped_to_a_file_writes_plain_lines(tmp_path: Path) -> None:
    """The real CLI with stderr redirected to a file (not a TTY): ``auto`` gives plain lines."""
    raw = tiny_raw_config(tmp_path / "runs")
    raw["train"].update(progress="auto", epochs=3, progress_every=2)
    raw["output"]["plots"] = False
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    with (tmp_path / "stderr.txt").open("w") as err, (tmp_path / "stdout.txt").open("w") as out:
        code = subprocess.run([sys.executable, "-m", "dha_core.cli", "search", "--config", str(config),
                               "--out", str(tmp_path / "run")], stdout=out, stderr=err, env=env, cwd=root,
                              timeout=300).returncode
    text = (tmp_path / "stderr.txt").read_text()
    assert code == 0, text
    assert not ESCAPES.search(text)
    progress = [line for line in text.splitlines() if line.startswith("search: ")]
    assert [line.split(" done ")[0] for line in progress if " done " in line] == [
        f"search: epoch {e}/3" for e in (1, 2, 3)]
    assert all("val_acc" in line for line in progress if " done " in line)
    assert sum(" step " in line for line in progress) == 3 * 2  # steps 2 and 4 of 6 per epoch
    assert progress[-1].startswith("search: 3 epochs, ")


def test_python_api_progress_off_is_silent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tiny_raw_config(tmp_path)
    raw["output"]["plots"] = False
    dha_core.build(config=raw).fit()  # tiny_raw_config sets progress: false
    assert capsys.readouterr().err == ""
