"""The report's trade-off charts: headline metrics against cost and latency, Pareto marks by significance.

A provider is marked Pareto-optimal only where its advantage is significant on both axes
(:func:`significant_front`): a difference that is noise reads as a tie, not as a win.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from rai_harness.record import MetricSpec, ProviderSummary, RunRecord, SuiteRun
from rai_harness.report import charts
from rai_harness.report.fmt import (
    fmt_seconds,
)
from rai_harness.report.samples import SampleStats
from rai_harness.report.viewmodel import Figure, ProviderView, headline_specs, ordered_suites, unit_fmt
from rai_harness.stats import Estimate

__all__ = ["PARETO_ALPHA", "significant_front", "tradeoff_figures"]

#: Significance level of the Pareto marks (two-sided, per pairwise comparison).
PARETO_ALPHA = 0.05


def _quantile_ci(values: np.ndarray, q: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval for a quantile from order statistics (binomial ranks).

    Exact in coverage (at least ``confidence``) for any continuous distribution, and cheap for
    100k calls, unlike a bootstrap of a p95.
    """
    from scipy.stats import binom

    n = int(values.size)
    if n < 2:
        return None
    a = (1.0 - confidence) / 2
    lo_rank = int(binom.ppf(a, n, q))  # 0-based index of the lower order statistic
    hi_rank = int(binom.ppf(1 - a, n, q))
    if hi_rank >= n:
        return None  # too few calls to bound this quantile from above
    ordered = np.sort(values)
    return float(ordered[max(lo_rank - 1, 0)]), float(ordered[hi_rank])


def _mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval for a mean cost per call (costs are sums of many tokens: near normal)."""
    from scipy.stats import t

    n = int(values.size)
    if n < 2:
        return None
    half = float(t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    m = float(values.mean())
    return m - half, m + half


def _x_interval(axis: str, pid: str, s: ProviderSummary, stats: SampleStats) -> tuple[float, float] | None:
    """The interval of a trade-off chart's x value (p95 latency or cost per 1k calls), from the samples."""
    if axis == "p95":
        arr = stats.latency.get(pid)
        return _quantile_ci(np.frombuffer(arr, dtype=float), 0.95) if arr is not None and len(arr) else None
    arr = stats.cost.get(pid)
    if arr is None or not len(arr):
        return None
    ci = _mean_ci(np.frombuffer(arr, dtype=float))
    return None if ci is None else (ci[0] * 1000, ci[1] * 1000)


def _untested_reason(axis: str, pid: str, stats: SampleStats) -> str:
    """Why :func:`_x_interval` gave no interval, in words a reader can act on."""
    arr = (stats.latency if axis == "p95" else stats.cost).get(pid)
    n = 0 if arr is None else len(np.frombuffer(arr, dtype=float))
    what = "latency" if axis == "p95" else "cost"
    if n == 0:
        return f"no per-call {what} in the samples file"
    if axis == "p95":
        # The upper order statistic of a 95 % interval for a p95 exists from 72 calls (0.95^n <= 0.025).
        return f"{n} calls with a latency: a p95 is bounded from 72"
    return f"{n} priced calls: a mean cost needs 2"


def _cmp_intervals(a: tuple[float, float] | None, b: tuple[float, float] | None) -> int:
    """+1 when interval a lies entirely below b (a smaller), -1 when above, 0 when they overlap or are unknown."""
    if a is None or b is None:
        return 0
    if a[1] < b[0]:
        return 1
    if b[1] < a[0]:
        return -1
    return 0


def _distance_from_zero(lo: float, hi: float) -> tuple[float, float]:
    near = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
    return near, max(abs(lo), abs(hi))


