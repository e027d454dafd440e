"""Shared fixtures: the local fake OpenAI server.

The environment is forced offline before anything imports transformers or datasets:
a test must never reach a model hub.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from collections.abc import Callable, Iterator

import pytest

from rai_harness.testing import FakeOpenAIServer, FaultConfig

_DEFAULTS = FaultConfig().to_dict()


@pytest.fixture(scope="session")
def _shared_fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FaultConfig()) as srv:
        yield srv


@pytest.fixture
def fake_server(_shared_fake_server: FakeOpenAIServer) -> FakeOpenAIServer:
    """A running thread-mode fake server with the default config and zeroed counters.

    One server serves the whole session (starting one per test would dominate short
    tests); each test gets it reset to defaults.
    """
    _shared_fake_server.configure(**_DEFAULTS)
    _shared_fake_server.reset()
    return _shared_fake_server


@pytest.fixture
def fake_server_factory() -> Iterator[Callable[..., FakeOpenAIServer]]:
    """Start extra servers: ``factory(FaultConfig(...), subprocess=False)``; all stopped at teardown."""
    started: list[FakeOpenAIServer] = []

    def factory(config: FaultConfig | None = None, *, subprocess: bool = False) -> FakeOpenAIServer:
        srv = FakeOpenAIServer(config or FaultConfig(), subprocess=subprocess).start()
        started.append(srv)
        return srv

    yield factory
    for srv in reversed(started):
        srv.stop()
