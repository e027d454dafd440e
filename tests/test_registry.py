"""The one registry type (rai_harness.registry): suites, classifier backends, provider kinds."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import pytest

import rai_harness.registry as registry_module
from rai_harness.classifiers.pool import BACKENDS
from rai_harness.errors import ConfigError
from rai_harness.providers import PROVIDER_KINDS
from rai_harness.registry import Registry
from rai_harness.suites import SUITES


class Thing:
    pass


def _registry(**kwargs: object) -> Registry[type[Thing]]:
    return Registry(
        "widget",
        {"alpha": Thing, "beta-two": "rai_fake_widgets:Beta"},
        key_path="widget",
        check=lambda obj: isinstance(obj, type) and issubclass(obj, Thing),
        expected="a Thing subclass",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def widgets_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("rai_fake_widgets")

    class Beta(Thing):
        pass

    module.Beta = Beta  # type: ignore[attr-defined]
    module.NotAThing = int  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rai_fake_widgets", module)
    return module


def test_register_get_and_names(widgets_module: types.ModuleType) -> None:
    reg = _registry()
    assert reg.get("alpha") is Thing
    assert reg.get("beta-two") is widgets_module.Beta  # imported from "module:attr" on first use
    reg.register("gamma", Thing)
    assert reg.names() == ["alpha", "beta-two", "gamma"] and "gamma" in reg and len(reg) == 3
    with pytest.raises(ValueError, match="widget 'gamma' is already registered"):
        reg.register("gamma", Thing)
    reg.register("gamma", "rai_fake_widgets:Beta", replace=True)
    assert reg.get("gamma") is widgets_module.Beta and reg["gamma"] == "rai_fake_widgets:Beta"


def test_unknown_name_says_which_and_lists_the_known_ones() -> None:
    reg = _registry()
    with pytest.raises(ConfigError) as info:
        reg.get("beta_tw")
    text = str(info.value)
    assert "unknown widget 'beta_tw'" in text and "did you mean 'beta-two'?" in text
    assert "(known: alpha, beta-two)" in text and info.value.key_path == "widget"
    with pytest.raises(ConfigError) as info:
        reg.get("zzzzzz")
    assert "did you mean" not in str(info.value) and "known: alpha, beta-two" in str(info.value)


def test_bad_targets_are_config_errors(widgets_module: types.ModuleType) -> None:
    reg = _registry()
    reg.register("wrong", "rai_fake_widgets:NotAThing")
    reg.register("absent", "rai_fake_widgets:Nothing")
    reg.register("bare", "rai_fake_widgets")
    with pytest.raises(ConfigError, match="which is not a Thing subclass"):
        reg.get("wrong")
    with pytest.raises(ConfigError, match="which is not a Thing subclass"):
        reg.get("absent")
    with pytest.raises(ConfigError, match="not 'module:attr'"):
        reg.get("bare")
    # With a default attribute, a bare module name is enough.
    defaulted = _registry(default_attr="Beta")
    defaulted.register("bare", "rai_fake_widgets")
    assert defaulted.get("bare") is widgets_module.Beta
    reg.register("ghost", "rai_no_such_module_xyz:Thing")
    with pytest.raises(ImportError):  # callers turn it into their install hint
        reg.get("ghost")


def test_plugins_add_names_but_never_replace_one(
    monkeypatch: pytest.MonkeyPatch, widgets_module: types.ModuleType
) -> None:
    eps = [
        EntryPoint(name="delta", value="rai_fake_widgets:Beta", group="widgets"),
        EntryPoint(name="alpha", value="rai_fake_widgets:Beta", group="widgets"),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: eps if group == "widgets" else [])
    reg = _registry(entry_point_group="widgets")
    assert reg.names() == ["alpha", "beta-two", "delta"]
    assert reg.get("delta") is widgets_module.Beta
    assert reg.get("alpha") is Thing  # the built-in wins
    assert "delta" not in reg  # membership is built-in and registered names only
    copy = reg.copy()
    copy.register("epsilon", Thing)
    assert "epsilon" not in reg and copy.get("epsilon") is Thing


def test_the_three_registries_are_one_type() -> None:
    for reg in (SUITES, BACKENDS, PROVIDER_KINDS):
        assert type(reg) is Registry
    assert {"toxicity", "bias.bbq"} <= set(SUITES.names())
    assert {"keyword", "presidio"} <= set(BACKENDS.names())
    assert {"openai", "replay"} <= set(PROVIDER_KINDS.names())
    with pytest.raises(ConfigError, match="unknown suite 'toxicty' \\(did you mean 'toxicity'") as info:
        SUITES.get("toxicty")
    assert info.value.key_path == "name"
