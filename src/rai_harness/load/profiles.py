"""Load profiles: how the runner spaces a provider's calls in time (``load:`` of a run config).

Four profiles, the ones load-testing tools compare with (vLLM's ``benchmark_serving``,
llmperf, guidellm):

``concurrency``
    Today's default: a fixed number of calls in flight; a new call starts when one ends.
    Throughput is whatever the endpoint sustains at that concurrency.
``constant``
    Calls start at a fixed rate (``rate`` requests per second), evenly spaced, whether or not
    earlier calls have finished (an open-loop generator: a slow endpoint cannot slow the
    arrivals down, so queueing shows up in the latencies, as it would for real users).
``poisson``
    Calls start at ``rate`` requests per second on average, with exponential gaps
    (a Poisson process: independent users). The gaps come from a seeded generator, so a
    rerun replays the same arrival schedule.
``sweep``
    A series of rates (``rates``, or ``steps`` rates spaced geometrically from ``min_rate`` to
    ``max_rate``), each run for ``requests_per_rate`` calls (or ``seconds_per_rate``), lowest
    first, each stage drained before the next. After each stage the :class:`StopRule` decides
    whether the endpoint is saturated; the sweep ends at the first saturated stage (which is
    kept: it is the knee of the curve). The run's prompts are cycled (with new repeat indices,
    so each call is distinct) to give every stage its calls.

A warm-up (``warmup: {requests: N}`` or ``{seconds: S}``) runs first, as its own stage at the
first rate (or at the profile's concurrency), and is drained before measuring starts; its
calls are recorded, marked ``warmup``, and left out of every timing statistic.

This module is pure (no event loop, no I/O): :meth:`LoadProfile.stage_plans` and
:func:`arrival_offsets` turn a profile into the schedule that
:func:`rai_harness.load.dispatch.run_stage` executes, so another engine (Ray) can reuse them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rai_harness.types import ChatRequest, stable_hash

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "Arrivals",
    "LoadProfile",
    "StagePlan",
    "StopRule",
    "Warmup",
    "arrival_offsets",
    "requests_for",
    "stage_offsets",
    "stage_seed",
]

Arrivals = Literal["constant", "poisson"]
ProfileName = Literal["concurrency", "constant", "poisson", "sweep"]

#: Calls in flight at once under a rate profile when ``max_concurrency`` is not given. A
#: bound, so a saturated endpoint cannot make the harness open unbounded connections; a
#: stage that hits it records the calls that waited (``capped_starts``).
DEFAULT_MAX_CONCURRENCY = 256
#: Fewest calls a measured stage may have: throughput needs a span, percentiles a sample.
MIN_STAGE_REQUESTS = 5
#: Most calls one sweep may plan (all stages and the warm-up), so a typo cannot plan millions.
MAX_PLANNED_REQUESTS = 1_000_000


class Warmup(BaseModel):
    """Calls made before measuring starts; recorded, but left out of every timing statistic.

    Give ``requests`` (a count) or ``seconds`` (calls started within the first S seconds).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int | None = Field(None, ge=1, le=100_000, description="Warm-up calls.")
    seconds: float | None = Field(None, gt=0, le=3600, description="Warm-up duration, seconds.")

    @model_validator(mode="after")
    def _one(self) -> Warmup:
        if (self.requests is None) == (self.seconds is None):
            raise ValueError("give exactly one of `requests` (a count) or `seconds` (a duration)")
        return self


