"""The report's performance sections: efficiency, errors, latency and load figures, guard overhead.

Throughput, latency and cost measured on the same calls as the ethics scores, per provider.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rai_harness.record import ProviderSummary, RunRecord
from rai_harness.report import charts
from rai_harness.report.fmt import (
    fmt_count,
    fmt_pct,
    fmt_seconds,
    fmt_usd,
)
from rai_harness.report.samples import SampleStats
from rai_harness.report.viewmodel import Figure, ProviderView, RedactMany, Table, ordered_suites

__all__ = [
    "efficiency_table",
    "errors_table",
    "guard_overhead_table",
    "latency_figures",
    "load_figures",
    "load_table",
    "suite_efficiency_table",
]


def efficiency_table(record: RunRecord, providers: Sequence[ProviderView]) -> Table:
    """Per-provider calls, failures, retries, reused calls, attempts, tokens and cost (with its source)."""
    header = [
        "provider",
        "calls",
        "failed",
        "retried",
        "reused",
        "attempts",
        "tokens in / out",
        "cost",
        "priced by",
    ]
    rows = []
    for p in providers:
        s = record.providers[p.id]
        tokens = f"{s.usage.prompt_tokens:,} / {s.usage.completion_tokens:,}"
        if s.usage.estimated_calls:
            tokens += f" ({s.usage.estimated_calls:,} calls estimated)"
        priced = s.cost.priced_by + (f" ({s.cost.source})" if s.cost.source else "")
        rows.append(
            [
                p.id,
                fmt_count(s.calls),
                f"{s.failed:,} ({fmt_pct(s.error_rate)})",
                fmt_count(s.retried_calls),
                fmt_count(s.reused),
                fmt_count(s.attempts),
                tokens,
                fmt_usd(s.cost.total_usd, "not priced" if s.cost.priced_by == "not priced" else "no data"),
                priced,
            ]
        )
    return Table(header, rows)


def errors_table(
    record: RunRecord, stats: SampleStats, redact_many: RedactMany | None = None
) -> Table | None:
    """Failed calls by provider and error type (messages redacted when asked), or ``None``."""
    rows = []
    for pid, s in record.providers.items():
        for etype, n in sorted(s.errors_by_type.items(), key=lambda kv: -kv[1]):
            rows.append([pid, etype, fmt_count(n), stats.error_examples.get(pid, {}).get(etype, "")])
    if redact_many is not None and rows:
        # Error messages can quote the prompt or the provider's answer: mask them like evidence.
        for row, masked in zip(rows, redact_many([r[3] for r in rows]), strict=True):
            row[3] = masked
    return Table(["provider", "error type", "calls", "example message"], rows) if rows else None


def latency_figures(record: RunRecord, stats: SampleStats, providers: Sequence[ProviderView]) -> list[Figure]:
    """Latency and TTFT distributions per provider (one chart each)."""
    figures = []
    for attr, label in (("latency", "End-to-end latency"), ("ttft", "Time to first token")):
        arrays = {
            p.id: np.frombuffer(getattr(stats, attr)[p.id], dtype=float)
            for p in providers
            if len(getattr(stats, attr).get(p.id, ())) > 0
        }
        positive = [a[a > 0] for a in arrays.values()]
        positive = [a for a in positive if a.size]
        if not positive:
            continue
        lo = min(float(a.min()) for a in positive)
        hi = max(float(a.max()) for a in positive)
        if hi <= lo:
            hi = lo * 1.5 + 1e-3
        edges = np.geomspace(lo, hi, 31)
        series = []
        dist_attr = "latency_s" if attr == "latency" else "ttft_s"
        for p in providers:
            a = arrays.get(p.id)
            if a is None:
                continue
            counts, _ = np.histogram(np.clip(a, lo, hi), bins=edges)
            d = getattr(record.providers[p.id], dist_attr)
            markers = [
                (float(v), f"{name} {fmt_seconds(v)}")
                for name, v in (("p50", d.p50), ("p95", d.p95))
                if v is not None
            ]
            series.append(charts.HistogramSeries(p.id, p.color, [int(c) for c in counts], markers))
        title = f"{label} per provider"
        caption = "Successful calls; 30 log-spaced bins; solid line p50, dashed line p95 (from run.json)."
        missing = [p.id for p in providers if p.id not in arrays]
        if missing:
            why = "not streamed, so no time to first token" if attr == "ttft" else "no successful call"
            caption += f" Not shown: {', '.join(missing)} ({why})."
        figures.append(
            Figure(
                title=title,
                svg=charts.histogram_panels(
                    [float(e) for e in edges], series, title=title, x_fmt=lambda v: fmt_seconds(v), log_x=True
                ),
                caption=caption,
            )
        )
    return figures


def load_table(record: RunRecord, providers: Sequence[ProviderView]) -> Table | None:
    """One row per provider and load stage (the numbers behind the throughput-latency curves)."""
    rows = []
    for p in providers:
        load = record.providers[p.id].load
        if load is None:
            continue
        for st in load.stages:
            target = f"{st.rate:g} req/s" if st.rate is not None else f"concurrency {st.concurrency}"
            state = "saturated" if st.saturated else ("ok" if st.saturated is False else "")
            if st.saturated and st.stop_reason:
                state += f": {st.stop_reason}"
            rows.append(
                [
                    p.id,
                    target,
                    fmt_count(st.calls),
                    f"{st.offered_rps:.3g}" if st.offered_rps is not None else "n/a",
                    f"{st.achieved_rps:.3g}" if st.achieved_rps is not None else "n/a",
                    f"{st.failed:,} ({fmt_pct(st.error_rate)})",
                    fmt_seconds(st.ttft_s.p50, "not streamed"),
                    fmt_seconds(st.ttft_s.p95, "not streamed"),
                    fmt_seconds(st.latency_s.p50, "no calls"),
                    fmt_seconds(st.latency_s.p95, "no calls"),
                    fmt_seconds(st.start_lag_s.p95, "n/a"),
                    fmt_count(st.capped_starts),
                    state,
                ]
            )
    if not rows:
        return None
    header = [
        "provider",
        "stage",
        "calls",
        "offered req/s",
        "achieved req/s",
        "failed",
        "TTFT p50",
        "TTFT p95",
        "latency p50",
        "latency p95",
        "start lag p95",
        "capped starts",
        "stop rule",
    ]
    return Table(header, rows)


def _load_caption(record: RunRecord, providers: Sequence[ProviderView]) -> str:
    parts = []
    for p in providers:
        load = record.providers[p.id].load
        if load is None:
            continue
        line = f"{p.id}: {load.profile}"
        if load.max_sustained_rate is not None:
            line += f", sustained up to {load.max_sustained_rate:g} req/s"
        if load.stopped_at_rate is not None:
            line += f", stopped at {load.stopped_at_rate:g} req/s ({load.stop_reason})"
        if load.unreached_rates:
            line += f", not run: {', '.join(f'{r:g}' for r in load.unreached_rates)} req/s"
        if load.warmup_calls:
            line += f", {load.warmup_calls} warm-up calls excluded"
        parts.append(line)
    rules = {record.providers[p.id].load.stop_rule for p in providers if record.providers[p.id].load}  # type: ignore[union-attr]
    rules.discard(None)
    text = "; ".join(parts) + "."
    if rules:
        text += " Stop rule: " + " / ".join(sorted(r for r in rules if r)) + "."
    return text


def load_figures(record: RunRecord, providers: Sequence[ProviderView]) -> list[Figure]:
    """Each provider's throughput-latency curve from its load stages (a sweep draws the knee)."""
    loaded = [p for p in providers if (ld := record.providers[p.id].load) is not None and ld.planned_rates]
    if not loaded:
        return []
    figures = []
    for attr, label in (("latency_s", "Latency p95"), ("ttft_s", "TTFT p95")):
        series = []
        for p in loaded:
            load = record.providers[p.id].load
            assert load is not None
            pts = [
                charts.CurvePoint(st.achieved_rps, getattr(st, attr).p95, st.rate, bool(st.saturated))
                for st in load.stages
                if st.achieved_rps is not None and getattr(st, attr).p95 is not None
            ]
            if pts:
                series.append(charts.CurveSeries(p.id, p.color, p.shape, pts))
        if not series:
            continue
        title = f"Throughput vs {label.split()[0]} (p95) per load stage"
        caption = (
            "Each point is one load stage: achieved throughput (successful calls completed per second) "
            f"against its {label}; hollow markers are stages the stop rule judged saturated. "
            + _load_caption(record, providers)
        )
        figures.append(
            Figure(
                title=title,
                svg=charts.curve_chart(
                    series,
                    title=title,
                    x_label="achieved throughput (req/s)",
                    y_label=label,
                    x_fmt=lambda v: f"{v:g}",
                    y_fmt=lambda v: fmt_seconds(v),
                ),
                caption=caption,
                table=load_table(record, loaded) if attr == "latency_s" else None,
                wide=False,
            )
        )
    return figures


