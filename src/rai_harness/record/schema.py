"""The schema of the versioned run record (``run.json``).

``run.json`` is what reports and the CI gate read; it is a pydantic model with a
``schema_version`` that is bumped whenever its format changes, so a reader can refuse
(or migrate) a record it does not understand. Its one reader and writer live in
:mod:`rai_harness.record.io`; the per-sample lines in :mod:`rai_harness.record.calls`.

Percentiles use linear interpolation between order statistics (numpy's default,
Hyndman & Fan type 7), the same as pandas and most dashboards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rai_harness.record.metrics import Breakdown, MetricSpec
from rai_harness.stats.estimate import Estimate

__all__ = [
    "SCHEMA_VERSION",
    "Comparison",
    "CostSummary",
    "DatasetInfo",
    "Distribution",
    "GuardHealth",
    "JudgeInfo",
    "LoadStage",
    "LoadSummary",
    "ProviderSummary",
    "Rescore",
    "RunRecord",
    "RunStatus",
    "SuiteEfficiency",
    "SuiteResult",
    "SuiteRun",
    "UsageSummary",
]

#: 1: calls only. 2: adds ``suites`` (scores, metrics with intervals) and per-sample ``scores``.
#: 3: adds ``reproducibility`` and ``providers[*].guard`` (rail failures, slow rails).
#: 4: adds ``rescore`` (provenance of a record written by ``rai score``); ``status`` is enumerated.
#: 5: adds ``providers[*].load`` (load profile: warm-up, per-stage rates and percentiles) and
#: the per-call ``load`` schedule in ``samples.jsonl``.
#: 6: adds ``judges`` (judge providers' calls, latency, cost), ``judge_calls_file`` and ``suites[*].judge``.
#: 7: ``latency_s``/``ttft_s`` count from the request's send where the transport sees it; adds
#: ``providers[*].connect_s`` and the per-call ``connect_s`` (the wait before the send).
SCHEMA_VERSION = 7

#: ``complete``; ``failed``: an error budget was exceeded; ``incomplete``: a suite could not be scored.
RunStatus = Literal["complete", "failed", "incomplete"]


class Distribution(BaseModel):
    """Summary of a timing or throughput distribution (seconds or tokens/s)."""

    model_config = ConfigDict(extra="forbid")

    n: int
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Distribution:
        """Summarise the non-missing, finite values."""
        data = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
        if data.size == 0:
            return cls(n=0)
        p50, p90, p95, p99 = np.percentile(data, [50, 90, 95, 99])
        return cls(
            n=int(data.size),
            mean=float(data.mean()),
            p50=float(p50),
            p90=float(p90),
            p95=float(p95),
            p99=float(p99),
            min=float(data.min()),
            max=float(data.max()),
        )


class UsageSummary(BaseModel):
    """Token totals of the successful calls."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_calls: int = Field(0, description="Calls whose counts come from a local tokenizer.")


class CostSummary(BaseModel):
    """Cost of a provider's calls in USD; every figure is ``None`` when not priced."""

    model_config = ConfigDict(extra="forbid")

    priced_by: str = Field(..., description="'tokens', 'hourly' or 'not priced'.")
    source: str | None = None
    input_per_1m: float | None = None
    output_per_1m: float | None = None
    usd_per_hour: float | None = None
    busy_s: float | None = Field(None, description="Hourly pricing: union of call intervals, seconds.")
    total_usd: float | None = None
    per_call_usd: float | None = Field(None, description="Mean over successful calls.")
    per_1k_calls_usd: float | None = None
    estimated: bool = Field(False, description="True when some token counts were estimated.")


class GuardHealth(BaseModel):
    """How a guarded provider's rails behaved in a run: the numbers behind its guarded comparison.

    In a run (evaluation mode) a failed rail fails its call (counted in ``failed_calls``
    and ``rail_errors``/``rail_timeouts``) instead of applying the rail's ``on_error``, and
    rails have no wall-clock timeout of their own, so ``slow_rails`` counts the rail checks
    that were slower than the policy's ``timeout_ms``: in production those would have given
    up and applied ``on_error``. None of them changed a verdict in this run.
    """

    model_config = ConfigDict(extra="forbid")

    rail_failure_policy: str = Field(
        "fail the call",
        description="'fail the call' (a run: errors, never allow/block) or 'on_error of each rail'.",
    )
    checked_calls: int = Field(0, description="Successful calls with a guard verdict.")
    failed_calls: int = Field(0, description="Calls failed because a rail failed or timed out.")
    rail_errors: int = Field(0, description="Rail checks whose classifier raised or returned bad output.")
    rail_timeouts: int = Field(0, description="Rail checks that gave up waiting for their classifier.")
    slow_rails: int = Field(
        0, description="Rail checks slower than the policy's timeout_ms (no verdict changed)."
    )
    slow_by_rail: dict[str, int] = Field(default_factory=dict, description="'<stage>:<rail>' -> slow checks.")

    @property
    def failures(self) -> int:
        """Rail errors plus rail timeouts."""
        return self.rail_errors + self.rail_timeouts


