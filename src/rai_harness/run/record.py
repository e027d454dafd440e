"""The versioned run record (``run.json``) and per-sample lines (``samples.jsonl``).

``run.json`` is what reports and the CI gate read; it is a pydantic model with a
``schema_version`` that is bumped whenever its format changes, so a reader can refuse
(or migrate) a record it does not understand.

Percentiles use linear interpolation between order statistics (numpy's default,
Hyndman & Fan type 7), the same as pandas and most dashboards.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rai_harness.pricing import ResolvedPrice, busy_seconds
from rai_harness.run.runner import CallRecord
from rai_harness.stats import Estimate
from rai_harness.suites.metrics import Breakdown, MetricSpec

__all__ = [
    "SCHEMA_VERSION",
    "Comparison",
    "CostSummary",
    "DatasetInfo",
    "Distribution",
    "GuardHealth",
    "ProviderSummary",
    "RunRecord",
    "SuiteEfficiency",
    "SuiteResult",
    "SuiteRun",
    "UsageSummary",
    "read_run_record",
    "read_samples",
    "summarize_guard",
    "summarize_provider",
    "write_json_atomic",
    "write_samples",
]

#: 1: calls only. 2: adds ``suites`` (scores, metrics with intervals) and per-sample ``scores``.
#: 3: adds ``reproducibility`` and ``providers[*].guard`` (rail failures, slow rails).
SCHEMA_VERSION = 3


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


#: ``CallError.type`` of a call failed by a rail (``guardrails.provider.GUARD_ERROR``/``GUARD_TIMEOUT``).
_GUARD_ERROR_TYPES = {"guard_error": "rail_errors", "guard_timeout": "rail_timeouts"}


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


def summarize_guard(records: Sequence[CallRecord], guarded_by: Mapping[str, Any]) -> GuardHealth:
    """Count a guarded provider's rail failures and slow rails from its call records."""
    counts: Counter[str] = Counter()
    slow: Counter[str] = Counter()
    for record in records:
        if record.error is not None and record.error.type in _GUARD_ERROR_TYPES:
            counts["failed_calls"] += 1
            counts[_GUARD_ERROR_TYPES[record.error.type]] += 1
        verdict = record.guard
        if not record.ok or not isinstance(verdict, Mapping):
            continue
        counts["checked_calls"] += 1
        counts["rail_errors"] += int(verdict.get("rail_errors") or 0)
        counts["rail_timeouts"] += int(verdict.get("rail_timeouts") or 0)
        for name in verdict.get("slow_rails") or ():
            slow[str(name)] += 1
    return GuardHealth(
        rail_failure_policy=str(guarded_by.get("rail_errors") or "on_error of each rail"),
        checked_calls=counts["checked_calls"],
        failed_calls=counts["failed_calls"],
        rail_errors=counts["rail_errors"],
        rail_timeouts=counts["rail_timeouts"],
        slow_rails=sum(slow.values()),
        slow_by_rail=dict(sorted(slow.items())),
    )


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
    latency_s: Distribution
    ttft_s: Distribution
    output_tokens_per_s: Distribution
    cost: CostSummary
    model_info: dict[str, Any] = Field(default_factory=dict)
    guard: GuardHealth | None = Field(None, description="Rail failures and slow rails of a guarded provider.")


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


