"""Test doubles: a local OpenAI-compatible server with fault injection.

Imported lazily so that ``python -m rai_harness.testing.server`` does not import the
server module twice (runpy warns about that), and so that importing this package does
not need aiohttp (a dev dependency) until the server is actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rai_harness.lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from rai_harness.testing.server import FakeOpenAIServer, FaultConfig

__all__ = ["FakeOpenAIServer", "FaultConfig"]

__getattr__, __dir__ = _lazy_exports(globals(), dict.fromkeys(__all__, "rai_harness.testing.server"))
