"""Run one stage of a load schedule on the running event loop.

:func:`run_stage` is engine-agnostic: it starts ``call(item, dispatch)`` for each item at the
time the stage's :class:`~rai_harness.load.profiles.StagePlan` says, keeps at most
``stage.concurrency`` calls in flight, and waits for all of them. It knows nothing about
providers, retries or journals, so the runner and a distributed engine (Ray) can share it.

Timing rules:

- Times are taken on the loop's monotonic clock (``loop.time()``), relative to the stage's
  start, so they are immune to wall-clock jumps.
- A stage can be shared by several processes (worker shards, :mod:`rai_harness.run.shards`):
  :func:`share_stage` deals the stage's arrival schedule out round-robin, and each process
  runs its :class:`StageShare` against one start time on ``time.monotonic()``. That clock
  is system-wide (``CLOCK_MONOTONIC`` on Linux, ``mach_absolute_time`` on macOS,
  ``QueryPerformanceCounter`` on Windows: time since boot, the same value in every process),
  so the processes' calls together follow the profile's schedule; the parent checks it
  anyway (:func:`check_shared_clock`) before relying on it.
- Under a rate, a call that cannot start on time because ``concurrency`` calls are already in
  flight waits for a slot (first come, first served) and is marked ``capped``; its
  ``start_lag_s`` records how late it started. Its latency is measured from its actual start,
  so a stage with capped starts under-reports what a user arriving on schedule would see:
  the stage summary counts them so a reader knows (the "coordinated omission" of closed-loop
  load generators, made visible instead of hidden).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rai_harness.load.profiles import StagePlan, stage_offsets

__all__ = ["Dispatch", "StageShare", "check_shared_clock", "run_stage", "share_stage"]

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


@dataclass(frozen=True, slots=True)
class StageShare:
    """The part of a stage one process runs when several processes share it.

    Attributes:
        positions: Each item's position in the whole stage (its ``Dispatch.position``).
        offsets: Each item's due time, seconds after the stage's start (``None`` under fixed
            concurrency: an item starts when one of this process's slots frees).
        slots: Calls this process keeps in flight at once (its part of the stage's cap).
        start: The stage's start on ``time.monotonic()``, the same instant in every process.
    """

    positions: tuple[int, ...]
    offsets: tuple[float, ...] | None
    slots: int
    start: float = 0.0


def share_stage(stage: StagePlan, n: int, parts: int, start: float = 0.0) -> list[StageShare]:
    """Deal the schedule of ``n`` calls of ``stage`` out to ``parts`` processes, round-robin.

    Position ``i`` of the stage goes to part ``i % parts`` with its due time from the stage's
    one schedule (:func:`~rai_harness.load.profiles.stage_offsets`), so the union of the
    parts' arrivals is exactly the single-process schedule: same count, same times, same
    (Poisson) gaps. Each part keeps ``ceil(stage.concurrency / parts)`` calls in flight.
    Parts left without a call (``n < parts``) are dropped.

    Args:
        stage: The stage (its ``requests`` cap is applied by the caller: ``n`` is what runs).
        n: Calls in the stage.
        parts: Processes sharing it (at least 1).
        start: The stage's start on ``time.monotonic()`` (set it when it is known).

    Returns:
        One :class:`StageShare` per part that has calls, part 0 first.
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    offsets = stage_offsets(stage, n)
    slots = max(1, math.ceil(stage.concurrency / parts))
    shares: list[StageShare] = []
    for k in range(min(parts, n)):
        positions = tuple(range(k, n, parts))
        due = None if offsets is None else tuple(float(offsets[i]) for i in positions)
        shares.append(StageShare(positions, due, slots, start))
    return shares


def check_shared_clock(before: float, other: float, after: float) -> None:
    """Raise ``RuntimeError`` unless another process's ``time.monotonic()`` reading is ours.

    ``before`` and ``after`` are this process's readings taken before asking the other process
    for its clock and after its answer arrived; a clock shared between processes reads
    ``before <= other <= after``. A schedule split over processes relies on it.
    """
    if not before <= other <= after:
        raise RuntimeError(
            f"time.monotonic() is not shared between processes here (another process read "
            f"{other:.6f} s while this one read {before:.6f}..{after:.6f} s): a load profile cannot "
            "be split over worker processes on this platform; remove `workers` or `load`"
        )


async def run_stage(
    stage: StagePlan,
    items: Sequence[T],
    call: Callable[[T, Dispatch], Awaitable[R]],
    share: StageShare | None = None,
) -> list[R]:
    """Start ``call(item, dispatch)`` for the stage's items on schedule; return the results in order.

    Args:
        stage: What to run: arrivals, rate, concurrency, how many calls (``None``: all of
            ``items``) and an optional duration after which no call starts.
        items: The calls' inputs, in schedule order.
        call: Makes one call. It should not raise (record failures instead); if it does, the
            other calls of the stage are cancelled and the exception propagates.
        share: This process's part of a stage shared by several processes (from
            :func:`share_stage`, one item per position): its due times and in-flight cap
            replace the stage's own, and times count from ``share.start``.

    Returns:
        One result per started call, in schedule order: ``len(result)`` is how many of
        ``items`` the stage consumed (fewer than asked when ``stage.seconds`` ran out).
    """
    loop = asyncio.get_running_loop()
    if share is not None:
        if len(share.positions) != len(items):
            raise ValueError(f"the share has {len(share.positions)} positions for {len(items)} items")
        n = len(items)
        offsets: Sequence[float] | None = share.offsets
        positions: Sequence[int] = share.positions
        slots = asyncio.Semaphore(share.slots)
    else:
        n = len(items) if stage.requests is None else min(stage.requests, len(items))
        due_times = stage_offsets(stage, n)
        offsets = None if due_times is None else due_times.tolist()
        positions = range(n)
        slots = asyncio.Semaphore(stage.concurrency)
    tasks: list[asyncio.Task[R]] = []

    async def run_one(item: T, dispatch: Dispatch) -> R:
        try:
            return await call(item, dispatch)
        finally:
            slots.release()

    # The stage's start on the loop's clock; a share's start is on time.monotonic() (the
    # same clock as loop.time() for asyncio's own loops; converted in case a loop differs).
    t0 = loop.time() if share is None else loop.time() + (share.start - time.monotonic())
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
            dispatch = Dispatch(stage, positions[i], due, started, capped, t0)
            tasks.append(loop.create_task(run_one(items[i], dispatch)))
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
