"""The runner: concurrent calls to one provider with limits, retries, timeouts and the journal.

:func:`generate_calls` is the generate stage as a plain coroutine over a batch of
requests for one provider: no hidden global state, its inputs are picklable values, so
a distributed engine can run it on another machine over a shard of the requests.

Policy, in order, for each request:

1. Reuse the journaled record when the call key is already there (successes always;
   failures only when ``retry_failed`` is false).
2. Wait for the call's turn: a concurrency slot (``ProviderConfig.concurrency``), or, under
   a load profile (``load:`` of the run config, :mod:`rai_harness.load`), its scheduled start
   time and a slot under the profile's in-flight cap; then, when ``rpm`` is set, for the rate
   limiter (requests start at least ``60/rpm`` s apart).
3. Attempt the call under ``asyncio.timeout(timeout_s)``. Retry on retryable errors
   (408/409/429/5xx, timeouts, dropped connections, malformed responses) up to
   ``max_retries`` times. The wait is the server's ``Retry-After``/``retry-after-ms``
   when given (capped by ``max_retry_after_s``), else exponential backoff with "equal
   jitter": ``d/2 + U(0, d/2)`` with ``d = min(backoff_max_s, backoff_base_s * 2**n)``;
   jitter spreads the retries of many concurrent callers so they do not hit the server
   in lock-step.
4. Journal the final record (success or failure) at once, then report it.

A call that fails for good is recorded with its error type, message and attempts;
nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rai_harness.errors import ProviderError, ProviderTimeoutError
from rai_harness.load import Dispatch, LoadProfile, StagePlan, run_stage
from rai_harness.pricing import ResolvedPrice, token_cost
from rai_harness.providers.base import Provider
from rai_harness.record.calls import CallError, CallRecord
from rai_harness.run.journal import Journal, call_key
from rai_harness.types import ChatRequest, Generation
from rai_harness.validation import repair_surrogates

if TYPE_CHECKING:
    from rai_harness.config import RunnerSettings
    from rai_harness.providers.base import ProviderConfig

__all__ = [
    "LoopLagMonitor",
    "RateLimiter",
    "RetryPolicy",
    "backoff_delay",
    "frozen_heap",
    "generate_calls",
    "reuse_journaled",
    "run_profile",
    "scrub",
    "with_schedule",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the runner retries; see the module docstring."""

    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    timeout_s: float = 120.0

    @classmethod
    def for_provider(cls, settings: RunnerSettings, provider: ProviderConfig) -> RetryPolicy:
        """The run's backoff settings with the provider's (or judge's) own retry count and timeout."""
        return cls(
            max_retries=provider.max_retries,
            backoff_base_s=settings.backoff_base_s,
            backoff_max_s=settings.backoff_max_s,
            max_retry_after_s=settings.max_retry_after_s,
            timeout_s=provider.timeout_s,
        )


