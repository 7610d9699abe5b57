"""RunConfig validation, YAML round trip and --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dha_core.config import load_config, resolve_config, save_config
from dha_core.config_files import apply_overrides, load_yaml
from dha_core.errors import UserInputError
from tests.conftest import tiny_raw_config


def test_defaults_are_dha_components() -> None:
    config = resolve_config({})
    assert (config.space.name, config.relax.name, config.aug.name, config.hpo.name, config.data.name) == (
        "darts", "ista", "kornia", "hypergrad", "sample")


def test_shorthand_and_component_fields(tmp_path: Path) -> None:
    config = resolve_config(tiny_raw_config(tmp_path))
    assert config.space.name == "tiny" and config.space.channels == 4
    assert config.relax.name == "uniform"


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = resolve_config(tiny_raw_config(tmp_path))
    path = tmp_path / "config.yaml"
    save_config(config, path)
    again = resolve_config(load_yaml(path))
    assert again == config


def test_set_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_raw_config(tmp_path)))
    config = load_config(path, ["train.epochs=3", "space.channels=6", "train.grad_clip=null"])
    assert config.train.epochs == 3 and config.space.channels == 6 and config.train.grad_clip is None
    with pytest.raises(UserInputError, match=r"train\.epochs: Input should be greater than or equal to 1"):
        load_config(path, ["train.epochs=0"])
    with pytest.raises(UserInputError, match=r"train\.nope: unknown key \(from --set\)"):
        load_config(path, ["train.nope=1"])


def test_set_name_swaps_component(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path, hpo={"name": "fixed", "lr": 0.5})
    new, keys = apply_overrides(raw, ["hpo.name=hypergrad"])
    assert new["hpo"] == {"name": "hypergrad"} and keys == ("hpo.name",)
    assert resolve_config(new).hpo.name == "hypergrad"


def test_unknown_component_lists_available(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"aug: unknown aug 'fancy'; available: .*none"):
        resolve_config(tiny_raw_config(tmp_path, aug="fancy"))


def test_wrong_type_names_field_path(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"space\.channels: Input should be a valid integer"):
        resolve_config(tiny_raw_config(tmp_path, space={"name": "tiny", "channels": "many"}))


def test_retrain_components_are_validated(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path, retrain={"epochs": 1, "aug": "none", "hpo": {"name": "fixed", "lr": -1}})
    with pytest.raises(UserInputError, match=r"retrain\.hpo\.lr: Input should be greater than 0"):
        resolve_config(raw)


@pytest.mark.parametrize("text, match", [
    ("space: [unclosed", "cannot parse YAML"),
    ("- a\n- b\n", "must contain a mapping"),
])
def test_bad_yaml(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserInputError, match=match):
        load_yaml(path)


def test_missing_yaml(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="config file not found"):
        load_yaml(tmp_path / "none.yaml")


@pytest.mark.parametrize("item", ["novalue", "=3", "a..b=1"])
def test_malformed_set(item: str) -> None:
    with pytest.raises(UserInputError, match="--set"):
        apply_overrides({}, [item])


def test_no_code_is_evaluated_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("space: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(UserInputError, match="cannot parse YAML"):
        load_yaml(path)
