"""The score and aggregate stages: suite outputs -> per-sample scores -> metrics with intervals.

Scoring reads only call records (from the journal or ``samples.jsonl``), so a finished run
can be re-scored without calling a model again. Each suite scores every provider's
outputs in one call, so its classifiers batch across providers; a suite whose scoring
fails is recorded with its error (its metrics are then missing, never silently zero).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from rai_harness.classifiers.pool import ClassifierPool, default_pool
from rai_harness.load import LoadProfile, is_warmup, summarize_load
from rai_harness.pricing import ResolvedPrice, busy_seconds
from rai_harness.record import (
    CallRecord,
    Comparison,
    CostSummary,
    Distribution,
    GuardHealth,
    JudgeInfo,
    MetricSpec,
    ProviderSummary,
    RunStatus,
    SuiteEfficiency,
    SuiteResult,
    SuiteRun,
    UsageSummary,
)
from rai_harness.stats import Estimate, mcnemar, paired_bootstrap_diff
from rai_harness.suites.base import ScoredOutput, SuiteOutput

if TYPE_CHECKING:
    from rai_harness.suites.base import Suite, SuiteData, SuiteSample

__all__ = [
    "MAX_COMPARED_PROVIDERS",
    "JudgedSuite",
    "PlannedSuite",
    "ScoringOutcome",
    "error_budget_problems",
    "item_key",
    "run_status",
    "score_suites",
    "summarize_guard",
    "summarize_provider",
]

log = logging.getLogger(__name__)

#: Pairwise comparisons grow quadratically; beyond this many providers only the first ones are paired.
MAX_COMPARED_PROVIDERS = 8


@dataclass(frozen=True)
class PlannedSuite:
    """A suite with the samples it sends and the providers that run it."""

    suite: Suite
    data: SuiteData
    providers: tuple[str, ...]
    #: The suite's judge (a :class:`rai_harness.run.judge.SuiteJudge`), or None.
    judge: Any = None

    @property
    def name(self) -> str:
        """The suite's registry name."""
        return self.suite.name

    def sample_map(self) -> dict[str, SuiteSample]:
        """Item id -> sample."""
        return {s.id: s for s in self.data.samples}


@dataclass(frozen=True)
class JudgedSuite:
    """What the judge stage adds to a suite's run: its judge, its metrics, per-provider constants."""

    info: JudgeInfo
    metrics: tuple[MetricSpec, ...]
    #: Metrics with the same value for every provider (the judge's calibrated kappa).
    constants: Mapping[str, Estimate]


def item_key(suite: str, item: str) -> str:
    """The ``sample_id`` of a suite item in call records (unique across suites)."""
    return f"{suite}/{item}"


def _efficiency(records: Sequence[CallRecord]) -> SuiteEfficiency:
    ok = [r for r in records if r.ok]
    costs = [r.cost_usd for r in ok if r.cost_usd is not None]
    cost = float(sum(costs)) if costs else None
    return SuiteEfficiency(
        calls=len(records),
        failed=len(records) - len(ok),
        latency_s=Distribution.of(r.latency_s for r in ok),
        ttft_s=Distribution.of(r.ttft_s for r in ok),
        prompt_tokens=sum(r.prompt_tokens or 0 for r in ok),
        completion_tokens=sum(r.completion_tokens or 0 for r in ok),
        cost_usd=cost,
        cost_per_1k_samples_usd=(cost / len(ok) * 1000) if (cost is not None and ok) else None,
    )


def _is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def _comparisons(
    planned: PlannedSuite, results: dict[str, SuiteResult], seed: int, n_resamples: int
) -> list[Comparison]:
    samples = planned.sample_map()
    out: list[Comparison] = []
    ids = [p for p in planned.providers if p in results][:MAX_COMPARED_PROVIDERS]
    for a, b in itertools.combinations(ids, 2):
        for metric, a_items in results[a].items.items():
            b_items = results[b].items.get(metric)
            if not b_items:
                continue
            common = sorted(set(a_items) & set(b_items))
            if len(common) < 2:
                continue
            va = [a_items[i] for i in common]
            vb = [b_items[i] for i in common]
            clusters = [samples[i].cluster or i if i in samples else i for i in common]
            paired = paired_bootstrap_diff(va, vb, clusters=clusters, n_resamples=n_resamples, seed=seed)
            if _is_binary(va) and _is_binary(vb):
                test = mcnemar([v == 1.0 for v in va], [v == 1.0 for v in vb])
                out.append(
                    Comparison(
                        metric=metric,
                        a=a,
                        b=b,
                        diff=paired.estimate,
                        p_value=test.p_value,
                        test="mcnemar",
                        n=len(common),
                    )
                )
            else:
                out.append(
                    Comparison(
                        metric=metric,
                        a=a,
                        b=b,
                        diff=paired.estimate,
                        p_value=paired.p_value,
                        test="paired-bootstrap",
                        n=len(common),
                    )
                )
    return out