class LoadStage(BaseModel):
    """One stage of a load profile: a rate (or a fixed concurrency) and what it measured.

    Throughputs are per second of the stage's own clock. ``achieved_rps`` is the rate of the
    successful completions (1 / the least-squares gap between consecutive completions, so it
    is not biased by the stage's ramp-up and drain, nor swung by one slow first or last call);
    ``offered_rps`` is the same rate of the stage's scheduled arrivals (under Poisson arrivals
    it differs a little from ``rate``).
    """

    model_config = ConfigDict(extra="forbid")

    index: int
    arrivals: str = Field(..., description="'concurrency', 'constant' or 'poisson'.")
    rate: float | None = Field(None, description="Target requests per second (None: fixed concurrency).")
    concurrency: int = Field(..., description="Calls in flight at once (the cap, under a rate).")
    calls: int
    succeeded: int
    failed: int
    error_rate: float
    duration_s: float | None = Field(None, description="First start to last finish, seconds.")
    offered_rps: float | None = Field(None, description="Rate of the scheduled arrivals, requests/s.")
    achieved_rps: float | None = Field(
        None, description="Successful calls completed per second (least-squares rate of the completions)."
    )
    throughput_ratio: float | None = Field(None, description="achieved_rps / offered_rps.")
    capped_starts: int = Field(0, description="Calls that waited for a free slot past their due time.")
    start_lag_s: Distribution = Field(..., description="How late calls started versus their schedule.")
    latency_s: Distribution
    ttft_s: Distribution
    output_tokens_per_s: Distribution
    saturated: bool | None = Field(None, description="Whether the stop rule judged the stage saturated.")
    stop_reason: str | None = Field(None, description="Why the stage counts as saturated.")


class LoadSummary(BaseModel):
    """How a provider's calls were scheduled (``load:`` of the run config) and what each stage measured.

    Warm-up calls are counted in the provider's ``calls``, errors, usage and cost, and left out
    of its ``latency_s``, ``ttft_s`` and ``output_tokens_per_s`` and of every stage.
    """

    model_config = ConfigDict(extra="forbid")

    profile: str = Field(..., description="'concurrency', 'constant', 'poisson' or 'sweep'.")
    settings: dict[str, Any] = Field(default_factory=dict, description="The load section as configured.")
    stop_rule: str | None = Field(None, description="A sweep's stop rule in words.")
    planned_rates: list[float] = Field(default_factory=list, description="Rates planned, lowest first.")
    warmup_calls: int = Field(0, description="Calls made as warm-up (excluded from timing statistics).")
    warmup_excluded_from: list[str] = Field(default_factory=list)
    stages: list[LoadStage] = Field(default_factory=list)
    stopped_at_rate: float | None = Field(None, description="The saturated stage that ended a sweep.")
    stop_reason: str | None = None
    max_sustained_rate: float | None = Field(
        None, description="Highest rate whose stage was not saturated (None when none was)."
    )
    unreached_rates: list[float] = Field(default_factory=list, description="Planned rates not run.")

    def stage_at(self, rate: float) -> LoadStage | None:
        """The measured stage at ``rate`` requests/s (relative tolerance 1e-6), if any."""
        for stage in self.stages:
            if stage.rate is not None and math.isclose(stage.rate, rate, rel_tol=1e-6):
                return stage
        return None


class ProviderSummary(BaseModel):
    """Per-provider counts, latency, throughput and cost."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    model: str
    calls: int
    succeeded: int
    failed: int
    reused: int = Field(0, description="Records taken from the journal (resume) instead of called.")
    error_rate: float
    errors_by_type: dict[str, int] = Field(default_factory=dict)
    retried_calls: int = 0
    attempts: int = 0
    finish_reasons: dict[str, int] = Field(default_factory=dict)
    usage: UsageSummary
    latency_s: Distribution = Field(
        ...,
        description="Request sent to last byte, seconds (from the call's start where the send is not seen).",
    )
    ttft_s: Distribution = Field(
        ..., description="Request sent to first content token, seconds (streamed calls)."
    )
    connect_s: Distribution | None = Field(
        None,
        description="Call start to request sent, seconds: taking or opening a pooled connection "
        "(TCP/TLS handshakes) and the client's queue; not part of latency_s or ttft_s.",
    )
    output_tokens_per_s: Distribution
    cost: CostSummary
    model_info: dict[str, Any] = Field(default_factory=dict)
    guard: GuardHealth | None = Field(None, description="Rail failures and slow rails of a guarded provider.")
    load: LoadSummary | None = Field(None, description="Load profile and per-stage (per-rate) results.")


class DatasetInfo(BaseModel):
    """A dataset the run read, identified by content hash."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str | None = None
    sha256: str
    rows: int


