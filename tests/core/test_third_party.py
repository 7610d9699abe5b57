"""The example third-party package registers through the same entry-point group."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "third_party_plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that sees this environment's packages plus the installed example plugin."""
    env_dir = tmp_path_factory.mktemp("plugin-venv")
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    # pip from the outer environment installs into the venv via --prefix-free --python.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", str(EXAMPLE)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"installing the example plugin failed:\n{proc.stderr}")
    return python


def test_dha_list_shows_third_party_component(plugin_env: Path) -> None:
    proc = subprocess.run([str(plugin_env), "-m", "dha_core.cli", "list", "--json"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    augs = {c["name"]: c for c in json.loads(proc.stdout)["aug"]}
    assert augs["grayscale"]["provider"] == "grayscale"
    assert "none" in augs  # built-ins still there


def test_build_accepts_third_party_component(plugin_env: Path, tmp_path: Path) -> None:
    script = f"""
import dha_core
from tests.conftest import tiny_raw_config
raw = tiny_raw_config({str(tmp_path / 'runs')!r})
raw['aug'] = {{'name': 'grayscale', 'p': 0.5}}
raw['train']['epochs'] = 1
result = dha_core.build(config=raw).fit()
print(result.summary['components']['aug'])
"""
    proc = subprocess.run([str(plugin_env), "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "grayscale"


def test_plugin_is_not_visible_outside_its_env() -> None:
    import dha_core

    assert "grayscale" not in dha_core.list_components("aug")["aug"]