class StopRule(BaseModel):
    """When a sweep stage counts as saturated (the sweep then stops after it).

    A stage is saturated when any of these holds:

    - its achieved throughput (successful calls completed per second: the least-squares rate
      of the completion times) is below ``min_throughput_ratio`` times its offered rate (the
      same rate of its scheduled arrivals): the endpoint, the in-flight cap or the client's
      own CPU cannot keep up;
    - its error rate is above ``max_error_rate``;
    - its TTFT or latency p95 is above ``max_ttft_p95_s`` / ``max_latency_p95_s`` (when set).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_throughput_ratio: float = Field(
        0.9, gt=0.0, le=1.0, description="Saturated below this share of the offered rate."
    )
    max_error_rate: float = Field(0.1, ge=0.0, le=1.0, description="Saturated above this error rate.")
    max_ttft_p95_s: float | None = Field(None, gt=0, description="Saturated above this TTFT p95 (s).")
    max_latency_p95_s: float | None = Field(None, gt=0, description="Saturated above this latency p95 (s).")

    def describe(self) -> str:
        """The rule in words (for the run record and the report)."""
        parts = [
            f"achieved throughput < {self.min_throughput_ratio:.0%} of the offered rate",
            f"error rate > {self.max_error_rate:.0%}",
        ]
        if self.max_ttft_p95_s is not None:
            parts.append(f"TTFT p95 > {self.max_ttft_p95_s:g} s")
        if self.max_latency_p95_s is not None:
            parts.append(f"latency p95 > {self.max_latency_p95_s:g} s")
        return "stop after the first stage with " + " or ".join(parts)


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage of a schedule.

    Attributes:
        index: 0, 1, ... for measured stages; -1 for the warm-up.
        arrivals: ``"concurrency"`` (closed loop), ``"constant"`` or ``"poisson"``.
        rate: Requests per second (``None`` under ``concurrency``).
        concurrency: Calls in flight at once (the cap, under a rate).
        requests: Calls in the stage; ``None``: the rest of the calls (or until ``seconds``).
        seconds: Stop starting calls after this many seconds (a warm-up by duration).
        seed: Seeds the Poisson gaps of this stage.
        warmup: Whether the stage is the warm-up.
    """

    index: int
    arrivals: Literal["concurrency", "constant", "poisson"]
    rate: float | None
    concurrency: int
    requests: int | None
    seconds: float | None = None
    seed: int = 0
    warmup: bool = False


def stage_seed(base_seed: int, index: int) -> int:
    """The seed of one stage's arrival gaps: a hash of the base seed and the stage index."""
    return int(stable_hash({"load_seed": int(base_seed), "stage": int(index)})[:16], 16)


def arrival_offsets(arrivals: Arrivals, rate: float, n: int, seed: int = 0) -> np.ndarray:
    """Start times (seconds after the stage starts) of ``n`` calls at ``rate`` per second.

    ``constant``: ``i / rate``. ``poisson``: the first call at 0, then independent
    exponential gaps of mean ``1 / rate`` drawn from ``numpy.random.default_rng(seed)``, so the
    same seed gives the same schedule on every machine.
    """
    if n <= 0:
        return np.zeros(0)
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of requests per second (got {rate!r})")
    if arrivals == "constant":
        return np.arange(n, dtype=float) / rate
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n - 1)
    return np.concatenate(([0.0], np.cumsum(gaps)))


def stage_offsets(stage: StagePlan, n: int) -> np.ndarray | None:
    """Due times of a stage's first ``n`` calls (:func:`arrival_offsets`); ``None`` under fixed concurrency."""
    if stage.rate is None or stage.arrivals == "concurrency":
        return None
    return arrival_offsets(stage.arrivals, stage.rate, n, stage.seed)