class SuiteEfficiency(BaseModel):
    """Latency, tokens and cost of one provider's calls for one suite."""

    model_config = ConfigDict(extra="forbid")

    calls: int
    failed: int
    latency_s: Distribution
    ttft_s: Distribution
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    cost_per_1k_samples_usd: float | None = Field(None, description="Cost per 1,000 calls of this suite.")


class SuiteResult(BaseModel):
    """One suite's results for one provider."""

    model_config = ConfigDict(extra="forbid")

    provider_id: str
    calls: int
    failed: int = Field(0, description="Calls that failed: left out of every metric, counted here.")
    metrics: dict[str, Estimate]
    breakdowns: list[Breakdown] = Field(default_factory=list)
    items: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="metric -> item id -> per-item value (paired comparisons)."
    )
    counts: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    efficiency: SuiteEfficiency


class Comparison(BaseModel):
    """A paired comparison of two providers on one metric (same items, a minus b)."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    a: str
    b: str
    diff: Estimate
    p_value: float | None = None
    test: str = Field(..., description="'paired-bootstrap' or 'mcnemar'.")
    n: int


class JudgeInfo(BaseModel):
    """The judge that produced a suite's model-graded metrics, and how far it can be trusted."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., description="The judge's id in the config's `judges`.")
    kind: str
    model: str
    rubrics: list[str] = Field(default_factory=list, description="Judge prompts used (suites.judging).")
    repeats: int = Field(1, description="Times each output was graded.")
    calibration: dict[str, Any] | None = Field(
        None,
        description="From `rai judge calibrate` (file, data hash, accuracy, kappa, confusion matrix); "
        "None when the judge was not calibrated.",
    )


class SuiteRun(BaseModel):
    """One suite across all providers of a run."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    concern: str
    title: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    scorers: dict[str, Any] = Field(default_factory=dict, description="Role -> classifier spec and info.")
    metrics: list[MetricSpec]
    datasets: list[DatasetInfo] = Field(default_factory=list)
    results: dict[str, SuiteResult] = Field(default_factory=dict)
    comparisons: list[Comparison] = Field(default_factory=list)
    error: str | None = Field(None, description="Why scoring failed; metrics are then missing.")
    judge: JudgeInfo | None = Field(None, description="The judge of the model-graded metrics, if any.")


class Rescore(BaseModel):
    """Provenance of a record written by ``rai score``: the calls are the source run's, the scores are new."""

    model_config = ConfigDict(extra="forbid")

    source_run_id: str
    source_dir: str
    source_sha256: str = Field(..., description="SHA-256 of the source run.json.")
    scored_at: str
    harness_version: str = Field(..., description="rai-harness version that re-scored.")
    suites: dict[str, str] = Field(..., description="Re-scored suite -> the suite version that scored it.")
    source_suites: dict[str, str] = Field(
        default_factory=dict, description="Suite -> its version in the source record."
    )
    environment: dict[str, Any] = Field(
        default_factory=dict, description="Where the re-scoring ran (``environment`` stays the generation's)."
    )


class RunRecord(BaseModel):
    """Everything needed to report on, gate on, or reproduce a run."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    name: str
    status: RunStatus = Field(
        ..., description="'complete', 'failed' (an error budget was exceeded) or 'incomplete'."
    )
    problems: list[str] = Field(default_factory=list)
    started_at: str
    finished_at: str
    duration_s: float
    seed: int
    config_path: str | None = None
    config_sha256: str | None = None
    config: dict[str, Any]
    environment: dict[str, Any]
    datasets: list[DatasetInfo] = Field(default_factory=list)
    providers: dict[str, ProviderSummary]
    judges: dict[str, ProviderSummary] = Field(
        default_factory=dict,
        description="Judge providers' calls, latency and cost: apart from the audited providers and "
        "outside their error budgets.",
    )
    timing_quality: dict[str, Any] = Field(default_factory=dict)
    suites: dict[str, SuiteRun] = Field(default_factory=dict)
    samples_file: str = "samples.jsonl"
    judge_calls_file: str | None = Field(None, description="The judge calls (JSONL, the samples format).")
    reproducibility: dict[str, Any] = Field(
        default_factory=dict, description="What was seeded, and what a rerun cannot reproduce (and why)."
    )
    rescore: Rescore | None = Field(None, description="Set when ``rai score`` wrote this record.")
