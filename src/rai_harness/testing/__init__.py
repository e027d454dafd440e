"""Test doubles: a local OpenAI-compatible server with fault injection.

Imported lazily so that ``python -m rai_harness.testing.server`` does not import the
server module twice (runpy warns about that), and so that importing this package does
not need aiohttp (a dev dependency) until the server is actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rai_harness.testing.server import FakeOpenAIServer, FaultConfig

__all__ = ["FakeOpenAIServer", "FaultConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rai_harness.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