def _scorer_info(suite: Suite, pool: ClassifierPool) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for role, spec in suite.scorers().items():
        entry: dict[str, Any] = {"spec": spec.model_dump(mode="json")}
        if spec in pool:
            try:
                entry["info"] = pool.info_of(spec)
            except Exception as exc:  # describing must not fail the run
                entry["info_error"] = str(exc)
        info[role] = entry
    return info


class ScoringOutcome(NamedTuple):
    """What the score and aggregate phases produce."""

    #: Every call record, with per-sample ``scores`` filled in for the scored suites.
    records: list[CallRecord]
    #: Suite name -> its results across providers.
    suites: dict[str, SuiteRun]
    #: Suites (or suite/provider pairs) that could not be scored or aggregated.
    problems: list[str]


def score_suites(
    planned: Sequence[PlannedSuite],
    records: Sequence[CallRecord],
    *,
    seed: int,
    pool: ClassifierPool | None = None,
    judgements: Mapping[tuple[str, str, str, int], Mapping[str, Any]] | None = None,
    judged: Mapping[str, JudgedSuite] | None = None,
) -> ScoringOutcome:
    """Score every suite's outputs and aggregate them per provider.

    Used by a run (:func:`~rai_harness.run.execute.execute_run`) and by a re-score of a
    finished one (:func:`~rai_harness.run.rescore.score_run`); with no suites it returns the
    records unchanged.

    Args:
        planned: The suites to score.
        records: All call records of the run (records of other suites and plain prompts pass
            through unchanged).
        seed: Run seed for bootstrap intervals.
        pool: Classifier pool (default: the process-wide one, so models load once and are
            shared with guards).
        judgements: From the judge phase: ``(suite, provider, item, repeat)`` -> the verdicts
            added to that output's scores under ``"judge"``. Without them (a re-score), an
            output keeps the judge verdicts its record already carries.
        judged: Suite name -> its judge and judge metrics (judged suites only).
    """
    if pool is None:
        pool = default_pool()
    out = list(records)
    by_suite: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(out):
        suite_name = r.metadata.get("suite") if r.metadata else None
        if suite_name is not None:
            by_suite[str(suite_name)].append(i)
    runs: dict[str, SuiteRun] = {}
    problems: list[str] = []
    for ps in planned:
        suite = ps.suite
        samples = ps.sample_map()
        indices = [i for i in by_suite.get(suite.name, []) if out[i].metadata.get("item") in samples]
        ok_idx = [i for i in indices if out[i].ok]
        outputs = [
            SuiteOutput(
                out[i].provider_id, samples[out[i].metadata["item"]], out[i].repeat, out[i].output or ""
            )
            for i in ok_idx
        ]
        run = SuiteRun(
            name=suite.name,
            version=suite.version,
            concern=suite.concern,
            title=suite.title,
            description=suite.description,
            params=suite.params.model_dump(mode="json"),
            metrics=list(suite.metrics),
            datasets=list(ps.data.datasets),
        )
        extra = (judged or {}).get(suite.name)
        if extra is not None:
            run.metrics.extend(extra.metrics)
            run.judge = extra.info
        try:
            scores = suite.score(outputs, pool) if outputs else []
            if len(scores) != len(outputs):
                raise RuntimeError(f"score() returned {len(scores)} results for {len(outputs)} outputs")
        except Exception as exc:
            log.exception("scoring suite %s failed", suite.name)
            run.error = f"{type(exc).__name__}: {exc}"
            run.scorers = _scorer_info(suite, pool)
            problems.append(f"suite {suite.name}: scoring failed ({run.error}); its metrics are missing")
            runs[suite.name] = run
            continue
        for i, score in zip(ok_idx, scores, strict=True):
            if judgements is not None:
                verdicts = judgements.get(
                    (suite.name, out[i].provider_id, str(out[i].metadata["item"]), out[i].repeat)
                )
            else:  # a re-score: keep the verdicts the judge gave in the run
                verdicts = (out[i].scores or {}).get("judge")
            out[i] = replace(out[i], scores={**score, "judge": verdicts} if verdicts is not None else score)
        per_provider: dict[str, list[int]] = defaultdict(list)
        for i in indices:
            per_provider[out[i].provider_id].append(i)
        for pid in ps.providers:
            idx = per_provider.get(pid, [])
            scored = [
                ScoredOutput(
                    provider_id=pid,
                    sample=samples[out[i].metadata["item"]],
                    repeat=out[i].repeat,
                    ok=out[i].ok,
                    text=out[i].output,
                    scores=out[i].scores,
                    error=err.message if (err := out[i].error) is not None else None,
                )
                for i in idx
            ]
            try:
                agg = suite.aggregate(scored)
            except Exception as exc:
                log.exception("aggregating suite %s for %s failed", suite.name, pid)
                problems.append(f"suite {suite.name}, provider {pid}: aggregation failed ({exc})")
                continue
            run.results[pid] = SuiteResult(
                provider_id=pid,
                calls=len(idx),
                failed=sum(1 for i in idx if not out[i].ok),
                metrics={
                    # A judged metric the suite could not compute (no judge verdicts) is explicit.
                    **{m.name: Estimate.empty("no judge verdicts") for m in (extra.metrics if extra else ())},
                    **agg.metrics,
                    **(extra.constants if extra is not None else {}),
                },
                breakdowns=agg.breakdowns,
                items=agg.items,
                counts=agg.counts,
                notes=agg.notes,
                efficiency=_efficiency([out[i] for i in idx]),
            )
        run.comparisons = _comparisons(ps, run.results, seed, suite.params.n_resamples)
        run.scorers = _scorer_info(suite, pool)
        runs[suite.name] = run
    return ScoringOutcome(out, runs, problems)