class LoadProfile(BaseModel):
    """The ``load:`` section of a run config (see the module docstring for the profiles).

    Example::

        load:
          profile: sweep
          rates: [1, 2, 5, 10, 20]
          requests_per_rate: 50
          warmup: {requests: 10}
          stop: {min_throughput_ratio: 0.9, max_error_rate: 0.05}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: ProfileName = Field("concurrency", description="concurrency | constant | poisson | sweep.")
    concurrency: int | None = Field(
        None, ge=1, le=4096, description="`concurrency` profile: calls in flight (default: the provider's)."
    )
    rate: float | None = Field(
        None, gt=0, le=100_000, description="`constant`/`poisson`: requests per second."
    )
    rates: list[float] | None = Field(None, min_length=1, max_length=100, description="`sweep`: the rates.")
    min_rate: float | None = Field(None, gt=0, le=100_000, description="`sweep`: lowest rate (with `steps`).")
    max_rate: float | None = Field(
        None, gt=0, le=100_000, description="`sweep`: highest rate (with `steps`)."
    )
    steps: int | None = Field(None, ge=2, le=100, description="`sweep`: rates from min_rate to max_rate.")
    arrivals: Arrivals = Field("constant", description="`sweep`: arrivals within each stage.")
    requests_per_rate: int | None = Field(
        None, ge=MIN_STAGE_REQUESTS, le=100_000, description="`sweep`: calls per stage."
    )
    seconds_per_rate: float | None = Field(
        None, gt=0, le=3600, description="`sweep`: stage length in seconds (calls = rate x seconds)."
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=4096,
        description=f"Rate profiles: cap on calls in flight (default {DEFAULT_MAX_CONCURRENCY}).",
    )
    seed: int | None = Field(None, description="Seeds Poisson arrivals (default: the run's seed).")
    warmup: Warmup | None = Field(None, description="Calls excluded from statistics, made first.")
    stop: StopRule | None = Field(None, description="`sweep`: when a stage counts as saturated.")

    @model_validator(mode="after")
    def _check(self) -> LoadProfile:
        p = self.profile
        allowed = {
            "concurrency": {"concurrency"},
            "constant": {"rate", "max_concurrency"},
            "poisson": {"rate", "max_concurrency", "seed"},
            "sweep": {
                "rates",
                "min_rate",
                "max_rate",
                "steps",
                "arrivals",
                "requests_per_rate",
                "seconds_per_rate",
                "max_concurrency",
                "seed",
                "stop",
            },
        }[p]
        for name in sorted(self.model_fields_set - allowed - {"profile", "warmup"}):
            owners = [k for k, v in _OWNERS.items() if name in v]
            raise ValueError(
                f"`{name}` does not apply to profile {p!r} (it belongs to {' / '.join(owners)}); remove it"
            )
        if p in ("constant", "poisson") and self.rate is None:
            raise ValueError(f"profile {p!r} needs `rate` (requests per second), e.g. rate: 10")
        if p == "sweep":
            self._check_sweep()
        return self

    def _check_sweep(self) -> None:
        if self.rates is not None:
            if any(x is not None for x in (self.min_rate, self.max_rate, self.steps)):
                raise ValueError("give either `rates` or `min_rate`/`max_rate`/`steps`, not both")
            bad = [r for r in self.rates if not (r > 0 and math.isfinite(r))]
            if bad:
                raise ValueError(
                    f"every rate must be a positive number of requests per second (got {bad[0]!r})"
                )
            if any(b <= a for a, b in zip(self.rates, self.rates[1:], strict=False)):
                raise ValueError(f"`rates` must increase strictly, lowest first (got {self.rates})")
        elif self.min_rate is None or self.max_rate is None or self.steps is None:
            raise ValueError(
                "a sweep needs its rates: `rates: [1, 2, 5, 10]`, or `min_rate`, `max_rate` and `steps`"
            )
        elif self.min_rate >= self.max_rate:
            raise ValueError(f"`min_rate` ({self.min_rate:g}) must be below `max_rate` ({self.max_rate:g})")
        if (self.requests_per_rate is None) == (self.seconds_per_rate is None):
            raise ValueError(
                "a sweep needs the size of each stage: `requests_per_rate` (calls) or `seconds_per_rate`"
            )
        small = [r for r in self.sweep_rates() if self._stage_requests(r) < MIN_STAGE_REQUESTS]
        if small:
            raise ValueError(
                f"at {small[0]:g} req/s a stage of {self.seconds_per_rate:g} s has fewer than "
                f"{MIN_STAGE_REQUESTS} calls; raise `seconds_per_rate` or the lowest rate"
            )
        total = sum(self._stage_requests(r) for r in self.sweep_rates())
        if total > MAX_PLANNED_REQUESTS:
            raise ValueError(f"the sweep plans {total} calls (more than {MAX_PLANNED_REQUESTS}); shorten it")

    # -- derived values -------------------------------------------------------------------------

    @property
    def is_rate(self) -> bool:
        """Whether calls are started on a schedule (every profile but ``concurrency``)."""
        return self.profile != "concurrency"

    @property
    def stop_rule(self) -> StopRule:
        """The sweep's stop rule (defaults when not given)."""
        return self.stop or StopRule()

    def sweep_rates(self) -> list[float]:
        """The planned rates, lowest first (``[rate]`` for constant/poisson, ``[]`` for concurrency)."""
        if self.profile in ("constant", "poisson"):
            assert self.rate is not None
            return [float(self.rate)]
        if self.profile != "sweep":
            return []
        if self.rates is not None:
            return [float(r) for r in self.rates]
        assert self.min_rate is not None and self.max_rate is not None and self.steps is not None
        ratio = (self.max_rate / self.min_rate) ** (1.0 / (self.steps - 1))
        # Geometric spacing (like guidellm's sweep): equal steps on the log scale the curve is read on.
        return [round(self.min_rate * ratio**i, 6) for i in range(self.steps - 1)] + [float(self.max_rate)]

    def _stage_requests(self, rate: float) -> int:
        if self.requests_per_rate is not None:
            return self.requests_per_rate
        assert self.seconds_per_rate is not None
        return max(1, math.ceil(rate * self.seconds_per_rate - 1e-9))

    def warmup_requests(self) -> int | None:
        """Warm-up calls known before the run (``None``: none, or decided by the clock)."""
        if self.warmup is None:
            return None
        if self.warmup.requests is not None:
            return self.warmup.requests
        rates = self.sweep_rates()
        return math.ceil(rates[0] * (self.warmup.seconds or 0.0) - 1e-9) if rates else None

    def requests_needed(self) -> int | None:
        """Calls a sweep needs (warm-up and every stage); ``None``: the run's own calls, once each."""
        if self.profile != "sweep":
            return None
        return (self.warmup_requests() or 0) + sum(self._stage_requests(r) for r in self.sweep_rates())

    def stage_plans(self, provider_concurrency: int, *, seed: int = 0) -> list[StagePlan]:
        """The stages to run, warm-up first.

        Args:
            provider_concurrency: The provider's ``concurrency`` (the ``concurrency`` profile's
                default).
            seed: The run's seed (used when the profile sets none).
        """
        base = self.seed if self.seed is not None else seed
        cap = self.max_concurrency or DEFAULT_MAX_CONCURRENCY
        if self.profile == "concurrency":
            conc = self.concurrency or provider_concurrency
            stages = [StagePlan(0, "concurrency", None, conc, None)]
            if self.warmup is not None:
                stages.insert(
                    0,
                    StagePlan(
                        -1, "concurrency", None, conc, self.warmup.requests, self.warmup.seconds, warmup=True
                    ),
                )
            return stages
        arrivals: Arrivals = "poisson" if self.profile == "poisson" else "constant"
        if self.profile == "sweep":
            arrivals = self.arrivals
        rates = self.sweep_rates()
        stages = [
            StagePlan(
                i,
                arrivals,
                rate,
                cap,
                self._stage_requests(rate) if self.profile == "sweep" else None,
                seed=stage_seed(base, i),
            )
            for i, rate in enumerate(rates)
        ]
        warm = self.warmup_requests()
        if warm:
            stages.insert(
                0, StagePlan(-1, arrivals, rates[0], cap, warm, seed=stage_seed(base, -1), warmup=True)
            )
        return stages


