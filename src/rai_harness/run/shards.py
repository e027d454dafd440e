"""Calls sharded over worker processes: more than one event loop when one is not enough.

On a small machine one asyncio loop saturates near a few hundred calls per second (the
HTTP client and JSON parsing cost a millisecond or more of CPU per call), and once it does
every timing taken on it is late. :func:`generate_calls_sharded` splits a provider's calls
over ``workers`` processes; each builds its own provider (own event loop, own HTTP client).
Records come back to the parent over a queue and the parent is the one journal writer
(SQLite stays single-writer; the journal is never opened by a worker).

Load profiles: the parent walks the profile's stages with the single-loop runner's own stage
loop (:func:`~rai_harness.run.runner.run_profile`: journal reuse, warm-up, the sweep's stop
rule on the combined records). For each stage it computes the one arrival schedule (seeded,
as in one process) and deals it out round-robin (:func:`~rai_harness.load.share_stage`):
worker ``k`` gets positions ``k, k + W, ...`` with their due times. Every worker first loads
its share and answers; then the parent sends one start instant on ``time.monotonic()``, a
clock shared by all processes (system-wide; the parent checks each worker's reading against
its own before relying on it), so the workers' calls together arrive exactly on the
profile's schedule, and every record's ``scheduled_s``, ``started_s`` and ``finished_s`` count
from that one instant. The in-flight cap (the profile's, or the provider's ``concurrency``)
is split as ``ceil(cap / W)`` per worker.

Failure model: a worker that dies (``kill -9``, out of memory) loses only the calls it had in
flight. The parent notices its exit, and starts a replacement over that worker's calls of the
current stage that have not come back, on the same start instant (the lost in-flight calls
are made again, late, and their start lag says so; nothing else repeats); after
``MAX_RESTARTS`` deaths of one worker, its remaining calls are recorded as failed
(``worker_lost``, retryable, so a resumed run makes them again). A kill of the parent loses
the calls in flight in every worker, as with one process: everything journaled is reused. The
orphaned workers check on their parent twice a second and exit (calls nobody journals would
only be made again, and paid for twice).

Scope: providers without a guard, and not ``hf-local`` (each worker would load its own copy
of the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rai_harness.errors import ConfigError, ProviderError
from rai_harness.load import LoadProfile, StagePlan, StageShare, check_shared_clock, run_stage, share_stage
from rai_harness.pricing import ResolvedPrice
from rai_harness.providers.base import ProviderConfig
from rai_harness.record.calls import CallRecord
from rai_harness.run.journal import Journal, call_key
from rai_harness.run.runner import (
    OnRecord,
    RateLimiter,
    RetryPolicy,
    _failure_record,
    call_with_retries,
    frozen_heap,
    reuse_journaled,
    run_profile,
    with_schedule,
)
from rai_harness.types import ChatRequest

__all__ = ["MAX_RESTARTS", "START_MARGIN_S", "check_shardable", "generate_calls_sharded"]

log = logging.getLogger(__name__)

#: Replacement workers started for one shard before its remaining calls are recorded as failed.
MAX_RESTARTS = 3
#: Seconds the parent waits on the queue before checking whether workers are alive.
_POLL_S = 0.1
#: Seconds from the parent's start message to a stage's start: every worker has loaded its
#: share by then (it said so), so this covers only reading one small message per worker.
START_MARGIN_S = 0.05
#: Seconds a worker gets to close its client after the last stage before it is killed.
_CLOSE_S = 5.0
#: Most queue messages handled per wake-up of the parent's loop.
_BATCH = 1000
#: Seconds between a worker's checks that its parent is still alive.
_PARENT_CHECK_S = 0.5

#: One call as a worker receives it: (index in the provider's calls, call key, request).
_Item = tuple[int, str, ChatRequest]


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


def _worker_main(k: int, config: ProviderConfig, options: dict[str, Any], inbox: Any, out: Any) -> None:
    """A worker process: its own loop and provider; runs the stages the parent sends."""
    # Never block exit on records no parent will read (the parent was killed): see _watch_parent.
    out.cancel_join_thread()
    asyncio.run(_worker_loop(k, config, options, inbox, out))


async def _watch_parent() -> None:
    """End this worker as soon as its parent is gone (``kill -9``): its calls would be wasted.

    Nobody would journal their records, and a resumed run makes them again; an orphan that
    went on calling a paid API would only spend money.
    """
    parent = mp.parent_process()
    while parent is not None:
        await asyncio.sleep(_PARENT_CHECK_S)
        if not parent.is_alive():
            log.warning("worker %d: the parent process is gone; exiting", os.getpid())
            os._exit(0)


async def _worker_loop(k: int, config: ProviderConfig, options: dict[str, Any], inbox: Any, out: Any) -> None:
    """Messages in: ``(stage, share, items)`` then ``start``, per stage; ``None`` ends.

    Messages out: ``("armed", k, pid, monotonic)`` once a stage's share is loaded, ``("record",
    k, index, record)`` per finished call, ``("done", k, unstarted indices)`` per stage.
    """
    loop = asyncio.get_running_loop()
    watchdog = loop.create_task(_watch_parent())
    provider = config.build()
    limiter = RateLimiter(options["rpm"])
    # Each worker its own jitter stream: the same seed everywhere would retry in lock-step.
    rng = random.Random(f"{options['seed']}/worker-{k}")
    policy: RetryPolicy = options["policy"]

    def receive() -> Any:
        return inbox.get()

    try:
        await provider.load()
        # Imports and the provider are in place: keep them out of the GC's passes (see frozen_heap).
        with frozen_heap():
            while True:
                command = await loop.run_in_executor(None, receive)
                if command is None:
                    return
                stage, share, items = command
                out.put(("armed", k, os.getpid(), time.monotonic()))
                start = await loop.run_in_executor(None, receive)

                async def call(item: _Item, dispatch: Any) -> None:
                    index, key, request = item
                    record = await call_with_retries(
                        provider,
                        request,
                        key=key,
                        provider_id=options["provider_id"],
                        policy=policy,
                        limiter=limiter,
                        price=options["price"],
                        secrets=options["secrets"],
                        rng=rng,
                    )
                    if options["stamp"]:
                        record = with_schedule(record, dispatch)
                    out.put(("record", k, index, record.to_dict()))

                made = await run_stage(stage, items, call, dataclasses.replace(share, start=start))
                out.put(("done", k, [index for index, _, _ in items[len(made) :]]))
    finally:
        watchdog.cancel()
        with contextlib.suppress(Exception):
            await provider.aclose()


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


class _Workers:
    """The parent's side: worker processes, their queues, and the records coming back."""

    def __init__(
        self,
        config: ProviderConfig,
        requests: Sequence[ChatRequest],
        keys: Sequence[str],
        results: list[CallRecord | None],
        *,
        workers: int,
        provider_id: str,
        options: dict[str, Any],
        accept: Callable[[int, Mapping[str, Any]], None],
        on_workers: Callable[[list[int]], None] | None,
    ) -> None:
        self.config = config
        self.requests = requests
        self.keys = keys
        self.results = results
        self.provider_id = provider_id
        self.options = options
        self.accept = accept
        self.on_workers = on_workers
        # spawn: a fresh interpreter per worker (no inherited event loop, threads or SQLite handles).
        self.ctx = mp.get_context("spawn")
        self.out = self.ctx.Queue()
        self.procs: list[Any] = [None] * workers
        self.inboxes: list[Any] = [None] * workers
        self.deaths = [0] * workers
        # The current stage: each worker's share and calls, when its command was sent, who has
        # loaded it, which calls it did not start, and the start instant once sent.
        self.stage: StagePlan | None = None
        self.shares: dict[int, tuple[StageShare, list[_Item]]] = {}
        self.sent_at: dict[int, float] = {}
        self.armed: set[int] = set()
        self.unstarted: set[int] = set()
        self.outstanding: set[int] = set()  # the stage's calls neither recorded nor unstarted
        self.start_at: float | None = None

    # -- processes ----------------------------------------------------------------------------

    def _spawn(self, k: int) -> None:
        self.inboxes[k] = self.ctx.Queue()
        proc = self.ctx.Process(
            target=_worker_main,
            args=(k, self.config, self.options, self.inboxes[k], self.out),
            daemon=True,
            name=f"rai-shard-{self.provider_id}-{k}",
        )
        proc.start()
        self.procs[k] = proc
        if self.on_workers:
            self.on_workers([p.pid for p in self.procs if p is not None and p.is_alive()])

    def _send(self, k: int, share: StageShare, items: list[_Item]) -> None:
        assert self.stage is not None
        self.shares[k] = (share, items)
        self.sent_at[k] = time.monotonic()
        self.inboxes[k].put((self.stage, share, items))
        if self.start_at is not None:  # a replacement joins a stage that has started
            self.inboxes[k].put(self.start_at)

    def close(self) -> None:
        """Ask every worker to finish, then kill those that do not."""
        for k, proc in enumerate(self.procs):
            if proc is not None and proc.is_alive():
                with contextlib.suppress(Exception):
                    self.inboxes[k].put(None)
        deadline = time.monotonic() + _CLOSE_S
        for proc in self.procs:
            if proc is None:
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.out.close()

    # -- messages -----------------------------------------------------------------------------

    def _record(self, index: int, data: Mapping[str, Any]) -> None:
        self.accept(index, data)
        self.outstanding.discard(index)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind, k = message[0], message[1]
        if kind == "record":
            self._record(message[2], message[3])
        elif kind == "armed":
            proc = self.procs[k]
            if proc is None or proc.pid != message[2]:
                return  # from a process that has since died and been replaced
            check_shared_clock(self.sent_at[k], message[3], time.monotonic())
            self.armed.add(k)
        elif kind == "done":
            self.unstarted.update(message[2])
            self.outstanding.difference_update(message[2])

    def _fetch(self, block: bool) -> list[tuple[Any, ...]]:
        """Messages waiting on the queue (waiting up to ``_POLL_S`` for the first when ``block``)."""
        messages: list[tuple[Any, ...]] = []
        try:
            messages.append(self.out.get(timeout=_POLL_S) if block else self.out.get_nowait())
            while len(messages) < _BATCH:
                messages.append(self.out.get_nowait())
        except queue_mod.Empty:
            pass
        return messages

    def _left(self, k: int) -> list[_Item]:
        share_items = self.shares.get(k)
        if share_items is None:
            return []
        return [it for it in share_items[1] if self.results[it[0]] is None and it[0] not in self.unstarted]

    def _reap(self) -> None:
        """Replace each dead worker that had calls of this stage left (or give them up)."""
        for k, proc in enumerate(self.procs):
            if proc is None or proc.is_alive():
                continue
            proc.join()
            while batch := self._fetch(False):  # records it sent before it ended
                for message in batch:
                    self._handle(message)
            self.procs[k] = None
            left = self._left(k)
            if not left:
                continue  # it ended idle: the next stage starts a new one
            self.deaths[k] += 1
            self.armed.discard(k)
            log.warning(
                "%s: worker %d ended (exit code %s) with %d calls not done",
                self.provider_id,
                k,
                proc.exitcode,
                len(left),
            )
            if self.deaths[k] <= MAX_RESTARTS:
                share, items = self.shares[k]
                left_indices = {index for index, _, _ in left}
                keep = [j for j, it in enumerate(items) if it[0] in left_indices]
                sub = StageShare(
                    tuple(share.positions[j] for j in keep),
                    None if share.offsets is None else tuple(share.offsets[j] for j in keep),
                    share.slots,
                )
                self._spawn(k)
                self._send(k, sub, [items[j] for j in keep])
            else:
                self.shares.pop(k, None)
                for index, key, request in left:
                    lost = _lost_record(key, self.provider_id, request, self.deaths[k], proc.exitcode)
                    self._record(index, lost.to_dict())

    async def _pump(self) -> None:
        # The queue is read off the loop (a blocking get), so the parent's loop stays free;
        # the messages are handled on the loop's thread (journal writes, on_record callbacks).
        for message in await asyncio.get_running_loop().run_in_executor(None, self._fetch, True):
            self._handle(message)
        self._reap()

    # -- one stage ----------------------------------------------------------------------------

    async def run(self, stage: StagePlan, pending: list[int]) -> list[int]:
        """Make a stage's pending calls over the workers; return the indices not started."""
        if not pending:
            return []
        usable = [k for k in range(len(self.procs)) if self.deaths[k] <= MAX_RESTARTS]
        if not usable:  # every worker died too often: the calls are recorded as lost
            for index in pending:
                lost = _lost_record(
                    self.keys[index], self.provider_id, self.requests[index], MAX_RESTARTS + 1, None
                )
                self.accept(index, lost.to_dict())
            return []
        self.stage, self.shares, self.armed, self.unstarted, self.start_at = stage, {}, set(), set(), None
        self.outstanding = set(pending)
        for k, share in zip(usable, share_stage(stage, len(pending), len(usable)), strict=False):
            if self.procs[k] is None or not self.procs[k].is_alive():
                if self.procs[k] is not None:
                    self.procs[k].join()  # ended idle since the last stage
                self._spawn(k)
            items = [(pending[p], self.keys[pending[p]], self.requests[pending[p]]) for p in share.positions]
            self._send(k, share, items)
        # Start only once every worker holds its share, so none starts late by its own set-up.
        while any(k not in self.armed and self.procs[k] is not None for k in self.shares):
            await self._pump()
        self.start_at = time.monotonic() + START_MARGIN_S
        for k in self.shares:
            if self.procs[k] is not None:
                self.inboxes[k].put(self.start_at)
        while self.outstanding:
            await self._pump()
        self.stage, self.start_at = None, None
        return sorted(self.unstarted)


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
    load: LoadProfile | None = None,
    on_workers: Callable[[list[int]], None] | None = None,
) -> list[CallRecord]:
    """Like :func:`~rai_harness.run.runner.generate_calls`, over ``workers`` processes.

    Args:
        config: The provider's config (each worker builds its own provider from it).
        requests: The calls to make, in schedule order (under a sweep:
            :func:`rai_harness.load.requests_for`).
        workers: Worker processes (at most one per call to make; each keeps ``ceil(cap /
            workers)`` calls in flight and, when ``rpm`` is set, ``rpm / workers``).
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
        seed: Seeds the backoff jitter (each worker its own stream) and, unless the profile
            sets its own, Poisson arrivals.
        load: When calls start (see the module docstring); ``None``: fixed ``concurrency``,
            and records carry no schedule.
        on_workers: Called with the worker process ids whenever they change (monitoring, tests).

    Returns:
        One record per request, in request order.
    """
    check_shardable(config)
    keys = [call_key(provider_identity, r) for r in requests]
    results: list[CallRecord | None] = [None] * len(requests)
    journaled = journal.get_many(keys) if journal is not None else {}

    def reuse(index: int) -> CallRecord | None:
        return reuse_journaled(journaled.get(keys[index]), requests[index], retry_failed)

    def finish(index: int, record: CallRecord) -> None:
        results[index] = record
        if on_record:
            on_record(record)

    def accept(index: int, data: Mapping[str, Any]) -> None:
        if results[index] is not None:
            return  # a replacement repeated a call whose record had already arrived
        record = CallRecord.from_dict(data)
        if journal is not None:
            journal.put(keys[index], provider_id, record.sample_id, record.repeat, record.status, dict(data))
        finish(index, record)

    to_make = sum(1 for i in range(len(requests)) if reuse(i) is None)
    workers = max(1, min(workers, to_make))
    options = {
        "provider_id": provider_id,
        "rpm": rpm / workers if rpm else None,
        "policy": policy or RetryPolicy(),
        "price": price,
        "secrets": list(secrets),
        "seed": seed,
        "stamp": load is not None,  # records carry their schedule only under a profile
    }
    pool = _Workers(
        config,
        requests,
        keys,
        results,
        workers=workers,
        provider_id=provider_id,
        options=options,
        accept=accept,
        on_workers=on_workers,
    )
    try:
        with frozen_heap():  # the parent journals every record: its loop must not stall either
            await run_profile(
                load or LoadProfile(profile="concurrency", concurrency=concurrency),
                results,
                concurrency=concurrency,
                seed=seed,
                provider_id=provider_id,
                reuse=reuse,
                finish=finish,
                run=pool.run,
            )
    finally:
        pool.close()
    return [r for r in results if r is not None]
