"""Lazy package exports (PEP 562): a public name is imported from its module on first use.

The top-level package and the ``load``, ``record`` and ``run`` packages list their public names
and the modules that define them, so ``import rai_harness.run`` (in a worker process, say) does
not import every module the package can reach: a worker needs neither scipy nor the SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: MutableMapping[str, Any], targets: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module-level ``__getattr__`` and ``__dir__`` for lazily imported names.

    Args:
        namespace: The package's ``globals()``; a loaded name is cached in it, so the lookup
            runs once per name.
        targets: Public name -> the module (dotted path) that defines it.

    Returns:
        ``(__getattr__, __dir__)``, to assign at the package's top level.
    """

    def __getattr__(name: str) -> Any:
        module = targets.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return __getattr__, __dir__
