"""Regression checks: is the new run significantly worse than its baseline by more than a margin?

For one provider id and one suite metric, with ``s = +1`` when lower is better and ``-1``
when higher is better, the **worsening** is ``W = s · (mean(new) − mean(base))``. A rule with
margin ``m ≥ 0`` and level ``α`` tests

    H0: W ≤ m  (not worse by more than the margin)   against   H1: W > m

and **fails when H0 is rejected at α (one-sided)**, i.e. when the one-sided ``1 − α``
confidence bound of ``W`` on the "better" side still exceeds ``m``. In the metric's units:

* lower is better: fail when the lower bound of ``new − base`` is above ``+m``;
* higher is better: fail when the upper bound of ``new − base`` is below ``−m``;
* neutral (closer to 0 is better, e.g. a signed bias score): ``W = |mean(new)| − |mean(base)|``;
  fail when its lower bound is above ``+m``.

The bound is the bootstrap bound of the **paired** difference (expanded percentile for scores within
[−1, 1], symmetric bootstrap-t for unbounded values such as counts): the per-item values
(``SuiteResult.items[metric]``) of the run and the baseline are paired by item id, and the
pairs resampled (:func:`~rai_harness.stats.paired_bootstrap_diff`; for neutral metrics the
generic :func:`~rai_harness.stats.bootstrap` of ``|mean(new)| − |mean(base)|``), at two-sided
confidence ``1 − 2α`` so that one end is the one-sided ``1 − α`` bound. The seed is the run's.

**Binary items** (every value 0 or 1): the rule also requires McNemar's test on the
discordant pairs to find the run worse at one-sided level α (half the two-sided p-value, in
the worse direction). McNemar tests "no difference" and carries no margin, so the margin is
enforced by the bootstrap bound; requiring both keeps the bootstrap, which is anti-conservative
with few discordant pairs, from failing a run on its own.

**No per-item values** (or fewer than two shared item ids): the two runs' own intervals are
compared instead, and the rule fails only when they are separated by more than the margin in
the worse direction (e.g. ``new.ci_low − base.ci_high > m``). This ignores the pairing, so it
is much more conservative than the paired test at α; the message says so.

Item clusters (templates) are not in the run record, so the paired bootstrap resamples items
independently; with clustered items its interval is somewhat too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rai_harness.gate.metrics import SuiteMetric, abs_interval, lookup_suite_metric
from rai_harness.gate.policy import RegressionCheck
from rai_harness.gate.verdict import RuleResult
from rai_harness.record import SCHEMA_VERSION, RunRecord, SuiteRun
from rai_harness.stats import Estimate, bootstrap, mcnemar, paired_bootstrap_diff

__all__ = ["evaluate_regression"]

Direction = Literal["lower", "higher", "neutral"]


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4g}"


def _abs_mean_gap(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> Callable[[Sequence[int]], float]:
    """Statistic over resampled item indices: ``|mean(a)| − |mean(b)|`` on the same items."""

    def statistic(idx: Sequence[int]) -> float:
        take = np.asarray(idx, dtype=np.intp)
        return float(abs(a[take].mean()) - abs(b[take].mean()))

    return statistic


def _is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def _worse_words(direction: Direction) -> str:
    return {"lower": "lower is better", "higher": "higher is better", "neutral": "closer to 0 is better"}[
        direction
    ]


def _threshold(direction: Direction, margin: float) -> tuple[Literal["<=", ">="], float]:
    """The pass condition on the compared bound: ``bound <= +m`` or, higher-is-better, ``>= -m``."""
    return (">=", -margin) if direction == "higher" else ("<=", margin)


def _paired(
    head: RuleResult,
    new: dict[str, float],
    base: dict[str, float],
    common: list[str],
    direction: Direction,
    reg: RegressionCheck,
    seed: int,
) -> RuleResult:
    """The paired test on the items both runs share."""
    rule = reg.rule
    a = [new[i] for i in common]
    b = [base[i] for i in common]
    confidence = 1.0 - 2.0 * rule.alpha
    est: Estimate
    if direction == "neutral":
        label = "|new| − |base|"
        # The generic bootstrap resamples item indices; the statistic reads both runs at them.
        est = bootstrap(
            list(range(len(common))),
            _abs_mean_gap(np.asarray(a), np.asarray(b)),
            n_resamples=rule.n_resamples,
            seed=seed,
            confidence=confidence,
        )
        method = "paired-bootstrap |mean|"
    else:
        label = "new − base"
        est = paired_bootstrap_diff(
            a, b, n_resamples=rule.n_resamples, seed=seed, confidence=confidence
        ).estimate
        method = "paired-bootstrap"
    op, threshold = _threshold(direction, rule.margin)
    bound: Literal["ci_low", "ci_high"] = "ci_high" if direction == "higher" else "ci_low"
    measured = est.bound(bound)
    coverage = f"paired on {len(common)} items"
    if len(common) < max(len(new), len(base)):
        coverage += f" of {len(new)} in the run and {len(base)} in the baseline"
    result = replace(
        head,
        measured=measured,
        bound=bound,
        op=op,
        threshold=threshold,
        value=est.value,
        ci_low=est.ci_low,
        ci_high=est.ci_high,
        confidence=confidence if est.ci_low is not None else None,
        n=len(common),
        method=method,
    )
    if measured is None:
        why = f" ({est.note})" if est.note else ""
        return replace(result, status="error", message=f"no interval for {label}{why}; {coverage}")
    beyond = measured > threshold if op == "<=" else measured < threshold
    side = "lower" if bound == "ci_low" else "upper"
    text = (
        f"{label} = {_num(est.value)}, one-sided {1 - rule.alpha:.0%} {side} bound {_num(measured)} "
        f"{'beyond' if beyond else 'within'} the margin {_num(threshold)} ({_worse_words(direction)}; "
        f"{method}, {coverage})"
    )
    p_one: float | None = None
    if direction != "neutral" and _is_binary(a) and _is_binary(b):
        test = mcnemar([v == 1.0 for v in a], [v == 1.0 for v in b])
        # mcnemar(a=new, b=base): b10 counts items 1 in the new run and 0 in the baseline.
        worse, better = (test.b10, test.b01) if direction == "lower" else (test.b01, test.b10)
        p_one = test.p_value / 2.0 if worse > better else 1.0 - test.p_value / 2.0
        method += " + mcnemar"
        text += f"; McNemar on discordant pairs: {worse} worse, {better} better, one-sided p={p_one:.3g}"
        if beyond and p_one >= rule.alpha:
            text += f" >= α={rule.alpha:g}, not significant, so it passes"
    failed = beyond and (p_one is None or p_one < rule.alpha)
    prefix = "significantly worse than the baseline by more than the margin: " if failed else ""
    return replace(
        result, status="fail" if failed else "pass", message=prefix + text, p_value=p_one, method=method
    )


def _interval_separation(
    head: RuleResult, new: Estimate, base: Estimate, direction: Direction, reg: RegressionCheck, reason: str
) -> RuleResult:
    """Fallback without per-item values: the gap between the two runs' own intervals."""
    op, threshold = _threshold(direction, reg.rule.margin)
    head = replace(head, op=op, threshold=threshold, n=min(new.n, base.n), method="interval-separation")
    if new.ci_low is None or new.ci_high is None or base.ci_low is None or base.ci_high is None:
        return replace(
            head, status="error", message=f"{reason}, and the run or the baseline has no interval to compare"
        )
    assert new.value is not None and base.value is not None  # lookup_suite_metric guarantees values
    if direction == "lower":
        gap, value = new.ci_low - base.ci_high, new.value - base.value
    elif direction == "higher":
        gap, value = new.ci_high - base.ci_low, new.value - base.value
    else:
        gap = abs_interval(new.ci_low, new.ci_high)[0] - abs_interval(base.ci_low, base.ci_high)[1]
        value = abs(new.value) - abs(base.value)
    beyond = gap > threshold if op == "<=" else gap < threshold
    message = (
        f"{reason}: compared the two {new.confidence:.0%} intervals (run [{new.ci_low:.4g}, "
        f"{new.ci_high:.4g}], baseline [{base.ci_low:.4g}, {base.ci_high:.4g}]); their gap {_num(gap)} "
        f"is {'beyond' if beyond else 'within'} the margin {_num(threshold)} ({_worse_words(direction)}). "
        "Unpaired interval separation is far more conservative than the paired test at α"
    )
    return replace(
        head,
        status="fail" if beyond else "pass",
        message=message,
        measured=gap,
        bound="interval gap",
        value=value,
    )


