"""Calls sharded over worker processes: one journal writer, and kill -9 of a worker loses only in-flight calls."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from rai_harness.config import parse_run_config
from rai_harness.errors import ConfigError
from rai_harness.providers.openai_compat import OpenAIConfig
from rai_harness.record import CallRecord
from rai_harness.run.journal import Journal
from rai_harness.run.runner import RetryPolicy
from rai_harness.run.shards import generate_calls_sharded
from rai_harness.types import ChatRequest, GenerationParams


def reqs(n: int) -> list[ChatRequest]:
    params = GenerationParams(max_tokens=8)
    return [ChatRequest.from_prompt(f"s{i}", f"shard prompt {i}", params=params) for i in range(n)]


def config(base_url: str, concurrency: int = 4) -> OpenAIConfig:
    return OpenAIConfig(
        kind="openai", model="m", base_url=base_url, api_key_env=None, concurrency=concurrency, workers=2
    )


async def test_kill_9_of_a_worker_loses_only_its_in_flight_calls(fake_server, tmp_path: Path) -> None:
    # One test for the whole life cycle: each worker is a fresh interpreter (seconds to start on
    # a busy machine), so the suite starts as few as it can.
    fake_server.configure(ttft_s=0.15)  # calls take a while, so some are in flight at the kill
    cfg = config(fake_server.base_url, concurrency=4)
    requests = reqs(40)
    journal = Journal(tmp_path / "j.sqlite")
    pids: list[int] = []
    killed: list[int] = []

    def on_workers(current: list[int]) -> None:
        pids[:] = current

    def on_record(record: CallRecord) -> None:
        if len(killed) == 0 and journal.count("ok") >= 6:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    records = await generate_calls_sharded(
        cfg,
        requests,
        workers=2,
        provider_id="p",
        provider_identity=cfg.cache_identity(),
        concurrency=4,
        policy=RetryPolicy(timeout_s=20),
        journal=journal,
        on_record=on_record,
        on_workers=on_workers,
    )
    assert killed and killed[0] not in pids and os.getpid() not in pids  # replaced, other processes
    assert [r.sample_id for r in records] == [f"s{i}" for i in range(40)]  # every call, in order
    assert all(r.ok and r.output for r in records)
    assert journal.count("ok") == 40  # the parent is the one journal writer
    # Each worker has 2 calls in flight: at most those were lost and made again.
    made = len(fake_server.stats()["requests"])
    assert 40 <= made <= 40 + 2, made
    # A rerun reuses the journal: no process is started, no call is made.
    fake_server.reset()
    again = await generate_calls_sharded(
        cfg,
        requests,
        workers=2,
        provider_id="p",
        provider_identity=cfg.cache_identity(),
        concurrency=4,
        journal=journal,
        on_workers=on_workers,
    )
    journal.close()
    assert all(r.cached for r in again) and fake_server.stats()["requests"] == []


@pytest.mark.parametrize(
    ("provider", "load", "fragment"),
    [
        ({"workers": 2, "guard": {"policy": "g.yaml"}}, None, "does not support a guard"),
        ({"workers": 2}, {"profile": "constant", "rate": 5}, "no load profile yet"),
        ({"workers": 0}, None, "greater than or equal to 1"),
    ],
)
def test_unsupported_worker_setups_are_refused(provider: dict, load: dict | None, fragment: str) -> None:
    data = {
        "providers": [{"kind": "openai", "model": "m", "api_key_env": None, **provider}],
        "prompts": {"items": ["a"]},
    }
    if load:
        data["load"] = load
    with pytest.raises(ConfigError, match=fragment):
        parse_run_config(data, file="run.yaml")


def test_a_lost_workers_call_is_a_retryable_error_record() -> None:
    from rai_harness.run.shards import _lost_record

    request = ChatRequest.from_prompt("s1", "hello")
    record = _lost_record("k1", "p1", request, deaths=3, exitcode=-9)
    assert (record.key, record.provider_id, record.sample_id, record.status) == ("k1", "p1", "s1", "error")
    assert record.output is None and record.attempts == 0 and record.cost_usd is None
    assert record.error is not None and record.error.type == "worker_lost" and record.error.retryable is True
    assert "died 3 times" in record.error.message and "-9" in record.error.message
