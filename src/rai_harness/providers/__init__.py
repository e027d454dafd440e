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

import logging

from rai_harness.errors import ConfigError
from rai_harness.providers.base import Provider, ProviderConfig
from rai_harness.registry import Registry

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

#: Kind -> "module:ConfigClass" (imported on first use), plus plugins.
PROVIDER_KINDS: Registry[type[ProviderConfig]] = Registry(
    "provider kind",
    {
        "openai": "rai_harness.providers.openai_compat:OpenAIConfig",
        "azure-openai": "rai_harness.providers.azure:AzureOpenAIConfig",
        "vertex": "rai_harness.providers.vertex:VertexConfig",
        "bedrock": "rai_harness.providers.bedrock:BedrockConfig",
        "replay": "rai_harness.providers.replay:ReplayConfig",
        "hf-local": "rai_harness.providers.hf_local:HFLocalConfig",
    },
    entry_point_group=ENTRY_POINT_GROUP,
    check=lambda obj: isinstance(obj, type) and issubclass(obj, ProviderConfig),
    expected="a ProviderConfig subclass",
)


def list_kinds() -> list[str]:
    """Every known kind, built-in and plugin, sorted."""
    return PROVIDER_KINDS.names()


def get_config_class(kind: str) -> type[ProviderConfig]:
    """The config class of ``kind``.

    Args:
        kind: A provider kind such as ``openai`` or ``bedrock``.

    Raises:
        ConfigError: for an unknown kind (with a "did you mean" suggestion and the list
            of kinds), or a registered kind whose module cannot be loaded.
    """
    try:
        return PROVIDER_KINDS.get(kind)
    except ImportError as exc:
        module = str(PROVIDER_KINDS.target(kind)).partition(":")[0]
        raise ConfigError(
            f"provider kind {kind!r} cannot be loaded: importing {module} failed ({exc}); "
            "reinstall the package that provides it"
        ) from exc