def _compare(
    record: RunRecord, baseline: RunRecord, reg: RegressionCheck, provider: str, baseline_dir: str | None
) -> RuleResult:
    head = _unevaluated(reg, provider)
    new = lookup_suite_metric(record, reg.metric, provider)
    if isinstance(new, str):
        return replace(head, message=f"run: {new}")
    old = lookup_suite_metric(baseline, reg.metric, provider)
    if isinstance(old, str):
        where = f"baseline {baseline_dir}" if baseline_dir else "baseline"
        return replace(head, message=f"{where}: {old}")
    mismatch = _incomparable(new.suite, old.suite)
    if mismatch is not None:
        return replace(head, message=mismatch)
    spec = new.spec or old.spec
    if spec is None:
        return replace(
            head,
            message=f"suite {reg.metric.suite!r} declares no metadata for {reg.metric.name!r}, so which "
            "way is worse is unknown",
        )
    result = _decide(
        replace(head, baseline_value=old.estimate.value), new, old, spec.direction, reg, record.seed
    )
    if new.suite.version != old.suite.version:
        result = replace(
            result,
            message=f"{result.message}; suite version changed {old.suite.version} -> "
            f"{new.suite.version}: items or scoring may differ",
        )
    return result


def _datasets(suite: SuiteRun) -> str:
    return (
        ", ".join(f"{d.name} sha256 {d.sha256}" for d in sorted(suite.datasets, key=lambda d: d.name))
        or "none"
    )


