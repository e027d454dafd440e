"""The gate itself: run record + policy -> verdict. Pure: it reads no file and calls no model.

:func:`evaluate_run_dir` is the file-reading wrapper the CLI uses: it turns an unreadable
policy, ``run.json`` or baseline into an error verdict (exit code 2), so a CI job still gets
a JUnit file and a summary that say what went wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rai_harness.errors import ConfigError
from rai_harness.gate.metrics import (
    StageMiss,
    SuiteMetric,
    abs_interval,
    lookup_efficiency_metric,
    lookup_stage_metric,
    lookup_suite_metric,
)
from rai_harness.gate.policy import Bound, Check, GatePolicy, load_gate_policy
from rai_harness.gate.regression import evaluate_regression
from rai_harness.gate.verdict import GateVerdict, RuleResult, Status, num
from rai_harness.record import SCHEMA_VERSION, RunRecord, read_run_record
from rai_harness.stats import Estimate

__all__ = ["evaluate", "evaluate_run_dir"]


def _interval_text(est: Estimate, unit: str, *, show_value: bool) -> str:
    parts = [f"value {num(est.value, unit)}"] if show_value else []
    if est.ci_low is not None and est.ci_high is not None:
        parts.append(f"{est.confidence:.0%} CI [{num(est.ci_low)}, {num(est.ci_high)}]")
    parts.append(f"n={est.n}")
    return ", ".join(parts)


def _run_result(status: Status, message: str, rule_id: str = "run status") -> RuleResult:
    return RuleResult(
        rule_id=rule_id,
        description="The run finished within its error budget, with every suite scored.",
        kind="run",
        provider=None,
        metric="status",
        status=status,
        message=message,
    )


def _run_status(record: RunRecord) -> RuleResult:
    """The run's status: ``complete`` passes, ``failed`` (error budget) fails, else an error."""
    problems = "; ".join(record.problems) or "no problem recorded"
    if record.status == "complete":
        return _run_result("pass", "the run is complete")
    if record.status == "failed":
        return _run_result("fail", f"the run failed its error budget: {problems}")
    if record.status == "incomplete":
        return _run_result("error", f"the run is incomplete, so some metrics are missing: {problems}")
    return _run_result("error", f"unknown run status {record.status!r}: {problems}")


def _compared(est: Estimate, bound: Bound, magnitude: bool) -> float | None:
    """The number a check compares: one of the estimate's three, or its magnitude.

    With ``abs``, the interval is mapped through ``|x|`` first, so ``ci_high`` is the end
    farthest from 0 and ``ci_low`` the nearest (0 when the interval straddles 0).
    """
    if not magnitude:
        return est.bound(bound)
    if bound == "value":
        return None if est.value is None else abs(est.value)
    if est.ci_low is None or est.ci_high is None:
        return None
    near, far = abs_interval(est.ci_low, est.ci_high)
    return far if bound == "ci_high" else near


def _satisfies(x: float, check: Check) -> bool:
    return x <= check.threshold if check.side == "max" else x >= check.threshold


def _check_provider(record: RunRecord, check: Check, provider: str) -> RuleResult:
    ref = check.metric
    eff = ref.efficiency
    unit = eff.unit if eff is not None else ""
    result = _unevaluated(check, provider)
    found: Estimate | SuiteMetric | StageMiss | str
    if check.at_rate is not None:
        found = lookup_stage_metric(record, ref, provider, check.at_rate)
    elif eff is not None:
        found = lookup_efficiency_metric(record, ref, provider)
    else:
        found = lookup_suite_metric(record, ref, provider)
    if isinstance(found, StageMiss):
        return replace(result, status="fail" if found.fail else "error", message=found.message)
    if isinstance(found, str):
        return replace(result, message=found)
    est = found if isinstance(found, Estimate) else found.estimate
    result = replace(
        result,
        value=est.value,
        ci_low=est.ci_low,
        ci_high=est.ci_high,
        confidence=est.confidence if est.ci_low is not None else None,
        n=est.n,
        method=None if est.method == "none" else est.method,
    )
    measured = _compared(est, check.bound, check.abs)
    if measured is None or math.isnan(measured):  # NaN: not computed (it would fail no comparison)
        why = f" ({est.note})" if est.note else ""
        return replace(
            result,
            message=f"{ref.text} has no {check.bound}{why}: no confidence interval to decide on; run more "
            f"items, or set `bound: value` in {check.source} to decide on the point value",
        )
    passed = _satisfies(measured, check)
    lag_s = _harness_lag_s(record, provider, ref.text)
    if not passed and lag_s and check.side == "max" and _satisfies(measured - lag_s, check):
        # The harness's own event loop lagged by more than the margin of the failure, so the
        # provider may well be within budget: a definite "fail" (exit 1) would blame the model
        # for the machine's load.
        return replace(
            result,
            status="error",
            measured=measured,
            message=f"{num(measured, unit)} > max {num(check.threshold, unit)}, but by less than the "
            f"harness's own event-loop lag during the calls ({num(lag_s, 's')} at p99): the measurement "
            "cannot decide; rerun on a quieter machine or with lower concurrency (run.json: timing_quality)",
        )
    shown = f"|{check.bound}|" if check.abs else check.bound
    relation = check.op if passed else (">" if check.side == "max" else "<")
    at = f" at {check.at_rate:g} req/s" if check.at_rate is not None else ""
    message = (
        f"{shown} {num(measured, unit)}{at} {relation} {check.side} {num(check.threshold, unit)} "
        # The point value is repeated only when something else (a bound, a magnitude) was compared.
        f"({_interval_text(est, unit, show_value=check.bound != 'value' or check.abs)})"
    )
    if not passed and check.bound != "value" and est.value is not None:
        point = abs(est.value) if check.abs else est.value
        if _satisfies(point, check):
            message += (
                "; the point value passes but the conservative end of the interval does not: more "
                "items narrow the interval"
            )
    return replace(result, status="pass" if passed else "fail", measured=measured, message=message)


