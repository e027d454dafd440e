"""Runner policy: retries, Retry-After, backoff, timeouts, failures recorded, journal reuse."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from rai_harness.errors import ProviderError
from rai_harness.pricing import ResolvedPrice
from rai_harness.run.journal import Journal, call_key
from rai_harness.run.runner import (
    LoopLagMonitor,
    RateLimiter,
    RetryPolicy,
    backoff_delay,
    cancel_and_wait,
    generate_calls,
    scrub,
)
from rai_harness.types import ChatRequest, Generation, Usage


class Scripted:
    """A provider whose failures are scripted per (sample_id, attempt number)."""

    def __init__(self, script=None, delay=0.0, hang_on=()):
        self.script = script or {}
        self.delay = delay
        self.hang_on = set(hang_on)
        self.calls: dict[str, int] = {}
        self.call_times: dict[str, list[float]] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    async def generate(self, request: ChatRequest) -> Generation:
        n = self.calls.get(request.sample_id, 0) + 1
        self.calls[request.sample_id] = n
        self.call_times.setdefault(request.sample_id, []).append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if request.sample_id in self.hang_on:
                await asyncio.sleep(10)
            await asyncio.sleep(self.delay)
            fault = self.script.get((request.sample_id, n))
            if fault is not None:
                raise fault
            text = f"out {request.sample_id} r{request.repeat}"
            return Generation(text=text, usage=Usage(3, 3), latency_s=self.delay, ttft_s=self.delay / 2)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        pass


def reqs(n, repeats=1):
    return [
        ChatRequest.from_prompt(f"s{i}", f"prompt {i}", repeat=k) for i in range(n) for k in range(repeats)
    ]


FAST = RetryPolicy(max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=1.0)


async def test_all_succeed_in_order_and_concurrency_is_bounded():
    provider = Scripted(delay=0.01)
    records = await generate_calls(
        provider, reqs(40), provider_id="p", provider_identity={"k": 1}, concurrency=5, policy=FAST
    )
    assert [r.sample_id for r in records] == [f"s{i}" for i in range(40)]
    assert all(r.ok and r.attempts == 1 for r in records)
    assert provider.max_in_flight == 5


async def test_retryable_error_is_retried_then_succeeds():
    provider = Scripted({("s0", 1): ProviderError("busy", retryable=True, status_code=503)})
    (record,) = await generate_calls(
        provider, reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=FAST
    )
    assert record.ok and record.attempts == 2 and record.retry_wait_s > 0


async def test_non_retryable_error_is_recorded_not_retried():
    provider = Scripted(
        {("s0", 1): ProviderError("bad key", retryable=False, status_code=401, error_type="auth")}
    )
    (record,) = await generate_calls(
        provider, reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=FAST
    )
    assert not record.ok and record.attempts == 1
    assert record.error is not None and record.error.type == "auth" and record.error.status_code == 401


async def test_exhausted_retries_recorded_with_attempts():
    err = ProviderError("overloaded", retryable=True, status_code=529, error_type="server_error")
    provider = Scripted({("s0", n): err for n in range(1, 10)})
    (record,) = await generate_calls(
        provider, reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=FAST
    )
    assert not record.ok and record.attempts == FAST.max_retries + 1
    assert record.output is None and record.error is not None and record.error.type == "server_error"


async def test_retry_after_is_honoured():
    provider = Scripted(
        {("s0", 1): ProviderError("slow down", retryable=True, status_code=429, retry_after_s=0.3)}
    )
    (record,) = await generate_calls(
        provider, reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=FAST
    )
    first, second = provider.call_times["s0"]
    assert second - first >= 0.3
    assert record.retry_wait_s == pytest.approx(0.3)


async def test_timeout_is_retryable_and_recorded():
    provider = Scripted(hang_on={"s0"})
    policy = RetryPolicy(max_retries=1, backoff_base_s=0.01, backoff_max_s=0.01, timeout_s=0.05)
    (record,) = await generate_calls(
        provider, reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=policy
    )
    assert (
        not record.ok and record.error is not None and record.error.type == "timeout" and record.attempts == 2
    )


async def test_unexpected_exception_is_recorded_as_internal_error():
    provider = Scripted({("s0", 1): KeyError("boom")})
    (record,) = await generate_calls(
        provider, reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=FAST
    )
    assert not record.ok and record.error is not None and record.error.type == "internal_error"


async def test_secrets_are_scrubbed_from_error_messages():
    provider = Scripted({("s0", 1): ProviderError("key sk-SECRET-1 rejected", retryable=False)})
    (record,) = await generate_calls(
        provider,
        reqs(1),
        provider_id="p",
        provider_identity={},
        concurrency=1,
        policy=FAST,
        secrets=["sk-SECRET-1"],
    )
    assert (
        record.error is not None
        and "sk-SECRET-1" not in record.error.message
        and "***" in record.error.message
    )
    assert scrub("a b a", ["a"]) == "*** b ***"


async def test_journal_reuse_makes_only_missing_calls(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    first = Scripted()
    await generate_calls(
        first,
        reqs(5),
        provider_id="p",
        provider_identity={"m": 1},
        concurrency=2,
        policy=FAST,
        journal=journal,
    )
    second = Scripted()
    records = await generate_calls(
        second,
        reqs(8),
        provider_id="p",
        provider_identity={"m": 1},
        concurrency=2,
        policy=FAST,
        journal=journal,
    )
    assert sorted(second.calls) == ["s5", "s6", "s7"]
    assert [r.cached for r in records] == [True] * 5 + [False] * 3
    journal.close()


async def test_journal_failure_is_retried_on_resume_by_default(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    bad = Scripted({("s0", 1): ProviderError("no", retryable=False)})
    await generate_calls(
        bad, reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=FAST, journal=journal
    )
    assert journal.count("error") == 1
    again = Scripted()
    (record,) = await generate_calls(
        again, reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=FAST, journal=journal
    )
    assert record.ok and journal.count("error") == 0
    kept = Scripted()
    await generate_calls(
        kept,
        reqs(1),
        provider_id="p",
        provider_identity={},
        concurrency=1,
        policy=FAST,
        journal=journal,
        retry_failed=False,
    )
    assert kept.calls == {}
    journal.close()


def test_call_key_changes_with_identity_params_and_repeat():
    base = ChatRequest.from_prompt("s", "hi")
    k = call_key({"model": "a"}, base)
    assert k == call_key({"model": "a"}, ChatRequest.from_prompt("other-id", "hi"))  # id is not content
    assert k != call_key({"model": "b"}, base)
    assert k != call_key({"model": "a"}, ChatRequest.from_prompt("s", "hi", repeat=1))


def test_backoff_is_exponential_with_bounded_jitter():
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=8.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        for _ in range(50):
            d = backoff_delay(attempt, policy, None, rng)
            assert ceiling / 2 <= d <= ceiling
    assert backoff_delay(1, policy, 5.0, rng) == 5.0
    assert backoff_delay(1, RetryPolicy(max_retry_after_s=2.0), 500.0, rng) == 2.0


async def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(rpm=600)  # one every 0.1 s
    t0 = time.monotonic()
    for _ in range(4):
        await limiter.acquire()
    assert time.monotonic() - t0 >= 0.29


async def test_cost_per_call_from_token_price():
    price = ResolvedPrice(
        input_per_1m=1.0, output_per_1m=2.0, usd_per_hour=None, source="t", table_version=None
    )
    (record,) = await generate_calls(
        Scripted(), reqs(1), provider_id="p", provider_identity={}, concurrency=1, policy=FAST, price=price
    )
    assert record.cost_usd == pytest.approx((3 * 1.0 + 3 * 2.0) / 1e6)


async def test_cancel_and_wait_keeps_the_callers_own_cancellation():
    # A Ctrl-C (or SIGTERM) that lands while a run stops its lag monitor cancels the run's task
    # during that wait; `suppress(CancelledError): await task` swallowed it and the run went on.
    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # cleanup that takes a while
            raise

    async def caller(task: asyncio.Task[None]) -> str:
        await cancel_and_wait(task)
        return "went on"

    stopped = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    outer = asyncio.create_task(caller(stopped))
    await asyncio.sleep(0.05)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    await asyncio.wait({stopped})
    # Not cancelled itself, the caller returns once the task has finished, whatever its outcome.
    failing = asyncio.create_task(asyncio.sleep(10))
    assert await caller(failing) == "went on" and failing.cancelled()


async def test_loop_lag_monitor_reports_percentiles():
    monitor = LoopLagMonitor(interval_s=0.005)
    monitor.start()
    await asyncio.sleep(0.1)
    await monitor.stop()
    summary = monitor.summary()
    assert summary["samples"] > 5 and summary["p99_ms"] >= summary["p50_ms"] >= 0