def _incomparable(new: SuiteRun, old: SuiteRun) -> str | None:
    """Why a suite's items cannot be paired across the two runs, or ``None``.

    Items are paired by id: with another dataset (same ids, other questions) or other
    parameters (another subset, another scoring threshold) the pairs compare different
    things, and an easier dataset would pass any regression.
    """
    if {(d.name, d.sha256) for d in new.datasets} != {(d.name, d.sha256) for d in old.datasets}:
        return (
            f"suite {new.name!r} read different data in the run ({_datasets(new)}) and in the baseline "
            f"({_datasets(old)}): its items cannot be paired; rerun the baseline on the same dataset"
        )
    differences = _param_differences(new.params, old.params)
    if differences:
        return (
            f"suite {new.name!r} ran with different params in the run and in the baseline "
            f"({'; '.join(differences)}): its items cannot be compared; rerun the baseline with the "
            "same suite params"
        )
    return None


#: Suite params that change neither what an item is nor how it is scored: interval
#: resamples, where a scorer runs, batching, and how many items were taken (items are paired
#: by id, so a different ``limit`` only narrows the pairs).
_RUN_SETTINGS = frozenset(
    {"n_resamples", "device", "dtype", "batch_size", "max_batch_size", "concurrency", "workers", "limit"}
)


def _param_differences(new: Mapping[str, Any], old: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The params (nested keys dotted) that differ between two runs of a suite.

    Only keys both runs recorded are compared: a key one side lacks comes from another
    rai-harness version, which recorded its default or did not have it yet.
    """
    out: list[str] = []
    for key in sorted(new.keys() & old.keys()):
        if key in _RUN_SETTINGS:
            continue
        a, b = new[key], old[key]
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(_param_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: run {a!r}, baseline {b!r}")
    return out


def _unusable_baseline(record: RunRecord, baseline: RunRecord) -> str | None:
    """Why ``baseline`` cannot be the baseline of ``record`` at all, or ``None``."""
    if baseline.run_id == record.run_id:
        return (
            f"the baseline is the run itself (run_id {record.run_id}): a run compared with itself "
            "always passes; pass the previous run's folder as --baseline"
        )
    if baseline.status != "complete":
        problems = "; ".join(baseline.problems) or "no problem recorded"
        return (
            f"the baseline run is {baseline.status}, not complete ({problems}): its metrics may be "
            "missing or partial; pass a complete run as --baseline"
        )
    if baseline.schema_version > SCHEMA_VERSION:
        return (
            f"the baseline record has schema_version {baseline.schema_version}; this "
            f"rai-harness reads up to {SCHEMA_VERSION}: upgrade rai-harness"
        )
    return None


def _unevaluated(reg: RegressionCheck, provider: str | None) -> RuleResult:
    """The rule's result before (or without) a comparison: an error with no message yet."""
    return RuleResult(
        rule_id=reg.id,
        description=reg.rule.description,
        kind="regression",
        provider=provider,
        metric=reg.metric.text,
        status="error",
        message="",
        source=reg.source,
    )


def _decide(
    head: RuleResult,
    new: SuiteMetric,
    old: SuiteMetric,
    direction: Direction,
    reg: RegressionCheck,
    seed: int,
) -> RuleResult:
    name = reg.metric.name
    new_items = new.result.items.get(name) or {}
    old_items = old.result.items.get(name) or {}
    common = sorted(set(new_items) & set(old_items))
    if len(common) >= 2:
        return _paired(head, new_items, old_items, common, direction, reg, seed)
    if not new_items and not old_items:
        reason = "no per-item values to pair"
    elif not old_items:
        reason = "no per-item values to pair in the baseline"
    elif not new_items:
        reason = "no per-item values to pair in the run"
    else:
        reason = f"only {len(common)} item id(s) shared by the run and the baseline"
    return _interval_separation(head, new.estimate, old.estimate, direction, reg, reason)


def evaluate_regression(
    record: RunRecord,
    reg: RegressionCheck,
    *,
    baseline: RunRecord | None,
    baseline_dir: str | None = None,
) -> list[RuleResult]:
    """Compare ``record`` with ``baseline`` on one regression rule, per provider id.

    See the module docstring for the test. A provider compares with the baseline's provider
    of the same id; one missing from either run is an error. So is a baseline that is the run
    itself, or not ``complete``, and a suite whose datasets (by sha256) or params differ
    between the two runs: its items would pair different questions.

    Args:
        record: The new run.
        reg: The regression rule, with its id.
        baseline: The baseline run, or ``None`` (then one error result).
        baseline_dir: The baseline's folder, for messages.

    Returns:
        One result per provider.
    """
    if baseline is None:
        return [
            replace(
                _unevaluated(reg, None),
                message="regression rules need a baseline run: pass --baseline RUN_DIR",
            )
        ]
    unusable = _unusable_baseline(record, baseline)
    if unusable is not None:
        where = f"baseline {baseline_dir}: " if baseline_dir else ""
        return [replace(_unevaluated(reg, None), message=where + unusable)]
    providers = reg.providers or tuple(record.providers)
    return [_compare(record, baseline, reg, p, baseline_dir) for p in providers]