def _metric_cmp(suite: SuiteRun, spec: MetricSpec, a: str, ea: Estimate, b: str, eb: Estimate) -> int:
    """+1 when a is significantly better than b on the metric, -1 when worse, 0 for a tie.

    The paired comparison recorded for the two providers decides when there is one (same
    items, so it is the more powerful test); otherwise two intervals that do not overlap.
    Closer-to-0 metrics compare the intervals' distances from 0.
    """
    if spec.direction != "neutral":
        for c in suite.comparisons:
            if c.metric != spec.name or {c.a, c.b} != {a, b}:
                continue
            d = c.diff.value
            if c.p_value is None or d is None or d == 0 or c.p_value >= PARETO_ALPHA:
                return 0
            a_minus_b = d if c.a == a else -d
            better = a_minus_b < 0 if spec.direction == "lower" else a_minus_b > 0
            return 1 if better else -1
    if ea.ci_low is None or ea.ci_high is None or eb.ci_low is None or eb.ci_high is None:
        return 0
    if spec.direction == "neutral":
        na_, fa = _distance_from_zero(ea.ci_low, ea.ci_high)
        nb, fb = _distance_from_zero(eb.ci_low, eb.ci_high)
        return 1 if fa < nb else (-1 if fb < na_ else 0)
    low = _cmp_intervals((ea.ci_low, ea.ci_high), (eb.ci_low, eb.ci_high))
    return low if spec.direction == "lower" else -low


def significant_front(cmp_x: Sequence[Sequence[int]], cmp_y: Sequence[Sequence[int]]) -> list[list[int]]:
    """Who dominates whom when only significant differences count.

    ``cmp_x[i][j]`` is +1 when i is significantly better than j on x, -1 when worse, 0 for a tie
    (likewise ``cmp_y``). i dominates j when it is significantly better on one axis and not
    significantly worse on the other.

    Returns:
        For each point, the indices of the points that dominate it (empty: Pareto-optimal).
    """
    n = len(cmp_x)
    return [
        [
            i
            for i in range(n)
            if i != j and min(cmp_x[i][j], cmp_y[i][j]) >= 0 and max(cmp_x[i][j], cmp_y[i][j]) > 0
        ]
        for j in range(n)
    ]


def _unpriced_note(record: RunRecord) -> str | None:
    """Why cost charts are missing (or thin), and how to get them: never a silent omission."""
    unpriced = [pid for pid, s in record.providers.items() if s.cost.per_1k_calls_usd is None]
    if not unpriced:
        return None
    priced = len(record.providers) - len(unpriced)
    head = (
        "No cost chart is drawn: no provider in this run is priced"
        if priced == 0
        else f"Cost charts leave out {len(unpriced)} unpriced provider{'s' if len(unpriced) != 1 else ''}"
    )
    return (
        f"{head} ({', '.join(unpriced)}). Give a provider `pricing:` in the run config "
        "(per-token prices for hosted APIs, `usd_per_hour` for a machine you run) and rerun the "
        "same `rai run` command: completed calls are reused from the run's journal, not repeated."
    )