#: ``CallError.type`` of a call failed by a rail (``guardrails.provider.GUARD_ERROR``/``GUARD_TIMEOUT``).
_GUARD_ERROR_TYPES = {"guard_error": "rail_errors", "guard_timeout": "rail_timeouts"}


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


def summarize_provider(
    kind: str,
    model: str,
    records: Sequence[CallRecord],
    price: ResolvedPrice | None,
    model_info: dict[str, Any],
    *,
    load: LoadProfile | None = None,
) -> ProviderSummary:
    """Aggregate one provider's records (costs must already be filled in).

    With a load profile, warm-up calls count in calls, errors, usage and cost, but not in
    the timing distributions, and ``load`` holds the per-stage (per-rate) results.
    """
    ok = [r for r in records if r.ok]
    timed = [r for r in ok if not is_warmup(r)]
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
        latency_s=Distribution.of(r.latency_s for r in timed),
        ttft_s=Distribution.of(r.ttft_s for r in timed),
        connect_s=Distribution.of(r.connect_s for r in timed),
        output_tokens_per_s=Distribution.of(r.output_tokens_per_s for r in timed),
        cost=_cost_summary(ok, price, usage),
        model_info=model_info,
        guard=summarize_guard(records, guarded_by)
        if isinstance(guarded_by := model_info.get("guarded_by"), Mapping)
        else None,
        load=summarize_load(load, records) if load is not None else None,
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


def error_budget_problems(providers: dict[str, ProviderSummary], max_error_rate: float) -> list[str]:
    """One problem per provider whose share of failed calls exceeds ``runner.max_error_rate``."""
    return [
        f"{pid}: {s.failed} of {s.calls} calls failed ({s.error_rate:.1%} > max_error_rate {max_error_rate:.1%})"
        for pid, s in providers.items()
        if s.error_rate > max_error_rate
    ]


def run_status(budget_problems: Sequence[str], scoring_problems: Sequence[str]) -> RunStatus:
    """``incomplete`` when a suite could not be scored (its metrics are missing), else
    ``failed`` when an error budget was exceeded, else ``complete``."""
    if scoring_problems:
        return "incomplete"
    return "failed" if budget_problems else "complete"