_OWNERS: dict[str, set[str]] = {
    "concurrency": {"concurrency"},
    "constant / poisson": {"rate", "max_concurrency"},
    "poisson / sweep": {"seed"},
    "sweep": {
        "rates",
        "min_rate",
        "max_rate",
        "steps",
        "arrivals",
        "requests_per_rate",
        "seconds_per_rate",
        "max_concurrency",
        "stop",
    },
}


def requests_for(profile: LoadProfile, requests: Sequence[ChatRequest]) -> list[ChatRequest]:
    """The calls a provider makes under ``profile``, in schedule order.

    Every profile but ``sweep`` makes the run's calls once each. A sweep needs
    :meth:`LoadProfile.requests_needed` calls: the run's calls are cycled, each new pass with
    fresh repeat indices (so every call has its own journal key and request seed).

    Raises:
        ValueError: No calls, or a warm-up that leaves no call to measure.
    """
    if not requests:
        raise ValueError("the load profile has no calls to schedule: give `prompts`")
    needed = profile.requests_needed()
    if needed is None:
        warm = profile.warmup_requests()
        if warm is not None and warm > len(requests) - MIN_STAGE_REQUESTS:
            raise ValueError(
                f"the warm-up takes {warm} of the provider's {len(requests)} calls and leaves fewer than "
                f"{MIN_STAGE_REQUESTS} to measure; lower `warmup` or add prompts (or `repeats`)"
            )
        return list(requests)
    stride = max(r.repeat for r in requests) + 1
    out: list[ChatRequest] = []
    for i in range(needed):
        cycle, j = divmod(i, len(requests))
        base = requests[j]
        out.append(base if cycle == 0 else replace(base, repeat=base.repeat + cycle * stride))
    return out