def tradeoff_figures(
    record: RunRecord, providers: Sequence[ProviderView], stats: SampleStats
) -> tuple[list[Figure], list[str]]:
    """Each headline metric against cost and latency, one chart each, and notes on charts not drawn."""
    figures: list[Figure] = []
    notes: list[str] = []
    unpriced = _unpriced_note(record)
    if unpriced:
        notes.append(unpriced)
    pv = {p.id: p for p in providers}
    axes: tuple[tuple[str, str, Callable[[ProviderSummary], float | None], Callable[[float], str]], ...] = (
        (
            "cost",
            "Cost per 1k calls (USD)",
            lambda s: s.cost.per_1k_calls_usd,
            lambda v: f"${v:.3g}" if v else "$0",
        ),
        ("p95", "Latency p95 (s)", lambda s: s.latency_s.p95, lambda v: fmt_seconds(v)),
    )
    x_untested: dict[str, set[str]] = {}
    for suite in ordered_suites(record):
        if suite.error:
            continue
        for spec in headline_specs(suite):
            for axis, x_label, get_x, x_fmt in axes:
                raw = []
                left_out = []
                for pid, s in record.providers.items():
                    res = suite.results.get(pid)
                    est = res.metrics.get(spec.name) if res else None
                    x = get_x(s)
                    if est is None or est.value is None or x is None or not math.isfinite(x):
                        why = (
                            "no value"
                            if est is None or est.value is None
                            else ("not priced" if axis == "cost" else "no latency")
                        )
                        left_out.append(f"{pid} ({why})")
                        continue
                    raw.append((pid, x, est))
                if not raw:
                    continue
                x_ci = [_x_interval(axis, pid, record.providers[pid], stats) for pid, _, _ in raw]
                for (pid, _, _), ci in zip(raw, x_ci, strict=True):
                    if ci is None:
                        x_untested.setdefault(pid, set()).add(_untested_reason(axis, pid, stats))
                cmp_x = [[_cmp_intervals(x_ci[i], x_ci[j]) for j in range(len(raw))] for i in range(len(raw))]
                cmp_y = [
                    [
                        0 if i == j else _metric_cmp(suite, spec, raw[i][0], raw[i][2], raw[j][0], raw[j][2])
                        for j in range(len(raw))
                    ]
                    for i in range(len(raw))
                ]
                dominated_by = significant_front(cmp_x, cmp_y)
                any_dominated = any(dominated_by)
                points = [
                    charts.TradeoffPoint(
                        label=pid,
                        x=x,
                        y=float(e.value or 0.0),
                        lo=e.ci_low,
                        hi=e.ci_high,
                        color=pv[pid].color,
                        shape=pv[pid].shape,
                        # Marks only where something is significantly dominated: a front of
                        # everyone is a tie, not a win.
                        pareto=any_dominated and not dominated_by[k],
                        x_lo=None if xc is None else xc[0],
                        x_hi=None if xc is None else xc[1],
                    )
                    for k, ((pid, x, e), xc) in enumerate(zip(raw, x_ci, strict=True))
                ]
                title = f"{spec.display} vs {'cost' if axis == 'cost' else 'p95 latency'}"
                svg = charts.tradeoff_chart(
                    points,
                    title=title,
                    x_label=x_label,
                    y_label=spec.display,
                    x_fmt=x_fmt,
                    y_fmt=unit_fmt(spec.unit, spec.direction == "neutral"),
                    direction=spec.direction,
                )
                caption = f"Suite {suite.name}; whiskers: 95% intervals on both axes. "
                if not any_dominated:
                    caption += (
                        "Tie: no provider is significantly better than another on one axis without being "
                        "worse on the other (95% level), so none is marked Pareto-optimal."
                    )
                else:
                    front = [p.label for p in points if p.pareto]
                    caption += f"Pareto-optimal (★, filled; significant at 95%): {', '.join(front)}."
                    beaten = [
                        f"{raw[j][0]} (by {', '.join(raw[i][0] for i in dom)})"
                        for j, dom in enumerate(dominated_by)
                        if dom
                    ]
                    caption += f" Dominated: {'; '.join(beaten)}."
                    if len(front) > 1:
                        caption += " Unmarked differences among the others are ties."
                caption += " n: " + ", ".join(f"{pid} {e.n:,}" for pid, _, e in raw) + "."
                if left_out:
                    caption += f" Not plotted: {', '.join(left_out)}."
                figures.append(Figure(title=title, svg=svg, caption=caption, wide=False))
    if x_untested:
        why = "; ".join(f"{pid}: {', '.join(sorted(reasons))}" for pid, reasons in sorted(x_untested.items()))
        notes.append(
            f"Differences in cost or latency could not be tested for some providers ({why}); they count "
            "as ties in the Pareto marks."
        )
    if not figures:
        notes.append("No trade-off chart: no provider has both a headline metric and a cost or latency.")
    return figures, notes