def suite_efficiency_table(record: RunRecord, pids: Sequence[str]) -> Table | None:
    """Latency, tokens and cost per suite and provider, or ``None`` when the run has none."""
    rows = []
    for suite in ordered_suites(record):
        for pid in pids:
            res = suite.results.get(pid)
            if res is None:
                continue
            e = res.efficiency
            rows.append(
                [
                    suite.name,
                    pid,
                    fmt_count(e.calls),
                    fmt_count(e.failed),
                    fmt_seconds(e.latency_s.p50, "no calls"),
                    fmt_seconds(e.latency_s.p95, "no calls"),
                    f"{e.prompt_tokens:,} / {e.completion_tokens:,}",
                    fmt_usd(e.cost_usd, "not priced"),
                    fmt_usd(e.cost_per_1k_samples_usd, "not priced"),
                ]
            )
    if not rows:
        return None
    return Table(
        [
            "suite",
            "provider",
            "calls",
            "failed",
            "latency p50",
            "latency p95",
            "tokens in / out",
            "cost",
            "cost / 1k",
        ],
        rows,
    )


def _guard_health(pid: str, s: ProviderSummary) -> list[str] | None:
    """Rail failures and slow rails of a guarded provider (``providers[*].guard``, record schema 3+)."""
    health = getattr(s, "guard", None)
    if health is None:
        return None
    errors = int(getattr(health, "rail_errors", 0) or 0)
    timeouts = int(getattr(health, "rail_timeouts", 0) or 0)
    slow = int(getattr(health, "slow_rails", 0) or 0)
    failed = int(getattr(health, "failed_calls", 0) or 0)
    return [f"{errors:,}", f"{timeouts:,}", f"{failed:,}", f"{slow:,}"]


