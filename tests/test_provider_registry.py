"""The lazy provider registry: built-in kinds, suggestions, entry-point plugins."""

from __future__ import annotations

import importlib.util
import sys
import types
from importlib.metadata import EntryPoint
from typing import Literal

import pytest

import rai_harness.providers as providers
import rai_harness.registry as registry
from rai_harness.errors import ConfigError
from rai_harness.providers import PROVIDER_KINDS, ProviderConfig, get_config_class, list_kinds

BUILT_IN = {"openai", "azure-openai", "vertex", "bedrock", "replay", "hf-local"}


@pytest.fixture
def plugins(monkeypatch):
    """Install fake entry points; returns a setter taking (name, value) pairs."""

    def install(*pairs):
        eps = [EntryPoint(name=n, value=v, group=providers.ENTRY_POINT_GROUP) for n, v in pairs]
        monkeypatch.setattr(
            registry, "entry_points", lambda group: eps if group == providers.ENTRY_POINT_GROUP else []
        )
        PROVIDER_KINDS.refresh()

    yield install
    PROVIDER_KINDS.refresh()


def test_built_in_kinds_are_listed():
    assert set(PROVIDER_KINDS) == BUILT_IN
    assert set(list_kinds()) >= BUILT_IN
    assert list_kinds() == sorted(list_kinds())


@pytest.mark.parametrize("kind", sorted(BUILT_IN))
def test_each_built_in_kind_loads(kind):
    module = PROVIDER_KINDS[kind].split(":")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet")
    cls = get_config_class(kind)
    assert issubclass(cls, ProviderConfig)
    assert cls.model_fields["kind"].default == kind
    assert cls.description


def test_unknown_kind_suggests_and_lists():
    with pytest.raises(ConfigError) as info:
        get_config_class("opeani")
    text = str(info.value)
    assert "did you mean 'openai'?" in text
    assert "unknown provider kind 'opeani'" in text
    assert "(known: " in text and "bedrock" in text and "replay" in text
    with pytest.raises(ConfigError, match="did you mean 'azure-openai'"):
        get_config_class("azure_openai")
    with pytest.raises(ConfigError) as info:
        get_config_class("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_plugin_kind_from_entry_point(plugins, monkeypatch):
    module = types.ModuleType("rai_fake_plugin")

    class EchoConfig(ProviderConfig):
        description = "test plugin"
        kind: Literal["echo-plugin"] = "echo-plugin"

    module.EchoConfig = EchoConfig  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rai_fake_plugin", module)
    plugins(("echo-plugin", "rai_fake_plugin:EchoConfig"), ("openai", "rai_fake_plugin:EchoConfig"))
    assert "echo-plugin" in list_kinds()
    assert get_config_class("echo-plugin") is EchoConfig
    # A plugin cannot replace a built-in kind.
    assert get_config_class("openai").__name__ == "OpenAIConfig"
    with pytest.raises(ConfigError, match="did you mean 'echo-plugin'"):
        get_config_class("echo-plugn")


def test_broken_plugins_give_config_errors(plugins, monkeypatch):
    module = types.ModuleType("rai_bad_plugin")
    module.NotAConfig = dict  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rai_bad_plugin", module)
    plugins(
        ("wrong-type", "rai_bad_plugin:NotAConfig"),
        ("missing-module", "rai_no_such_module_xyz:Config"),
        ("no-colon", "rai_bad_plugin"),
    )
    with pytest.raises(ConfigError, match="not a ProviderConfig subclass"):
        get_config_class("wrong-type")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        get_config_class("missing-module")
    with pytest.raises(ConfigError, match="not 'module:attr'"):
        get_config_class("no-colon")