class RunRecord(BaseModel):
    """Everything needed to report on, gate on, or reproduce a run."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    name: str
    status: str = Field(
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
    timing_quality: dict[str, Any] = Field(default_factory=dict)
    suites: dict[str, SuiteRun] = Field(default_factory=dict)
    samples_file: str = "samples.jsonl"
    reproducibility: dict[str, Any] = Field(
        default_factory=dict, description="What was seeded, and what a rerun cannot reproduce (and why)."
    )


def summarize_provider(
    kind: str,
    model: str,
    records: Sequence[CallRecord],
    price: ResolvedPrice | None,
    model_info: dict[str, Any],
) -> ProviderSummary:
    """Aggregate one provider's records (costs must already be filled in)."""
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    errors = Counter(r.error.type if r.error else "unknown" for r in failed)
    finish = Counter(r.finish_reason or "unknown" for r in ok)
    usage = UsageSummary(
        prompt_tokens=sum(r.prompt_tokens or 0 for r in ok),
        completion_tokens=sum(r.completion_tokens or 0 for r in ok),
        estimated_calls=sum(1 for r in ok if r.tokens_estimated),
    )
    return ProviderSummary(
        kind=kind,
        model=model,
        calls=len(records),
        succeeded=len(ok),
        failed=len(failed),
        reused=sum(1 for r in records if r.cached),
        error_rate=(len(failed) / len(records)) if records else 0.0,
        errors_by_type=dict(errors),
        retried_calls=sum(1 for r in records if r.attempts > 1),
        attempts=sum(r.attempts for r in records),
        finish_reasons=dict(finish),
        usage=usage,
        latency_s=Distribution.of(r.latency_s for r in ok),
        ttft_s=Distribution.of(r.ttft_s for r in ok),
        output_tokens_per_s=Distribution.of(r.output_tokens_per_s for r in ok),
        cost=_cost_summary(ok, price, usage),
        model_info=model_info,
        guard=summarize_guard(records, guarded_by)
        if isinstance(guarded_by := model_info.get("guarded_by"), Mapping)
        else None,
    )


def _cost_summary(ok: Sequence[CallRecord], price: ResolvedPrice | None, usage: UsageSummary) -> CostSummary:
    if price is None:
        return CostSummary(priced_by="not priced")
    costs = [r.cost_usd for r in ok if r.cost_usd is not None]
    total = float(sum(costs)) if costs else (0.0 if not ok else None)
    per_call = (total / len(ok)) if (total is not None and ok) else None
    busy = (
        busy_seconds((r.finished_at - (r.latency_s or 0.0), r.finished_at) for r in ok)
        if price.hourly
        else None
    )
    return CostSummary(
        priced_by="hourly" if price.hourly else "tokens",
        source=price.source,
        input_per_1m=price.input_per_1m,
        output_per_1m=price.output_per_1m,
        usd_per_hour=price.usd_per_hour,
        busy_s=busy,
        total_usd=total,
        per_call_usd=per_call,
        per_1k_calls_usd=per_call * 1000 if per_call is not None else None,
        estimated=usage.estimated_calls > 0,
    )


def write_json_atomic(path: Path, data: str) -> None:
    """Write text to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_samples(path: Path, records: Iterable[CallRecord]) -> int:
    """Write one JSON object per record to ``path`` atomically; return the count."""
    lines = [json.dumps(r.to_dict(), ensure_ascii=False, default=str) for r in records]
    write_json_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def read_samples(path: str | Path) -> list[CallRecord]:
    """Read ``samples.jsonl`` back into records."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(CallRecord.from_dict(json.loads(line)))
    return out


def read_run_record(run_dir: str | Path) -> RunRecord:
    """Load ``run.json`` from a run folder (or the file itself); the one reader of run records.

    The schema version is checked before validation, so a record from a newer rai-harness is
    refused with "upgrade" rather than with a confusing unknown-key error.

    Raises:
        ConfigError: The file is missing, unreadable, not JSON, from a newer rai-harness (a
            higher ``schema_version``), or does not match this schema.
    """
    from pydantic import ValidationError

    from rai_harness.config import format_validation_error
    from rai_harness.errors import ConfigError

    path = Path(run_dir)
    if path.suffix != ".json" or path.is_dir():
        path = path / "run.json"
    file = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            "run record not found; pass the folder `rai run` wrote (it holds run.json)", file=file
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else "unreadable"
        raise ConfigError(
            f"cannot read the run record: {what} ({exc}); was the run interrupted? Rerun `rai run` "
            "on the same config to rewrite it",
            file=file,
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError("the run record must be a JSON object", file=file)
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ConfigError(
            f"schema_version {version!r} is newer than this rai-harness reads ({SCHEMA_VERSION}): "
            "upgrade rai-harness",
            file=file,
            key_path="schema_version",
        )
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        err = format_validation_error(exc, file, "", RunRecord)
        raise ConfigError(
            f"not a valid run record: {err.detail}; rerun `rai run` on the same config to rewrite it",
            file=file,
            key_path=err.key_path,
        ) from exc
