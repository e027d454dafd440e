"""Provider kinds and the lazy registry that maps a config's ``kind`` to its config class.

Modules are imported only when their kind is used, so ``rai --help`` does not pay for
the OpenAI SDK, boto3 or torch. Third-party packages add kinds through the entry point
group ``rai_harness.providers`` (name = kind, value = ``"module:ConfigClass"``), e.g. in
their ``pyproject.toml``::

    [project.entry-points."rai_harness.providers"]
    my-gateway = "my_package.rai:MyGatewayConfig"

A plugin's class must subclass :class:`~rai_harness.providers.base.ProviderConfig`.
Built-in kinds cannot be overridden by a plugin.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
from importlib.metadata import entry_points

from rai_harness.errors import ConfigError
from rai_harness.providers.base import Provider, ProviderConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROVIDER_KINDS",
    "Provider",
    "ProviderConfig",
    "get_config_class",
    "list_kinds",
]

log = logging.getLogger(__name__)

#: Entry point group through which other packages register provider kinds.
ENTRY_POINT_GROUP = "rai_harness.providers"

#: Built-in kinds: kind -> "module:ConfigClass".
PROVIDER_KINDS: dict[str, str] = {
    "openai": "rai_harness.providers.openai_compat:OpenAIConfig",
    "azure-openai": "rai_harness.providers.azure:AzureOpenAIConfig",
    "vertex": "rai_harness.providers.vertex:VertexConfig",
    "bedrock": "rai_harness.providers.bedrock:BedrockConfig",
    "replay": "rai_harness.providers.replay:ReplayConfig",
    "hf-local": "rai_harness.providers.hf_local:HFLocalConfig",
}


@functools.lru_cache(maxsize=1)
def _plugin_kinds() -> dict[str, str]:
    """Kinds registered by installed packages (read once per process)."""
    found: dict[str, str] = {}
    try:
        eps = entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # broken package metadata must not break the built-in kinds
        log.warning("could not read entry points of group %s: %s", ENTRY_POINT_GROUP, exc)
        return found
    for ep in eps:
        if ep.name in PROVIDER_KINDS:
            log.warning(
                "ignoring plugin provider kind %r (%s): a built-in kind has that name", ep.name, ep.value
            )
            continue
        found[ep.name] = ep.value
    return found


def _all_kinds() -> dict[str, str]:
    return {**_plugin_kinds(), **PROVIDER_KINDS}


def list_kinds() -> list[str]:
    """Every known kind, built-in and plugin, sorted."""
    return sorted(_all_kinds())


def _load(target: str, kind: str) -> type[ProviderConfig]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"provider kind {kind!r} is registered as {target!r}, which is not 'module:ConfigClass'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"provider kind {kind!r} cannot be loaded: importing {module_name} failed ({exc}); "
            "reinstall the package that provides it"
        ) from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, ProviderConfig)):
        raise ConfigError(
            f"provider kind {kind!r} is registered as {target!r}, which is not a ProviderConfig subclass"
        )
    return cls


def get_config_class(kind: str) -> type[ProviderConfig]:
    """The config class of ``kind``.

    Args:
        kind: A provider kind such as ``openai`` or ``bedrock``.

    Raises:
        ConfigError: for an unknown kind (with a "did you mean" suggestion and the list
            of kinds), or a registered kind whose module cannot be loaded.
    """
    kinds = _all_kinds()
    target = kinds.get(kind)
    if target is None:
        close = difflib.get_close_matches(kind.lower().replace("_", "-"), list(kinds), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown provider kind {kind!r}; {hint}known kinds: {', '.join(sorted(kinds))}")
    return _load(target, kind)
