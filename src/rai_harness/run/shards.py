"""Calls sharded over worker processes: more than one event loop when one is not enough.

On a small machine one asyncio loop saturates near a few hundred calls per second (the
HTTP client and JSON parsing cost a millisecond or more of CPU per call), and once it does
every timing taken on it is late. :func:`generate_calls_sharded` splits a provider's calls
over ``workers`` processes; each builds its own provider (own event loop, own HTTP client)
and runs :func:`~rai_harness.run.runner.generate_calls` over its shard with
``concurrency / workers`` calls in flight. Records come back to the parent over a queue and
the parent is the one journal writer (SQLite stays single-writer; the journal is never
opened by a worker).

Failure model: a worker that dies (``kill -9``, out of memory) loses only the calls it had in
flight. The parent notices its exit, and starts a replacement over that shard's calls that
have not come back (the lost in-flight calls are made again, nothing else repeats); after
``MAX_RESTARTS`` deaths of one shard, its remaining calls are recorded as failed
(``worker_lost``, retryable, so a resumed run makes them again). A kill of the parent loses
the calls in flight in every worker, as with one process: everything journaled is reused.

Scope: fixed concurrency (no rate profile yet: a schedule would have to be split across
processes on a shared clock), providers without a guard, and not ``hf-local`` (each worker
would load its own copy of the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import queue as queue_mod
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rai_harness.errors import ConfigError, ProviderError
from rai_harness.pricing import ResolvedPrice
from rai_harness.providers.base import ProviderConfig
from rai_harness.record.calls import CallRecord
from rai_harness.run.journal import Journal, call_key
from rai_harness.run.runner import OnRecord, RetryPolicy, _failure_record, generate_calls
from rai_harness.types import ChatRequest

__all__ = ["MAX_RESTARTS", "check_shardable", "generate_calls_sharded"]

log = logging.getLogger(__name__)

#: Replacement workers started for one shard before its remaining calls are recorded as failed.
MAX_RESTARTS = 3
#: Seconds the parent waits on the queue before checking whether workers are alive.
_POLL_S = 0.1


def check_shardable(config: ProviderConfig) -> None:
    """Raise :class:`ConfigError` when ``config`` cannot run in worker processes."""
    if config.guard is not None:
        raise ConfigError(
            f"provider {config.provider_id!r}: `workers` does not support a guard yet; remove one of them"
        )
    if config.kind == "hf-local":
        raise ConfigError(
            f"provider {config.provider_id!r}: `workers` would load the local model once per process; "
            "use `max_batch_size` to raise hf-local throughput instead"
        )


def _worker_main(
    config: ProviderConfig,
    shard: list[tuple[int, ChatRequest]],
    options: dict[str, Any],
    out: Any,
) -> None:
    """A worker process: its own loop and provider; each final record goes to ``out``."""
    by_key: dict[str, list[int]] = {}
    for index, request in shard:
        by_key.setdefault(call_key(options["provider_identity"], request), []).append(index)

    def send(record: CallRecord) -> None:
        indices = by_key.get(record.key)
        if indices:
            out.put((indices.pop(0), record.to_dict()))

    async def main() -> None:
        provider = config.build()
        try:
            await generate_calls(
                provider,
                [r for _, r in shard],
                provider_id=options["provider_id"],
                provider_identity=options["provider_identity"],
                concurrency=options["concurrency"],
                rpm=options["rpm"],
                policy=options["policy"],
                price=options["price"],
                secrets=options["secrets"],
                on_record=send,
                seed=options["seed"],
            )
        finally:
            with contextlib.suppress(Exception):
                await provider.aclose()

    asyncio.run(main())


def _lost_record(
    key: str, provider_id: str, request: ChatRequest, deaths: int, exitcode: int | None
) -> CallRecord:
    """The failed record of a call whose worker died too often: retryable, so a resume makes it again."""
    err = ProviderError(
        f"the worker process of this call died {deaths} times (last exit code {exitcode})",
        retryable=True,
        error_type="worker_lost",
    )
    return _failure_record(
        key, provider_id, request, err, attempts=0, waited=0.0, started=time.time(), secrets=()
    )


async def generate_calls_sharded(
    config: ProviderConfig,
    requests: Sequence[ChatRequest],
    *,
    workers: int,
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
    on_workers: Callable[[list[int]], None] | None = None,
) -> list[CallRecord]:
    """Like :func:`~rai_harness.run.runner.generate_calls`, over ``workers`` processes.

    Args:
        config: The provider's config (each worker builds its own provider from it).
        requests: The calls to make.
        workers: Worker processes (each with ``ceil(concurrency / workers)`` calls in flight
            and, when ``rpm`` is set, ``rpm / workers``).
        provider_id: Name used in records.
        provider_identity: ``ProviderConfig.cache_identity()`` (part of each call key).
        concurrency: Calls in flight at once, over all workers.
        rpm: Optional requests-per-minute cap, over all workers.
        policy: Retry and timeout settings (each worker applies them to its calls).
        journal: Where to reuse and write records (written by this process only).
        price: Per-token price for cost per call.
        secrets: Values to scrub from error messages.
        retry_failed: Whether a journaled failure is called again.
        on_record: Called in this process with each final record, cached ones included.
        seed: Seeds the backoff jitter.
        on_workers: Called with the worker process ids whenever they change (monitoring, tests).

    Returns:
        One record per request, in request order.
    """
    check_shardable(config)
    policy = policy or RetryPolicy()
    keys = [call_key(provider_identity, r) for r in requests]
    results: list[CallRecord | None] = [None] * len(requests)
    journaled = journal.get_many(keys) if journal is not None else {}
    pending: list[int] = []
    for i, request in enumerate(requests):
        stored = journaled.get(keys[i])
        if stored is not None and (stored.get("status") == "ok" or not retry_failed):
            record = CallRecord.from_dict(
                {**stored, "cached": True, "sample_id": request.sample_id, "metadata": dict(request.metadata)}
            )
            results[i] = record
            if on_record:
                on_record(record)
        else:
            pending.append(i)
    workers = max(1, min(workers, len(pending)))
    if not pending:
        return [r for r in results if r is not None]

    options = {
        "provider_id": provider_id,
        "provider_identity": dict(provider_identity),
        "concurrency": max(1, -(-concurrency // workers)),
        "rpm": rpm / workers if rpm else None,
        "policy": policy,
        "price": price,
        "secrets": list(secrets),
        "seed": seed,
    }
    # spawn: a fresh interpreter per worker (no inherited event loop, threads or SQLite handles).
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    shards: list[list[int]] = [pending[k::workers] for k in range(workers)]
    deaths = [0] * workers
    procs: list[Any] = [None] * workers

    def start(k: int) -> None:
        remaining = [i for i in shards[k] if results[i] is None]
        shards[k] = remaining
        proc = ctx.Process(
            target=_worker_main,
            args=(config, [(i, requests[i]) for i in remaining], options, out),
            daemon=True,
            name=f"rai-shard-{provider_id}-{k}",
        )
        proc.start()
        procs[k] = proc
        if on_workers:
            on_workers([p.pid for p in procs if p is not None and p.is_alive()])

    def accept(index: int, data: Mapping[str, Any]) -> None:
        if results[index] is not None:
            return  # a replacement repeated a call whose record had already arrived
        record = CallRecord.from_dict(data)
        if journal is not None:
            journal.put(keys[index], provider_id, record.sample_id, record.repeat, record.status, data)
        results[index] = record
        if on_record:
            on_record(record)

    def drain(block: bool) -> bool:
        try:
            index, data = out.get(timeout=_POLL_S) if block else out.get_nowait()
        except queue_mod.Empty:
            return False
        accept(index, data)
        return True

    loop = asyncio.get_running_loop()
    for k in range(workers):
        start(k)
    try:
        while True:
            # The queue is read off the loop (a blocking get), so the parent's loop stays free.
            await loop.run_in_executor(None, drain, True)
            for k, proc in enumerate(procs):
                if proc is None or proc.is_alive():
                    continue
                proc.join()
                while drain(False):  # records it sent before it ended
                    pass
                left = [i for i in shards[k] if results[i] is None]
                procs[k] = None
                if not left:
                    continue
                deaths[k] += 1
                log.warning(
                    "%s: worker %d ended (exit code %s) with %d calls not done",
                    provider_id,
                    k,
                    proc.exitcode,
                    len(left),
                )
                if deaths[k] <= MAX_RESTARTS:
                    start(k)
                else:
                    for i in left:
                        accept(
                            i,
                            _lost_record(
                                keys[i], provider_id, requests[i], deaths[k], proc.exitcode
                            ).to_dict(),
                        )
            if all(r is not None for r in results):
                break
    finally:
        for proc in procs:
            if proc is not None and proc.is_alive():
                proc.kill()
                proc.join()
        out.close()
    return [r for r in results if r is not None]