def backoff_delay(
    attempt: int, policy: RetryPolicy, retry_after_s: float | None, rng: random.Random
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry)."""
    if retry_after_s is not None and retry_after_s >= 0:
        # The server knows when it will have capacity: honour it (bounded, so a bogus
        # header cannot stall a run for hours). No jitter below the asked-for time.
        return min(retry_after_s, policy.max_retry_after_s)
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * (2 ** (attempt - 1)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class RateLimiter:
    """Spaces request starts at least ``60/rpm`` seconds apart (a leaky bucket of size 1).

    Smooth spacing rather than bursts of ``rpm`` at each minute's start, because vendor
    limits are enforced on sliding windows and bursts are what trigger 429s.
    """

    def __init__(self, rpm: float | None) -> None:
        self._interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until the next request may start."""
        if self._interval <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished, without swallowing the caller's own cancellation.

    ``task.cancel(); with suppress(CancelledError): await task`` also swallows a cancellation
    of the *caller* that lands during the wait: a Ctrl-C or SIGTERM that reached a run while it
    stopped its lag monitor was lost, and the run went on to completion. ``asyncio.wait``
    never raises the task's outcome, only the caller's own ``CancelledError``.
    """
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r while being cancelled", task.get_name(), task.exception())


class LoopLagMonitor:
    """Measures event-loop lag: how late a 10 ms sleep wakes up.

    Timings the harness records (TTFT, latency) are taken on the event loop, so when the
    loop is busy they are late by about this lag; the run record reports it so a reader
    knows how far to trust sub-10 ms differences.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.samples_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.samples_ms.append(max(0.0, (time.perf_counter() - start - self.interval_s) * 1000.0))

    def start(self) -> None:
        """Start sampling on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            await cancel_and_wait(self._task)

    def summary(self) -> dict[str, float | int]:
        """p50/p95/p99/max lag in milliseconds and the sample count."""
        if not self.samples_ms:
            return {"samples": 0}
        data = sorted(self.samples_ms)
        q = statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else [data[0]] * 99
        return {"samples": len(data), "p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98], "max_ms": data[-1]}


#: Open :func:`frozen_heap` blocks in this process (the heap is unfrozen when the last one ends).
_frozen_depth = 0


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects alive at the start out of the cyclic GC's passes while calls run.

    Why: once the HTTP stack and the SDK are imported the heap holds about 10^5 objects
    (the openai SDK's types alone about 60k), and a full (generation 2) collection walks all
    of them: 20-65 ms on this project's 2-core machine, 100-300 ms when it is loaded. It
    runs on the event loop's thread, so every call in flight is stalled by it and every
    TTFT measured across it is late by as much: the benchmark's unexplained 60 ms round
    (``benchmarks/runner_overhead.py``). ``gc.freeze()`` moves what exists now (modules,
    classes, the provider) to a permanent generation the collector skips; objects made
    during the calls are collected as usual. Nothing leaks: the heap is unfrozen when the
    outermost block ends (blocks nest: providers run side by side), and garbage frozen with
    it is collected by a later pass. ``freeze``/``unfreeze`` only splice lists, O(1).
    """
    global _frozen_depth
    if _frozen_depth == 0:
        gc.freeze()
    _frozen_depth += 1
    try:
        yield
    finally:
        _frozen_depth -= 1
        if _frozen_depth == 0:
            gc.unfreeze()


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret value in ``text`` by ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


OnRecord = Callable[[CallRecord], None]


def _valid_text(text: str | None) -> str | None:
    """A provider's string with lone surrogates replaced by U+FFFD.

    A ``\\ud800`` escape in a provider's JSON decodes to a lone surrogate, which no UTF-8
    writer (the journal, ``samples.jsonl``, the report) can encode: kept, it would fail the
    run's writes. Valid text (surrogate pairs included) is returned unchanged.
    """
    return text if text is None else repair_surrogates(text)[0]


def _success_record(
    key: str,
    provider_id: str,
    request: ChatRequest,
    gen: Generation,
    attempts: int,
    waited: float,
    started: float,
    price: ResolvedPrice | None,
) -> CallRecord:
    cost = token_cost(price, gen.usage.prompt_tokens, gen.usage.completion_tokens) if price else None
    return CallRecord(
        key=key,
        provider_id=provider_id,
        sample_id=request.sample_id,
        repeat=request.repeat,
        messages=request.messages_as_dicts(),
        params=request.params.to_dict(),
        status="ok",
        output=_valid_text(gen.text),
        prompt_tokens=gen.usage.prompt_tokens,
        completion_tokens=gen.usage.completion_tokens,
        tokens_estimated=gen.usage.estimated,
        ttft_s=gen.ttft_s,
        latency_s=gen.latency_s,
        connect_s=gen.connect_s,
        output_tokens_per_s=gen.output_tokens_per_s,
        finish_reason=_valid_text(gen.finish_reason),
        model=_valid_text(gen.model),
        attempts=attempts,
        retry_wait_s=waited,
        started_at=started,
        finished_at=time.time(),
        cost_usd=cost,
        metadata=dict(request.metadata),
        guard=dict(gen.guard) if gen.guard is not None else None,
    )


def _failure_record(
    key: str,
    provider_id: str,
    request: ChatRequest,
    err: ProviderError,
    attempts: int,
    waited: float,
    started: float,
    secrets: Sequence[str],
) -> CallRecord:
    return CallRecord(
        key=key,
        provider_id=provider_id,
        sample_id=request.sample_id,
        repeat=request.repeat,
        messages=request.messages_as_dicts(),
        params=request.params.to_dict(),
        status="error",
        output=None,
        prompt_tokens=None,
        completion_tokens=None,
        tokens_estimated=False,
        ttft_s=None,
        latency_s=None,
        output_tokens_per_s=None,
        finish_reason=None,
        model=None,
        attempts=attempts,
        retry_wait_s=waited,
        started_at=started,
        finished_at=time.time(),
        cost_usd=None,
        error=CallError(
            type=err.error_type,
            message=repair_surrogates(scrub(str(err), secrets)[:2000])[0],
            status_code=err.status_code,
            retryable=err.retryable,
        ),
        metadata=dict(request.metadata),
    )


