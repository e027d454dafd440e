"""``workers: auto``: how many worker processes a provider's calls need, from a measurement.

One event loop keeps its timings honest only while it is mostly idle: a callback that waits
behind another call's parsing is late by that much, and the wait grows like ``ρ / (1 − ρ)``
with the loop's busy share ``ρ`` (a single-server queue). So the runner sizes the workers to
keep each loop at most half busy (:data:`TARGET_BUSY`):

    workers = ceil(demanded rate x CPU seconds per call / TARGET_BUSY), capped at the CPUs
    this process may use and at the number of calls to make.

- **Demanded rate**: a rate profile's peak rate (its highest stage; the warm-up runs at the
  lowest). Under fixed concurrency the rate is what the endpoint answers at: ``concurrency /
  median latency``, the latency measured by the calibration at low concurrency (an upper
  bound: latency grows with load, so the real rate is lower and the sizing errs on the side
  of more workers).
- **CPU per call**: measured by :func:`calibrate`, a few real calls to the provider from this
  process before the run starts (process CPU time over the calls; nothing else runs then).
  Their results are not recorded (the run makes its calls afresh) and their count is stated
  in ``run.json``: against a paid endpoint they cost a few calls; set ``workers`` to a number
  to skip them.

:func:`size_workers` is the pure rule; :func:`auto_workers` measures and applies it, and
returns the :class:`WorkerSizing` written to ``run.json`` (``timing_quality.workers``).
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rai_harness.load import LoadProfile
from rai_harness.providers.base import Provider
from rai_harness.run.runner import RateLimiter, RetryPolicy, call_with_retries
from rai_harness.types import ChatRequest

__all__ = [
    "CALIBRATION_CALLS",
    "TARGET_BUSY",
    "Calibration",
    "WorkerSizing",
    "auto_workers",
    "calibrate",
    "size_workers",
    "usable_cpus",
]

#: Share of one event loop's time the sizing lets calls use (see the module docstring).
TARGET_BUSY = 0.5
#: Calls the calibration makes (at most 4 at once).
CALIBRATION_CALLS = 8
_CALIBRATION_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class Calibration:
    """What a few calls cost this process.

    Attributes:
        calls: Calls made.
        succeeded: Calls that returned a generation.
        cpu_s_per_call: Process CPU seconds per call (all threads), over every call made.
        latency_p50_s: Median latency of the successful calls (``None``: none succeeded).
        error: The first failure's type, when a call failed.
    """

    calls: int
    succeeded: int
    cpu_s_per_call: float
    latency_p50_s: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerSizing:
    """The number of worker processes chosen for a provider, and why (``run.json``).

    Attributes:
        workers: Processes chosen (1: the calls run on this process's loop, no workers).
        demanded_rps: Calls per second the run asks for (``None``: not known).
        demand: Where ``demanded_rps`` comes from, in words.
        cpu_ms_per_call: Measured CPU milliseconds per call in one process.
        target_busy: Busy share of each loop the sizing allows.
        cpu_cap: CPUs this process may use (the most workers it would start).
        calibration_calls: Calls the calibration made (not recorded as run calls).
        reason: The arithmetic, in words.
    """

    workers: int
    demanded_rps: float | None
    demand: str
    cpu_ms_per_call: float | None
    target_busy: float
    cpu_cap: int
    calibration_calls: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``run.json``."""
        return asdict(self)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return max(1, counter() or 1)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def size_workers(
    demanded_rps: float, cpu_s_per_call: float, *, cpu_cap: int, calls: int, target_busy: float = TARGET_BUSY
) -> tuple[int, str]:
    """Worker processes for a demanded rate: ``ceil(rate x cpu per call / target_busy)``, capped.

    Args:
        demanded_rps: Calls per second asked for (> 0).
        cpu_s_per_call: CPU seconds one call costs one process (>= 0).
        cpu_cap: Most processes to use (the CPUs available).
        calls: Calls to make (more workers than calls would idle).
        target_busy: Busy share of each event loop allowed, in (0, 1].

    Returns:
        ``(workers, reason)``: at least 1; the reason gives the arithmetic and any cap.
    """
    if not (demanded_rps > 0 and math.isfinite(demanded_rps)):
        raise ValueError(f"demanded_rps must be a positive number, got {demanded_rps!r}")
    if not (cpu_s_per_call >= 0 and math.isfinite(cpu_s_per_call)):
        raise ValueError(f"cpu_s_per_call must be a non-negative number, got {cpu_s_per_call!r}")
    if not 0 < target_busy <= 1:
        raise ValueError(f"target_busy must be in (0, 1], got {target_busy!r}")
    busy = demanded_rps * cpu_s_per_call  # CPU seconds per second: loops' worth of work
    need = max(1, math.ceil(busy / target_busy - 1e-9))
    chosen = max(1, min(need, cpu_cap, max(1, calls)))
    reason = (
        f"{demanded_rps:.4g} calls/s x {cpu_s_per_call * 1000:.3g} ms CPU/call = {busy:.3g} CPU; "
        f"at most {target_busy:.0%} busy per event loop -> {need}"
    )
    if chosen < need:
        reason += f", capped at {chosen} ({'calls to make' if chosen == calls < cpu_cap else 'CPUs'})"
    return chosen, reason


async def calibrate(
    provider: Provider,
    requests: Sequence[ChatRequest],
    *,
    policy: RetryPolicy,
    rpm: float | None = None,
) -> Calibration:
    """Make ``requests`` (a few) on this process's loop and measure their CPU and latency.

    Calls run at most 4 at once, without retries; their records are returned to nobody.
    """
    if not requests:
        raise ValueError("calibration needs at least one request")
    limiter = RateLimiter(rpm)
    single = RetryPolicy(max_retries=0, timeout_s=policy.timeout_s)
    slots = asyncio.Semaphore(_CALIBRATION_CONCURRENCY)

    async def one(request: ChatRequest) -> Any:
        async with slots:
            return await call_with_retries(
                provider,
                request,
                key="calibration",
                provider_id="calibration",
                policy=single,
                limiter=limiter,
                price=None,
            )

    cpu0 = time.process_time()
    records = await asyncio.gather(*(one(r) for r in requests))
    cpu = time.process_time() - cpu0
    ok = [r for r in records if r.ok and r.latency_s is not None]
    failed = next((r.error.type for r in records if r.error is not None), None)
    return Calibration(
        calls=len(records),
        succeeded=len(ok),
        cpu_s_per_call=cpu / len(records),
        latency_p50_s=statistics.median(r.latency_s for r in ok) if ok else None,
        error=failed,
    )


async def auto_workers(
    provider: Provider,
    requests: Sequence[ChatRequest],
    *,
    calls: int,
    concurrency: int,
    load: LoadProfile | None,
    policy: RetryPolicy,
    rpm: float | None = None,
    cpu_cap: int | None = None,
) -> WorkerSizing:
    """Calibrate on a few of ``requests`` and size the workers (see the module docstring).

    Args:
        provider: The provider, built and loaded in this process.
        requests: The provider's calls (the first few calibrate).
        calls: Calls the run will make (journaled ones excluded).
        concurrency: The provider's ``concurrency`` (the demand under fixed concurrency).
        load: The run's load profile, if any.
        policy: The run's retry settings (their timeout bounds each calibration call).
        rpm: The provider's rate cap.
        cpu_cap: Most workers (default: :func:`usable_cpus`).
    """
    cap = cpu_cap or usable_cpus()
    cal = await calibrate(provider, list(requests[:CALIBRATION_CALLS]), policy=policy, rpm=rpm)
    if load is not None and load.is_rate:
        demanded: float | None = max(load.sweep_rates())
        demand = f"peak rate of the `{load.profile}` profile"
    elif cal.latency_p50_s:
        conc = (load.concurrency if load is not None else None) or concurrency
        demanded = conc / cal.latency_p50_s
        demand = f"concurrency {conc} / calibration median latency {cal.latency_p50_s * 1000:.4g} ms"
    else:
        demanded, demand = None, "unknown: no calibration call succeeded"
    if demanded is None or cal.succeeded == 0:
        return WorkerSizing(
            1,
            demanded,
            demand,
            cal.cpu_s_per_call * 1000,
            TARGET_BUSY,
            cap,
            cal.calls,
            f"no calibration call succeeded ({cal.error}): one process",
        )
    workers, reason = size_workers(demanded, cal.cpu_s_per_call, cpu_cap=cap, calls=calls)
    return WorkerSizing(
        workers, demanded, demand, cal.cpu_s_per_call * 1000, TARGET_BUSY, cap, cal.calls, reason
    )