def guard_overhead_table(
    record: RunRecord, pairs: Sequence[tuple[str, str]], stats: SampleStats
) -> Table | None:
    """What each guard adds over its unguarded twin: latency and rail verdicts, or ``None``."""
    if not pairs:
        return None
    rows = []
    for g, u in pairs:
        gs, us = record.providers[g], record.providers[u]
        blocked_in = gs.finish_reasons.get("guard_blocked_input", 0)
        blocked_out = gs.finish_reasons.get("guard_blocked_output", 0)
        d50 = (
            None
            if gs.latency_s.p50 is None or us.latency_s.p50 is None
            else gs.latency_s.p50 - us.latency_s.p50
        )
        d95 = (
            None
            if gs.latency_s.p95 is None or us.latency_s.p95 is None
            else gs.latency_s.p95 - us.latency_s.p95
        )
        actions = stats.guard_actions.get(g)
        rows.append(
            [
                f"{g} vs {u}",
                f"{blocked_in:,} ({fmt_pct(blocked_in / gs.succeeded if gs.succeeded else None, 'no calls')})",
                f"{blocked_out:,} ({fmt_pct(blocked_out / gs.succeeded if gs.succeeded else None, 'no calls')})",
                ", ".join(f"{k} {v:,}" for k, v in actions.most_common()) if actions else "n/a",
                ("+" if (d50 or 0) >= 0 else "\u2212") + fmt_seconds(abs(d50)) if d50 is not None else "n/a",
                ("+" if (d95 or 0) >= 0 else "\u2212") + fmt_seconds(abs(d95)) if d95 is not None else "n/a",
                *(_guard_health(g, gs) or ["n/a (not recorded)"] * 4),
            ]
        )
    return Table(
        [
            "pair",
            "inputs blocked",
            "outputs blocked",
            "guard actions",
            "\u0394 latency p50",
            "\u0394 latency p95",
            # Rail failures fail their call in a run (never a silent allow); slow rails would
            # have hit timeout_ms in production.
            "rail errors",
            "rail timeouts",
            "calls failed by rails",
            "slow rail checks",
        ],
        rows,
    )
