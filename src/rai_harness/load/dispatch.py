"""Run one stage of a load schedule on the running event loop.

:func:`run_stage` is engine-agnostic: it starts ``call(item, dispatch)`` for each item at the
time the stage's :class:`~rai_harness.load.profiles.StagePlan` says, keeps at most
``stage.concurrency`` calls in flight, and waits for all of them. It knows nothing about
providers, retries or journals, so the runner and a distributed engine (Ray) can share it.

Timing rules:

- Times are taken on the loop's monotonic clock (``loop.time()``), relative to the stage's
  start, so they are immune to wall-clock jumps.
- Under a rate, a call that cannot start on time because ``concurrency`` calls are already in
  flight waits for a slot (first come, first served) and is marked ``capped``; its
  ``start_lag_s`` records how late it started. Its latency is measured from its actual start,
  so a stage with capped starts under-reports what a user arriving on schedule would see:
  the stage summary counts them so a reader knows (the "coordinated omission" of closed-loop
  load generators, made visible instead of hidden).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rai_harness.load.profiles import StagePlan, arrival_offsets

__all__ = ["Dispatch", "run_stage"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Dispatch:
    """When one call of a stage was due and when it started.

    Attributes:
        stage: The stage's :class:`StagePlan`.
        position: The call's position in the stage (0-based).
        scheduled_s: When it was due, seconds after the stage started (``None`` under
            fixed concurrency: a call is due when a slot frees).
        started_s: When it started, seconds after the stage started.
        capped: Whether it waited for a free slot beyond its due time.
        stage_t0: The stage's start on the loop clock (for :meth:`elapsed`).
    """

    stage: StagePlan
    position: int
    scheduled_s: float | None
    started_s: float
    capped: bool
    stage_t0: float

    @property
    def start_lag_s(self) -> float:
        """How late the call started (0 under fixed concurrency)."""
        return 0.0 if self.scheduled_s is None else max(0.0, self.started_s - self.scheduled_s)

    def elapsed(self) -> float:
        """Seconds since the stage started, now (call it when the call finishes)."""
        return asyncio.get_running_loop().time() - self.stage_t0

    def info(self, finished_s: float) -> dict[str, Any]:
        """The call's schedule as recorded in ``samples.jsonl`` (``CallRecord.load``)."""
        return {
            "stage": self.stage.index,
            "warmup": self.stage.warmup,
            "arrivals": self.stage.arrivals,
            "rate": self.stage.rate,
            "concurrency": self.stage.concurrency,
            "scheduled_s": self.scheduled_s,
            "started_s": self.started_s,
            "finished_s": finished_s,
            "start_lag_s": self.start_lag_s,
            "capped": self.capped,
        }


async def run_stage(
    stage: StagePlan,
    items: Sequence[T],
    call: Callable[[T, Dispatch], Awaitable[R]],
) -> list[R]:
    """Start ``call(item, dispatch)`` for the stage's items on schedule; return the results in order.

    Args:
        stage: What to run: arrivals, rate, concurrency, how many calls (``None``: all of
            ``items``) and an optional duration after which no call starts.
        items: The calls' inputs, in schedule order.
        call: Makes one call. It should not raise (record failures instead); if it does, the
            other calls of the stage are cancelled and the exception propagates.

    Returns:
        One result per started call, in schedule order: ``len(result)`` is how many of
        ``items`` the stage consumed (fewer than asked when ``stage.seconds`` ran out).
    """
    loop = asyncio.get_running_loop()
    n = len(items) if stage.requests is None else min(stage.requests, len(items))
    offsets = (
        arrival_offsets(stage.arrivals, stage.rate, n, stage.seed)
        if stage.rate is not None and stage.arrivals != "concurrency"
        else None
    )
    slots = asyncio.Semaphore(stage.concurrency)
    tasks: list[asyncio.Task[R]] = []

    async def run_one(item: T, dispatch: Dispatch) -> R:
        try:
            return await call(item, dispatch)
        finally:
            slots.release()

    t0 = loop.time()
    try:
        for i in range(n):
            due: float | None = None
            if offsets is not None:
                due = float(offsets[i])
                delay = t0 + due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            capped = slots.locked() and due is not None
            await slots.acquire()
            started = loop.time() - t0
            if stage.seconds is not None and started >= stage.seconds:
                slots.release()
                break
            dispatch = Dispatch(stage, i, due, started, capped, t0)
            tasks.append(loop.create_task(run_one(items[i], dispatch)))
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
