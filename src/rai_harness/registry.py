"""One registry type: a name -> lazily imported object map with "did you mean" errors.

Suites (:data:`rai_harness.suites.SUITES`), classifier backends
(:data:`rai_harness.classifiers.pool.BACKENDS`) and provider kinds
(:data:`rai_harness.providers.PROVIDER_KINDS`) are each one :class:`Registry`. A target is
either the object itself or a ``"module:attr"`` string imported on first use (lm-eval's
``api/registry.py``), so ``import rai_harness`` pays for no backend. Installed packages add
names through an entry-point group (Inspect's plugins); a plugin never replaces a built-in
or registered name.

This module sits on the bottom floor: it imports only :mod:`rai_harness.errors`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from rai_harness.errors import ConfigError, did_you_mean

__all__ = ["Registry"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to objects of one kind, imported when first asked for.

    Iterating, ``len``, ``in`` and ``[name]`` see the built-in and registered targets (what
    :meth:`register` added); :meth:`names` adds the entry-point plugins.

    Args:
        what: What a name stands for, as error messages say it ("suite", "provider kind").
        targets: The built-in names and their targets (object or ``"module:attr"``).
        entry_point_group: Entry-point group of plugins (none: no plugins).
        default_attr: Attribute used when a string target names only a module.
        key_path: Config key path an unknown name is reported at (``name``, ``backend``...).
        check: Whether a resolved object is of the right kind; ``expected`` says what that is.
        expected: Description of a right object, for the error when ``check`` fails.
    """

    def __init__(
        self,
        what: str,
        targets: Mapping[str, str | T],
        *,
        entry_point_group: str | None = None,
        default_attr: str | None = None,
        key_path: str | None = None,
        check: Callable[[Any], bool] | None = None,
        expected: str = "",
    ) -> None:
        self.what = what
        self.entry_point_group = entry_point_group
        self._targets: dict[str, str | T] = dict(targets)
        self._default_attr = default_attr
        self._key_path = key_path
        self._check = check
        self._expected = expected
        self._plugins: dict[str, str] | None = None

    # -- the built-in and registered targets --------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __getitem__(self, name: str) -> str | T:
        return self._targets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def copy(self) -> Registry[T]:
        """An independent registry with the same targets and settings (tests swap one in)."""
        twin: Registry[T] = Registry(
            self.what,
            self._targets,
            entry_point_group=self.entry_point_group,
            default_attr=self._default_attr,
            key_path=self._key_path,
            check=self._check,
            expected=self._expected,
        )
        return twin

    # -- registering and looking up ------------------------------------------------------------

    def register(self, name: str, target: str | T, *, replace: bool = False) -> None:
        """Add ``name``: ``target`` is the object or ``"module:attr"``.

        Raises:
            ValueError: ``name`` is taken and ``replace`` is false.
        """
        if name in self._targets and not replace:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._targets[name] = target

    def plugins(self) -> dict[str, str]:
        """Names added by installed packages' entry points (read once; see :meth:`refresh`).

        A plugin with a built-in or registered name is ignored, with a warning.
        """
        if self._plugins is None:
            self._plugins = self._read_entry_points()
        return {k: v for k, v in self._plugins.items() if k not in self._targets}

    def refresh(self) -> None:
        """Read the entry points again on next use (after installing a plugin)."""
        self._plugins = None

    def _read_entry_points(self) -> dict[str, str]:
        if self.entry_point_group is None:
            return {}
        try:
            eps = entry_points(group=self.entry_point_group)
        except Exception as exc:  # broken metadata of another package must not break the built-ins
            log.warning("could not read entry points of group %s: %s", self.entry_point_group, exc)
            return {}
        found: dict[str, str] = {}
        for ep in eps:
            if ep.name in self._targets:
                log.warning("ignoring plugin %s %r (%s): that name is taken", self.what, ep.name, ep.value)
                continue
            found[ep.name] = ep.value
        return found

    def names(self) -> list[str]:
        """Every name, built-in, registered and plugin, sorted."""
        return sorted({*self._targets, *self.plugins()})

    def target(self, name: str) -> str | T:
        """The target registered as ``name``, unresolved.

        Raises:
            ConfigError: Unknown name: the message names it, suggests the closest known
                name and lists them all.
        """
        found = self._targets.get(name)
        if found is None:
            found = self.plugins().get(name)
        if found is None:
            raise self.unknown(name)
        return found

    def unknown(self, name: str) -> ConfigError:
        """The error for an unknown ``name`` (with a "did you mean" and the known names)."""
        known = self.names()
        return ConfigError(
            f"unknown {self.what} '{name}'{did_you_mean(name, known)} (known: {', '.join(known)})",
            key_path=self._key_path,
        )

    def get(self, name: str) -> T:
        """The object registered as ``name``, importing its module on first use.

        Raises:
            ConfigError: Unknown name, a string target that is not ``"module:attr"``, a
                module without that attribute, or an object ``check`` refuses.
            ImportError: The target's module (or one it imports) cannot be imported; callers
                turn it into an install hint for their kind.
        """
        target = self.target(name)
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        attr = attr or self._default_attr or ""
        if not module or not attr:
            raise ConfigError(
                f"{self.what} {name!r} is registered as {target!r}, which is not 'module:attr'",
                key_path=self._key_path,
            )
        found = getattr(importlib.import_module(module), attr, None)
        if found is None or (self._check is not None and not self._check(found)):
            raise ConfigError(
                f"{self.what} {name!r} is registered as {target!r}, which is not {self._expected or 'defined'}",
                key_path=self._key_path,
            )
        resolved: T = found
        return resolved