async def _attempt(provider: Provider, request: ChatRequest, timeout_s: float) -> Generation:
    try:
        if sys.version_info >= (3, 11):
            # asyncio.timeout cancels the call in place; wait_for would wrap it in an extra
            # task per attempt (measurable CPU at thousands of calls on a busy event loop).
            async with asyncio.timeout(timeout_s):
                return await provider.generate(request)
        return await asyncio.wait_for(provider.generate(request), timeout=timeout_s)
    except asyncio.TimeoutError as exc:
        raise ProviderTimeoutError(f"no complete response within {timeout_s:g} s") from exc


async def call_with_retries(
    provider: Provider,
    request: ChatRequest,
    *,
    key: str,
    provider_id: str,
    policy: RetryPolicy,
    limiter: RateLimiter,
    price: ResolvedPrice | None,
    secrets: Sequence[str] = (),
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> CallRecord:
    """Make one call with retries and return its final record (never raises ProviderError)."""
    rng = rng or random.Random()
    started = time.time()
    waited = 0.0
    attempts = 0
    while True:
        attempts += 1
        await limiter.acquire()
        try:
            gen = await _attempt(provider, request, policy.timeout_s)
        except ProviderError as err:
            error = err
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an adapter bug must not kill the run: record it
            log.exception("unexpected error from provider %s", provider_id)
            error = ProviderError(
                scrub(f"{type(exc).__name__}: {exc}", secrets), retryable=False, error_type="internal_error"
            )
        else:
            return _success_record(key, provider_id, request, gen, attempts, waited, started, price)
        if not error.retryable or attempts > policy.max_retries:
            return _failure_record(key, provider_id, request, error, attempts, waited, started, secrets)
        delay = backoff_delay(attempts, policy, error.retry_after_s, rng)
        log.debug("%s: %s on attempt %d; retrying in %.2f s", provider_id, error.error_type, attempts, delay)
        waited += delay
        await sleep(delay)


def with_schedule(record: CallRecord, dispatch: Dispatch) -> CallRecord:
    """``record`` with its load schedule (``CallRecord.load``), taken as the call finishes."""
    return dataclasses.replace(record, load=dispatch.info(dispatch.elapsed()))


def reuse_journaled(
    stored: Mapping[str, Any] | None, request: ChatRequest, retry_failed: bool
) -> CallRecord | None:
    """The journaled record to reuse for ``request``, or ``None`` when the call must be made.

    Successes are always reused; failures only when ``retry_failed`` is false.
    """
    if stored is None or (stored.get("status") != "ok" and retry_failed):
        return None
    # The key ignores ids, so the stored call may have been made for another sample with
    # identical messages: take the identity from this request.
    return CallRecord.from_dict(
        {**stored, "cached": True, "sample_id": request.sample_id, "metadata": dict(request.metadata)}
    )


async def generate_calls(
    provider: Provider,
    requests: Sequence[ChatRequest],
    *,
    provider_id: str,
    provider_identity: Mapping[str, Any],
    concurrency: int,
    rpm: float | None = None,
    policy: RetryPolicy | None = None,
    journal: Journal | None = None,
    price: ResolvedPrice | None = None,
    secrets: Sequence[str] = (),
    retry_failed: bool = True,
    on_record: OnRecord | None = None,
    seed: int = 0,
    load: LoadProfile | None = None,
) -> list[CallRecord]:
    """Run ``requests`` against one provider; return one record per call made, in request order.

    Args:
        provider: The adapter (built from its config).
        requests: The calls to make, in schedule order (under a sweep:
            :func:`rai_harness.load.requests_for`). Repeats of a prompt are separate requests.
        provider_id: Name used in records.
        provider_identity: ``ProviderConfig.cache_identity()`` (part of each call key).
        concurrency: Calls in flight at once (the ``concurrency`` profile's default).
        rpm: Optional requests-per-minute cap.
        policy: Retry and timeout settings.
        journal: Where to reuse and write records; ``None`` disables both.
        price: Per-token price for cost per call (hourly prices are applied later).
        secrets: Values to scrub from error messages.
        retry_failed: Whether a journaled failure is called again.
        on_record: Called with each final record (progress bars), cached ones included.
        seed: Seeds the backoff jitter (and, unless the profile sets its own, Poisson arrivals)
            so a run's timing is reproducible.
        load: When calls start (see :mod:`rai_harness.load`); ``None``: fixed ``concurrency``,
            and records carry no schedule. With a profile every call made records its stage
            and schedule in ``CallRecord.load``. A sweep stops after its first saturated stage:
            the calls of later stages are not made, and have no record.
    """
    policy = policy or RetryPolicy()
    limiter = RateLimiter(rpm)
    rng = random.Random(seed)
    results: list[CallRecord | None] = [None] * len(requests)

    keys = [call_key(provider_identity, r) for r in requests]
    # One query for the whole batch instead of one per request.
    journaled = journal.get_many(keys) if journal is not None else {}

    def reuse(index: int) -> CallRecord | None:
        """The journaled record of a call, when it can stand for calling again."""
        return reuse_journaled(journaled.get(keys[index]), requests[index], retry_failed)

    def finish(index: int, record: CallRecord) -> CallRecord:
        results[index] = record
        if on_record:
            on_record(record)
        return record

    async def call(index: int, dispatch: Dispatch) -> CallRecord:
        request = requests[index]
        record = await call_with_retries(
            provider,
            request,
            key=keys[index],
            provider_id=provider_id,
            policy=policy,
            limiter=limiter,
            price=price,
            secrets=secrets,
            rng=rng,
        )
        if load is not None:
            record = with_schedule(record, dispatch)
        if journal is not None:
            journal.put(
                keys[index], provider_id, request.sample_id, request.repeat, record.status, record.to_dict()
            )
        return finish(index, record)

    async def run(stage: StagePlan, pending: list[int]) -> list[int]:
        made = await run_stage(stage, pending, call)
        return pending[len(made) :]

    with frozen_heap():
        await run_profile(
            load or LoadProfile(profile="concurrency", concurrency=concurrency),
            results,
            concurrency=concurrency,
            seed=seed,
            provider_id=provider_id,
            reuse=reuse,
            finish=finish,
            run=run,
        )
    return [r for r in results if r is not None]


#: Runs one stage's calls (indices into the requests) and returns the indices it did not
#: start (a warm-up by duration that ran out); one process's event loop or worker shards.
StageCalls = Callable[[StagePlan, list[int]], Awaitable[list[int]]]


async def run_profile(
    profile: LoadProfile,
    results: list[CallRecord | None],
    *,
    concurrency: int,
    seed: int,
    provider_id: str,
    reuse: Callable[[int], CallRecord | None],
    finish: Callable[[int, CallRecord], object],
    run: StageCalls,
) -> None:
    """Walk a load profile's stages over the calls: journal reuse, stage by stage, the sweep's stop rule.

    The one stage loop of the single-loop runner (:func:`generate_calls`) and of worker shards
    (:func:`rai_harness.run.shards.generate_calls_sharded`): they differ only in ``run``.

    Args:
        profile: The load profile.
        results: One slot per call, in schedule order; filled by ``finish`` (and by ``run``'s
            calls, which must call ``finish`` with each record).
        concurrency: The provider's concurrency (the ``concurrency`` profile's default).
        seed: The run's seed (Poisson arrivals when the profile sets none).
        provider_id: For the log line of the sweep's stop.
        reuse: The journaled record of a call that can stand for calling again, or ``None``.
        finish: Stores a final record in ``results`` (and reports it).
        run: Makes a stage's pending calls; returns the indices it did not start.
    """
    rule = profile.stop_rule
    position = 0
    total = len(results)
    for stage in profile.stage_plans(concurrency, seed=seed):
        start = position
        end = total if stage.requests is None else min(total, position + stage.requests)
        pending: list[int] = []
        for index in range(start, end):
            if results[index] is not None:
                continue  # reused while a warm-up by duration was running
            record = reuse(index)
            if record is None:
                pending.append(index)
            else:
                finish(index, record)
        unstarted = await run(stage, pending)
        # A warm-up by duration stops early: the calls it did not start go to the next stage.
        position = min(unstarted) if unstarted else end
        if profile.profile == "sweep" and not stage.warmup:
            # Imported here: the summaries pull the run record's schema and scipy, which a worker
            # process (rai_harness.run.shards imports this module) never needs.
            from rai_harness.load.summary import stop_reason, summarize_stage

            mine = [
                r
                for r in results[start:position]
                if r is not None and r.load is not None and r.load.get("stage") == stage.index
            ]
            reason = stop_reason(summarize_stage(mine), rule) if mine else None
            if reason is not None:
                log.info("%s: sweep stops after %s req/s: %s", provider_id, stage.rate, reason)
                break
        if position >= total:
            break
