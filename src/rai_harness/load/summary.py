"""Per-stage statistics of a load profile, and the sweep's stop rule.

Everything here is computed from call records alone (their ``load`` schedule, written by the
runner), so the runner's in-run stop decision and the summary in ``run.json`` are the same
function of the same data, and a resumed run reaches the same decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rai_harness.load.profiles import LoadProfile, StopRule
from rai_harness.record import CallRecord, Distribution, LoadStage, LoadSummary

__all__ = [
    "WARMUP_EXCLUDED_FROM",
    "event_rate",
    "is_warmup",
    "stop_reason",
    "summarize_load",
    "summarize_stage",
]

#: What the warm-up calls are left out of (recorded in ``run.json`` as such).
WARMUP_EXCLUDED_FROM = ["latency_s", "ttft_s", "output_tokens_per_s", "load.stages"]


def is_warmup(record: CallRecord) -> bool:
    """Whether a call was made in a load profile's warm-up."""
    return bool(record.load and record.load.get("warmup"))


def event_rate(times: Sequence[float]) -> float | None:
    """Events per second of a sequence of event times: 1 / the least-squares gap.

    The slope of the sorted times against their rank is the mean gap estimated from every
    event, not only from the first and the last (whose latencies alone would swing a small
    stage's rate by their jitter); for evenly spaced events it is exactly the spacing.
    """
    if len(times) < 2:
        return None
    ordered = np.sort(np.asarray(times, dtype=float))
    if ordered[-1] - ordered[0] <= 0:
        return None
    ranks = np.arange(len(ordered), dtype=float)
    gap = float(np.polyfit(ranks, ordered, 1)[0])
    return 1.0 / gap if gap > 0 else None


def summarize_stage(records: Sequence[CallRecord], rule: StopRule | None = None) -> LoadStage:
    """The statistics of one stage's calls (all with the same ``load["stage"]``).

    Args:
        records: The stage's call records (each with its ``load`` schedule).
        rule: Judge saturation with this rule (``None``: not judged). A fixed-concurrency
            stage has no offered rate, so only its errors and latencies are judged.
    """
    if not records or any(r.load is None for r in records):
        raise ValueError("summarize_stage needs the records of one scheduled stage")
    first = records[0].load or {}
    ok = [r for r in records if r.ok]
    scheduled = [
        float(r.load["scheduled_s"]) for r in records if r.load and r.load.get("scheduled_s") is not None
    ]
    started = [float(r.load["started_s"]) for r in records if r.load and r.load.get("started_s") is not None]
    finished = [
        float(r.load["finished_s"]) for r in records if r.load and r.load.get("finished_s") is not None
    ]
    ok_finished = [float(r.load["finished_s"]) for r in ok if r.load and r.load.get("finished_s") is not None]
    offered = event_rate(scheduled)
    achieved = event_rate(ok_finished)
    stage = LoadStage(
        index=int(first.get("stage", 0)),
        arrivals=str(first.get("arrivals", "concurrency")),
        rate=first.get("rate"),
        concurrency=int(first.get("concurrency", 0)),
        calls=len(records),
        succeeded=len(ok),
        failed=len(records) - len(ok),
        error_rate=(len(records) - len(ok)) / len(records),
        duration_s=(max(finished) - min(started)) if started and finished else None,
        offered_rps=offered,
        achieved_rps=achieved,
        throughput_ratio=(achieved / offered) if (achieved is not None and offered) else None,
        capped_starts=sum(1 for r in records if r.load and r.load.get("capped")),
        start_lag_s=Distribution.of(
            float(r.load["start_lag_s"]) for r in records if r.load and r.load.get("start_lag_s") is not None
        ),
        latency_s=Distribution.of(r.latency_s for r in ok),
        ttft_s=Distribution.of(r.ttft_s for r in ok),
        output_tokens_per_s=Distribution.of(r.output_tokens_per_s for r in ok),
    )
    if rule is None:
        return stage
    reason = stop_reason(stage, rule)
    return stage.model_copy(update={"saturated": reason is not None, "stop_reason": reason})


def stop_reason(stage: LoadStage, rule: StopRule) -> str | None:
    """Why ``stage`` counts as saturated under ``rule``, or ``None`` when it does not."""
    if stage.error_rate > rule.max_error_rate:
        return f"error rate {stage.error_rate:.1%} > {rule.max_error_rate:.1%}"
    if stage.offered_rps is not None:
        if stage.achieved_rps is None:
            return f"fewer than 2 successful calls ({stage.succeeded} of {stage.calls}): no throughput"
        if stage.achieved_rps < rule.min_throughput_ratio * stage.offered_rps:
            capped = (
                f"; {stage.capped_starts} calls waited for the in-flight cap" if stage.capped_starts else ""
            )
            return (
                f"achieved {stage.achieved_rps:.3g} req/s < {rule.min_throughput_ratio:.0%} of the offered "
                f"{stage.offered_rps:.3g} req/s{capped}"
            )
    if (
        rule.max_ttft_p95_s is not None
        and stage.ttft_s.p95 is not None
        and stage.ttft_s.p95 > rule.max_ttft_p95_s
    ):
        return f"TTFT p95 {stage.ttft_s.p95:.3g} s > {rule.max_ttft_p95_s:g} s"
    if (
        rule.max_latency_p95_s is not None
        and stage.latency_s.p95 is not None
        and stage.latency_s.p95 > rule.max_latency_p95_s
    ):
        return f"latency p95 {stage.latency_s.p95:.3g} s > {rule.max_latency_p95_s:g} s"
    return None


def summarize_load(profile: LoadProfile, records: Sequence[CallRecord]) -> LoadSummary:
    """The ``providers[*].load`` section of ``run.json`` from a provider's call records."""
    by_stage: dict[int, list[CallRecord]] = {}
    warm = 0
    for r in records:
        if r.load is None:
            continue
        if r.load.get("warmup"):
            warm += 1
            continue
        by_stage.setdefault(int(r.load.get("stage", 0)), []).append(r)
    # Rate profiles judge saturation (a sweep stops on it; constant/poisson report it).
    rule = profile.stop_rule if profile.is_rate else None
    stages = [summarize_stage(by_stage[i], rule) for i in sorted(by_stage)]
    planned = profile.sweep_rates()
    saturated = next((s for s in stages if s.saturated), None)
    sustained = [s.rate for s in stages if s.saturated is False and s.rate is not None]
    measured = {s.rate for s in stages}
    return LoadSummary(
        profile=profile.profile,
        settings=profile.model_dump(mode="json", exclude_none=True),
        stop_rule=profile.stop_rule.describe() if profile.profile == "sweep" else None,
        planned_rates=planned,
        warmup_calls=warm,
        warmup_excluded_from=list(WARMUP_EXCLUDED_FROM) if profile.warmup is not None else [],
        stages=stages,
        stopped_at_rate=saturated.rate if (saturated is not None and profile.profile == "sweep") else None,
        stop_reason=saturated.stop_reason if saturated is not None else None,
        max_sustained_rate=max(sustained) if sustained else None,
        unreached_rates=[r for r in planned if r not in measured],
    )