def _unevaluated(check: Check, provider: str | None) -> RuleResult:
    """The check's result before (or without) a measurement: an error with no message yet."""
    return RuleResult(
        rule_id=check.id,
        description=check.description,
        kind="rule",
        provider=provider,
        metric=check.metric.text,
        status="error",
        message="",
        bound=check.bound,
        op=check.op,
        threshold=check.threshold,
        source=check.source,
    )


#: Metrics the harness's event-loop lag can inflate (it delays the timestamps a call takes).
_TIMED = ("latency.", "ttft.")


def _harness_lag_s(record: RunRecord, provider: str, metric: str) -> float:
    """The run's p99 event-loop lag in seconds, for a latency or TTFT metric of a provider that
    timed its own calls (a replayed log carries the timings it recorded); else 0."""
    summary = record.providers.get(provider)
    if not metric.startswith(_TIMED) or summary is None or summary.kind == "replay":
        return 0.0
    lag = (record.timing_quality or {}).get("event_loop_lag_ms") or {}
    p99 = lag.get("p99_ms") if isinstance(lag, dict) else None
    return float(p99) / 1000.0 if isinstance(p99, int | float) and math.isfinite(p99) and p99 > 0 else 0.0


def _check_results(record: RunRecord, check: Check) -> list[RuleResult]:
    providers: Sequence[str] = check.providers or tuple(record.providers)
    if not providers:
        return [replace(_unevaluated(check, None), message="the run has no providers to check")]
    return [_check_provider(record, check, p) for p in providers]


def evaluate(
    record: RunRecord,
    policy: GatePolicy,
    *,
    baseline: RunRecord | None = None,
    run_dir: str | Path | None = None,
    baseline_dir: str | Path | None = None,
) -> GateVerdict:
    """Decide whether a run passes a policy.

    Results, in order: the run's status (``complete`` passes, ``failed`` fails, anything else
    is an error), then every threshold check for each of its providers, then every regression
    for each provider. Anything that cannot be evaluated (a suite not in the run, a provider
    without results, a value or interval that was not computed, regressions without a
    baseline) is an ``error`` result, so the verdict's exit code is 2, never 0.

    Args:
        record: The run record.
        policy: The validated policy.
        baseline: The baseline run record, for ``regressions``.
        run_dir: The run folder (for messages and the verdict).
        baseline_dir: The baseline's folder (for messages and the verdict).

    Returns:
        The verdict.
    """
    plan = policy.expand()
    results: list[RuleResult]
    if record.schema_version > SCHEMA_VERSION:
        # A newer format may mean different things by the same keys: decide nothing on it.
        results = [
            _run_result(
                "error",
                f"the run record has schema_version {record.schema_version}; this rai-harness reads "
                f"up to {SCHEMA_VERSION}: upgrade rai-harness",
                rule_id="run record",
            )
        ]
    else:
        results = [_run_status(record)]
        for check in plan.checks:
            results.extend(_check_results(record, check))
        for reg in plan.regressions:
            results.extend(
                evaluate_regression(
                    record, reg, baseline=baseline, baseline_dir=str(baseline_dir) if baseline_dir else None
                )
            )
    return GateVerdict(
        results=tuple(results),
        policy_name=policy.name,
        policy_file=policy.source,
        run_name=record.name,
        run_id=record.run_id,
        run_dir=str(run_dir) if run_dir is not None else None,
        baseline_dir=str(baseline_dir) if baseline_dir is not None else None,
    )


def _load_error(rule_id: str, exc: ConfigError) -> RuleResult:
    return RuleResult(
        rule_id=rule_id,
        description="",
        kind="run",
        provider=None,
        metric="",
        status="error",
        message=str(exc),
    )


def evaluate_run_dir(
    run_dir: str | Path,
    policy: str | Path | GatePolicy,
    *,
    baseline_dir: str | Path | None = None,
) -> GateVerdict:
    """Load the policy, the run record and the baseline, then :func:`evaluate`.

    A file that cannot be read or validated becomes an error result (exit code 2) rather
    than an exception, so the caller can still write JUnit and Markdown that say why.

    Args:
        run_dir: The run folder (or its ``run.json``).
        policy: The policy, or its YAML file.
        baseline_dir: The baseline run folder, for ``regressions``.

    Returns:
        The verdict.
    """
    errors: list[RuleResult] = []
    loaded: GatePolicy | None = None
    if isinstance(policy, GatePolicy):
        loaded = policy
    else:
        try:
            loaded = load_gate_policy(policy)
        except ConfigError as exc:
            errors.append(_load_error("gate policy", exc))
    record: RunRecord | None = None
    try:
        record = read_run_record(run_dir)
    except ConfigError as exc:
        errors.append(_load_error("run record", exc))
    baseline: RunRecord | None = None
    if baseline_dir is not None:
        try:
            baseline = read_run_record(baseline_dir)
        except ConfigError as exc:
            errors.append(_load_error("baseline record", exc))
    if loaded is not None and record is not None and not errors:
        return evaluate(record, loaded, baseline=baseline, run_dir=run_dir, baseline_dir=baseline_dir)
    return GateVerdict(
        results=tuple(errors),
        policy_name=loaded.name if loaded is not None else Path(str(policy)).stem,
        policy_file=loaded.source if loaded is not None else str(policy),
        run_name=record.name if record is not None else None,
        run_id=record.run_id if record is not None else None,
        run_dir=str(run_dir),
        baseline_dir=str(baseline_dir) if baseline_dir is not None else None,
    )
