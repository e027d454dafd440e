"""``--format json``: a compact machine summary of a run for dashboards and CI.

One object: the run's identity and status, and per provider its efficiency and, per suite,
every metric with its interval, direction and n. Numbers are raw (rates as fractions, seconds,
USD), ``null`` when missing, with the reason in ``note``.
"""

from __future__ import annotations

from typing import Any

from rai_harness.record import Distribution, RunRecord
from rai_harness.report.policy import PolicyView
from rai_harness.report.viewmodel import guard_pairs
from rai_harness.stats import Estimate

__all__ = ["SUMMARY_FORMAT", "SUMMARY_VERSION", "build_summary"]

SUMMARY_FORMAT = "rai-harness/report-summary"
#: Bumped whenever the summary's keys change meaning.
SUMMARY_VERSION = 1


def _est(est: Estimate | None) -> dict[str, Any] | None:
    if est is None:
        return None
    out: dict[str, Any] = {"value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high, "n": est.n}
    if est.note:
        out["note"] = est.note
    return out


def _dist(d: Distribution) -> dict[str, Any]:
    return {"n": d.n, "p50": d.p50, "p95": d.p95, "p99": d.p99}


def build_summary(record: RunRecord, policy: PolicyView | None = None) -> dict[str, Any]:
    """The summary as a JSON-ready dict.

    Args:
        record: The run record.
        policy: The gate verdict, when ``--policy`` was given.

    Returns:
        ``{format, version, run, providers, guard_comparisons, policy}``.
    """
    providers: dict[str, Any] = {}
    for pid, s in record.providers.items():
        suites: dict[str, Any] = {}
        for name, suite in record.suites.items():
            res = suite.results.get(pid)
            if suite.error:
                suites[name] = {"error": suite.error}
                continue
            if res is None:
                continue
            suites[name] = {
                "calls": res.calls,
                "failed": res.failed,
                "metrics": {
                    spec.name: {
                        **(_est(res.metrics.get(spec.name)) or {"value": None, "note": "not computed"}),
                        "direction": spec.direction,
                        "unit": spec.unit,
                        "headline": spec.headline,
                    }
                    for spec in suite.metrics
                },
            }
        providers[pid] = {
            "kind": s.kind,
            "model": s.model,
            "efficiency": {
                "calls": s.calls,
                "failed": s.failed,
                "error_rate": s.error_rate,
                "retried_calls": s.retried_calls,
                "latency_s": _dist(s.latency_s),
                "ttft_s": _dist(s.ttft_s),
                "output_tokens_per_s_p50": s.output_tokens_per_s.p50,
                "cost": {
                    "priced_by": s.cost.priced_by,
                    "total_usd": s.cost.total_usd,
                    "per_1k_calls_usd": s.cost.per_1k_calls_usd,
                    "estimated": s.cost.estimated,
                },
            },
            "suites": suites,
        }
    pairs = guard_pairs(record)
    guard: list[dict[str, Any]] = []
    for g, u in pairs:
        for name, suite in record.suites.items():
            for c in suite.comparisons:
                if {c.a, c.b} == {g, u}:
                    sign = 1.0 if c.a == g else -1.0
                    d = c.diff
                    lo, hi = (
                        (d.ci_low, d.ci_high)
                        if sign > 0
                        else (
                            None if d.ci_high is None else -d.ci_high,
                            None if d.ci_low is None else -d.ci_low,
                        )
                    )
                    guard.append(
                        {
                            "suite": name,
                            "metric": c.metric,
                            "guarded": g,
                            "unguarded": u,
                            "diff": None if d.value is None else sign * d.value,
                            "ci_low": lo,
                            "ci_high": hi,
                            "p_value": c.p_value,
                            "test": c.test,
                            "n": c.n,
                        }
                    )
    return {
        "format": SUMMARY_FORMAT,
        "version": SUMMARY_VERSION,
        "run": {
            "name": record.name,
            "run_id": record.run_id,
            "status": record.status,
            "problems": record.problems,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "duration_s": record.duration_s,
            "seed": record.seed,
            "schema_version": record.schema_version,
        },
        "providers": providers,
        "guard_comparisons": guard,
        "policy": None
        if policy is None
        else {"path": policy.path, "name": policy.name, "status": policy.status, "note": policy.note},
    }
