"""Plugin discovery, duplicates, broken plugins, blocking and listing."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

import dha_core
from dha_core import registry as reg
from dha_core.config_base import ComponentConfig
from dha_core.errors import UserInputError
from dha_core.hookspecs import hookimpl

BUILTINS = {
    "space": {"tiny", "darts", "mobilenet", "timm"},
    "relax": {"uniform", "ista", "softmax", "gumbel"},
    "aug": {"none", "standard", "kornia", "torchvision", "autoaugment", "randaugment", "trivialaugment"},
    "hpo": {"fixed", "hypergrad"},
    "dataset": {"synthetic", "sample", "cifar10", "cifar100", "imagefolder"},
}


@pytest.fixture(autouse=True)
def fresh_registry():
    reg.reset_registry()
    yield
    reg.reset_registry()


def test_every_kind_lists_its_builtins() -> None:
    listed = dha_core.list_components()
    assert set(listed) == set(reg.KINDS)
    for kind, names in BUILTINS.items():
        assert names <= set(listed[kind]), f"{kind}: missing {names - set(listed[kind])}"


def test_builtins_come_through_entry_points() -> None:
    providers = {c.provider for kind in reg.KINDS for c in reg.get_registry().components(kind)}
    assert "space-tiny" in providers and "hpo-fixed" in providers
    assert "<direct>" not in providers


def test_list_one_kind_and_unknown_kind() -> None:
    assert list(dha_core.list_components("hpo")) == ["hpo"]
    with pytest.raises(UserInputError, match="unknown component kind"):
        dha_core.list_components("optimizer")


def _factory(config: Any, **_: Any) -> None:
    return None


def test_duplicate_name_names_both_providers() -> None:
    registry = reg.Registry()
    registry._current_provider = "pkg-a"
    registry.add("aug", "dup", _factory)
    registry._current_provider = "pkg-b"
    with pytest.raises(reg.DuplicateComponentError, match="pkg-a.*pkg-b"):
        registry.add("aug", "dup", _factory)


def test_unknown_kind_and_name_field_rejected() -> None:
    registry = reg.Registry()
    with pytest.raises(ValueError, match="unknown component kind"):
        registry.add("optimizer", "x", _factory)

    class WithName(ComponentConfig):
        name: str = "x"

    with pytest.raises(ValueError, match="must not define 'name'"):
        registry.add("aug", "x", _factory, config=WithName)


def test_unknown_component_lists_available() -> None:
    with pytest.raises(UserInputError, match=r"unknown hpo 'nope'; available: .*fixed"):
        reg.get_registry().get("hpo", "nope")


class _Broken:
    name = "broken-plugin"
    value = "broken_module_xyz"
    group = "dha"

    def load(self) -> Any:
        raise ImportError("No module named 'broken_module_xyz'")


class _Dup:
    @staticmethod
    @hookimpl
    def dha_register(registry: Any) -> None:
        registry.add("hpo", "fixed", _factory)


def _patch_entry_points(monkeypatch: pytest.MonkeyPatch, extra: list[Any]) -> None:
    import importlib.metadata as md

    real = md.entry_points

    def fake(**kwargs: Any) -> Any:
        return list(real(**kwargs)) + extra

    monkeypatch.setattr(md, "entry_points", fake)


def test_broken_plugin_warns_and_others_load(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_entry_points(monkeypatch, [_Broken()])
    with pytest.warns(RuntimeWarning, match="broken-plugin"):
        registry = reg.get_registry()
    assert "broken-plugin" in registry.failed_plugins
    assert "fixed" in registry.names("hpo")


def test_duplicate_from_entry_point_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    class _DupEP:
        name = "zz-dup"
        value = "dup"
        group = "dha"

        def load(self) -> Any:
            return _Dup

    _patch_entry_points(monkeypatch, [_DupEP()])
    with pytest.raises(reg.DuplicateComponentError, match="hpo-fixed.*zz-dup"):
        reg.get_registry()


def test_disabled_plugins_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHA_DISABLED_PLUGINS", "aug-none, dataset-synthetic")
    listed = dha_core.list_components()
    assert "none" not in listed["aug"]
    assert "synthetic" not in listed["dataset"]
    assert "fixed" in listed["hpo"]


def test_entry_point_group_declared() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="dha")}
    assert {"space-tiny", "aug-none", "hpo-fixed", "dataset-sample"} <= names
    assert all(isinstance(ep, EntryPoint) for ep in entry_points(group="dha"))


def test_loading_the_registry_does_not_import_slow_optional_libraries() -> None:
    """torchvision, timm and matplotlib take seconds to import; `dha list`, config errors and
    every worker process pay for plugin registration, so plugins import them when used."""
    import subprocess
    import sys

    code = ("import sys, dha_core; dha_core.get_registry(); "
            "print(','.join(m for m in ('torchvision', 'timm', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_create_validates_overrides_in_one_call() -> None:
    data = dha_core.create("dataset", "synthetic", num_train=32, image_size=8)
    assert len(data.split("train")) + len(data.split("val")) == 32
    assert dha_core.create("data", "synthetic", num_train=32).num_classes == data.num_classes  # the config section
    with pytest.raises(UserInputError, match="aug 'kornia': temprature: unknown key"):
        dha_core.create("aug", "kornia", temprature=0.3)
    with pytest.raises(UserInputError, match="unknown component kind"):
        dha_core.create("optimizer", "sgd")


def test_unknown_context_is_rejected_not_swallowed() -> None:
    with pytest.raises(TypeError, match="unknown context data_spc; a aug takes data_spec"):
        dha_core.create("aug", "kornia", {"data_spc": {"image_size": 8}})
    seen: dict[str, Any] = {}

    def declares_seed(config: Any, seed: int = 0) -> None:
        seen["seed"] = seed

    registry = reg.Registry()
    registry.add("relax", "r", declares_seed)
    component = registry.get("relax", "r")
    assert component.accepts == {"seed"}
    component.create(component.config(), epochs=3, seed=7)  # the kind's other context key is not passed on
    assert seen == {"seed": 7}
    with pytest.raises(ValueError, match="declares data_spec, which a relax is not given"):
        registry.add("relax", "bad", lambda config, data_spec: None)
