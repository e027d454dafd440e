"""The report's content, computed once from the run record (and samples) for every output format.

:func:`build_view` turns a :class:`~rai_harness.record.RunRecord` plus the streamed
:class:`~rai_harness.report.samples.SampleStats` into plain dataclasses of already formatted
strings and already drawn charts. Templates only lay them out, which keeps the formatting
rules in one place (:mod:`rai_harness.report.fmt`) and the templates free of arithmetic.
Strings here are untrusted text: the HTML template escapes them; only chart markup
(:class:`markupsafe.Markup` from :mod:`rai_harness.report.charts`) is inserted as-is.

The dataclasses and the cell helpers every section shares live in
:mod:`~rai_harness.report.viewmodel`; the trade-off charts in :mod:`~rai_harness.report.tradeoffs`;
efficiency, latency, load and guard-overhead sections in :mod:`~rai_harness.report.performance`.
This module builds the scorecard, the suite sections, the evidence and method sections, and
puts them together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rai_harness import __version__
from rai_harness.record import Comparison, ProviderSummary, RunRecord, SuiteRun
from rai_harness.report import charts
from rai_harness.report.findings import blocked_shares, executive_summary, limitations
from rai_harness.report.fmt import (
    WIDER_BY_DESIGN,
    fmt_count,
    fmt_diff,
    fmt_duration,
    fmt_estimate,
    fmt_p,
    fmt_pct,
    fmt_rate_per_s,
    fmt_seconds,
    fmt_usd,
    is_percent,
    method_name,
    na,
)
from rai_harness.report.performance import (
    efficiency_table,
    errors_table,
    guard_overhead_table,
    latency_figures,
    load_figures,
    load_table,
    suite_efficiency_table,
)
from rai_harness.report.policy import PolicyView
from rai_harness.report.samples import EvidenceExample, SampleStats
from rai_harness.report.tradeoffs import tradeoff_figures
from rai_harness.report.viewmodel import (
    CONCERNS,
    Cell,
    CompRow,
    EvidenceGroup,
    EvidenceShown,
    Figure,
    KeyFigure,
    MethodSuite,
    PathScrubber,
    ProviderView,
    RedactMany,
    ReportView,
    Row,
    RowGroup,
    SuiteView,
    Table,
    guard_pairs,
    headline_specs,
    iso_time,
    judge_note,
    judged_cell,
    metric_cell,
    ordered_suites,
    provider_configs,
    spec_of,
    unit_fmt,
)
from rai_harness.stats import Estimate

__all__ = ["CONCERNS", "ReportView", "build_view", "guard_pairs"]

_DIRECTION = {
    "lower": "\u2193 lower is better",
    "higher": "\u2191 higher is better",
    "neutral": "closer to 0 is better",
}
_DIRECTION_SHORT = {"lower": "\u2193", "higher": "\u2191", "neutral": "\u21940"}
_TESTS = {"paired-bootstrap": "paired bootstrap", "mcnemar": "McNemar"}
_STATUS_LABEL = {"complete": "Complete", "failed": "Failed", "incomplete": "Incomplete"}
#: Rows of a breakdown chart beyond this are left out of the chart (the table keeps them all).
MAX_CHART_GROUPS = 30
#: Characters of the config snapshot shown (a config with inline prompt items can be huge).
MAX_CONFIG_CHARS = 20_000
_FACT_SEGMENTS = (
    ("correct", "#1f6fb2", "#ffffff"),
    ("incorrect", "#e8964f", "#1f2328"),
    ("not_attempted", "#d0d7de", "#1f2328"),
)

# Sections
# ---------------------------------------------------------------------------------------------


def _providers(record: RunRecord) -> list[ProviderView]:
    cfgs = provider_configs(record)
    out = []
    for i, (pid, s) in enumerate(record.providers.items()):
        cfg = cfgs.get(pid, {})
        guard = cfg.get("guard")
        policy = guard.get("policy") if isinstance(guard, Mapping) else None
        guarded = bool(guard) or "guarded_by" in s.model_info
        pricing = {
            "tokens": "per token",
            "hourly": "per hour",
        }.get(s.cost.priced_by, "not priced")
        out.append(
            ProviderView(
                id=pid,
                kind=s.kind,
                model=s.model,
                color=charts.PALETTE[i % len(charts.PALETTE)],
                shape=charts.SHAPES[i % len(charts.SHAPES)],
                guarded=guarded,
                guard_policy=str(policy) if policy else ("guarded" if guarded else None),
                pricing=pricing,
                calls=s.calls,
                failed=s.failed,
            )
        )
    return out


_EFFICIENCY_ROWS: tuple[tuple[str, str, Callable[[ProviderSummary], str]], ...] = (
    (
        "TTFT p50",
        "ttft.p50_s",
        lambda s: fmt_seconds(s.ttft_s.p50, "not streamed" if s.succeeded else "no calls"),
    ),
    (
        "TTFT p95",
        "ttft.p95_s",
        lambda s: fmt_seconds(s.ttft_s.p95, "not streamed" if s.succeeded else "no calls"),
    ),
    (
        "Latency p50 (end to end)",
        "latency.p50_s",
        lambda s: fmt_seconds(s.latency_s.p50, "no successful calls"),
    ),
    (
        "Latency p95 (end to end)",
        "latency.p95_s",
        lambda s: fmt_seconds(s.latency_s.p95, "no successful calls"),
    ),
    (
        "Output tokens/s p50",
        "tokens_per_s.p50",
        lambda s: fmt_rate_per_s(s.output_tokens_per_s.p50, "not measured"),
    ),
    (
        "Cost per 1k calls",
        "cost.per_1k_calls_usd",
        lambda s: (
            fmt_usd(
                s.cost.per_1k_calls_usd, "not priced" if s.cost.priced_by == "not priced" else "no cost data"
            )
            + (" (est.)" if s.cost.estimated and s.cost.per_1k_calls_usd is not None else "")
        ),
    ),
    ("Error rate", "error_rate", lambda s: f"{fmt_pct(s.error_rate)} ({s.failed:,} of {s.calls:,})"),
)


def _scorecard(record: RunRecord, pids: Sequence[str], policy: PolicyView | None) -> list[RowGroup]:
    groups: dict[str, list[Row]] = {c: [] for c in CONCERNS}
    for suite in ordered_suites(record):
        for spec in headline_specs(suite):
            cells = [metric_cell(record, suite, spec, pid, policy) for pid in pids]
            groups.setdefault(suite.concern, []).append(
                Row(
                    label=spec.display,
                    cells=cells,
                    sub=f"{suite.name} \u00b7 {_DIRECTION[spec.direction]}",
                    hint=spec.definition,
                )
            )
    out = [RowGroup(CONCERNS.get(c, c.title()), rows) for c, rows in groups.items() if rows]
    perf = []
    for label, gate_name, get in _EFFICIENCY_ROWS:
        cells = []
        for pid in pids:
            s = record.providers[pid]
            text = get(s)
            verdict = policy.cell(pid, gate_name) if policy else None
            cells.append(
                Cell(
                    text,
                    status=verdict.status if verdict else None,
                    title="; ".join(verdict.messages) if verdict else None,
                    missing=text.startswith("n/a"),
                )
            )
        perf.append(Row(label=label, cells=cells))
    out.append(RowGroup("Performance and cost", perf))
    return out


def _orient(c: Comparison, pairs: Sequence[tuple[str, str]]) -> tuple[str, str, Estimate, bool]:
    """The comparison as guarded - unguarded when it is a guard pair (flipping the sign if needed)."""
    for g, u in pairs:
        if (c.a, c.b) == (g, u):
            return g, u, c.diff, True
        if (c.a, c.b) == (u, g):
            d = c.diff
            flipped = Estimate(
                value=None if d.value is None else -d.value,
                ci_low=None if d.ci_high is None else -d.ci_high,
                ci_high=None if d.ci_low is None else -d.ci_low,
                n=d.n,
                n_clusters=d.n_clusters,
                method=d.method,
                confidence=d.confidence,
                note=d.note,
            )
            return g, u, flipped, True
    return c.a, c.b, c.diff, False


def _comp_rows(suite: SuiteRun, pairs: Sequence[tuple[str, str]]) -> list[CompRow]:
    rows = []
    for c in suite.comparisons:
        spec = spec_of(suite, c.metric)
        unit = spec.unit if spec else "score"
        direction = spec.direction if spec else "neutral"
        a, b, diff, is_pair = _orient(c, pairs)
        sig = c.p_value is not None and c.p_value < 0.05 and diff.value is not None and diff.value != 0
        if not sig:
            verdict = "no significant difference"
        elif direction == "neutral":
            verdict = "different (p < 0.05)"
        else:
            better = (diff.value or 0.0) < 0 if direction == "lower" else (diff.value or 0.0) > 0
            if is_pair:
                verdict = "better with the guard" if better else "worse with the guard"
            else:
                verdict = f"{a} {'better' if better else 'worse'}"
        rows.append(
            CompRow(
                suite=suite.name,
                metric=spec.display if spec else c.metric,
                a=a,
                b=b,
                diff=fmt_diff(diff, unit),
                p=fmt_p(c.p_value),
                test=_TESTS.get(c.test, c.test),
                n=fmt_count(c.n),
                verdict=verdict,
                significant=sig,
                guard_pair=is_pair,
            )
        )
    rows.sort(key=lambda r: (not r.guard_pair,))
    return rows


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix} \u203a {k}" if prefix else str(k), v, out)
    elif isinstance(value, bool):
        out[prefix] = "yes" if value else "no"
    elif isinstance(value, int):
        out[prefix] = fmt_count(value)
    elif isinstance(value, float):
        out[prefix] = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        out[prefix] = ", ".join(str(v) for v in value[:20]) + (" \u2026" if len(value) > 20 else "")
    elif value is None:
        out[prefix] = "n/a"
    else:
        out[prefix] = str(value)


def _counts_table(suite: SuiteRun, pids: Sequence[str]) -> Table | None:
    flat: dict[str, dict[str, str]] = {}
    keys: list[str] = []
    for pid in pids:
        res = suite.results.get(pid)
        if res is None or not res.counts:
            continue
        f: dict[str, str] = {}
        _flatten("", res.counts, f)
        flat[pid] = f
        keys.extend(k for k in f if k not in keys)
    if not keys:
        return None
    keys = keys[:80]
    return Table(["count", *pids], [[k, *[flat.get(pid, {}).get(k, "n/a") for pid in pids]] for k in keys])


def _breakdown_figures(suite: SuiteRun, providers: Sequence[ProviderView]) -> list[Figure]:
    names: list[str] = []
    meta: dict[str, tuple[str, str, str]] = {}
    for res in suite.results.values():
        for b in res.breakdowns:
            if b.name not in meta:
                names.append(b.name)
                meta[b.name] = (b.title, b.metric, b.by)
    figures = []
    for name in names:
        title, metric, by = meta[name]
        spec = spec_of(suite, metric)
        unit = spec.unit if spec else "score"
        signed = bool(spec and spec.direction == "neutral" and not is_percent(unit))
        groups: list[str] = []
        rows_by_pid: dict[str, dict[str, Estimate]] = {}
        for p in providers:
            found = suite.results.get(p.id)
            bd = next((b for b in found.breakdowns if b.name == name), None) if found else None
            if bd is None:
                continue
            rows_by_pid[p.id] = bd.rows
            groups.extend(g for g in bd.rows if g not in groups)
        shown = groups[:MAX_CHART_GROUPS]
        series = [
            charts.BarSeries(p.id, p.color, [rows_by_pid[p.id].get(g) for g in shown])
            for p in providers
            if p.id in rows_by_pid
        ]
        svg = charts.grouped_bars(
            shown, series, title=title, fmt=unit_fmt(unit, signed), percent_scale=is_percent(unit)
        )
        table = Table(
            [by, *[s.name for s in series]],
            [
                [g, *[fmt_estimate(rows_by_pid[s.name].get(g), spec, unit=unit, with_n=True) for s in series]]
                for g in groups
            ],
        )
        caption = "Bars: point estimates; whiskers: 95% intervals."
        if spec is not None:
            caption += f" {_DIRECTION[spec.direction].capitalize()}."
        if len(groups) > len(shown):
            caption += f" The chart shows the first {len(shown)} of {len(groups)} groups; the table has all."
        figures.append(Figure(title=title, svg=svg, caption=caption, table=table))
    return figures


def _hist_bins(arrays: Iterable[np.ndarray]) -> np.ndarray | None:
    data = [a for a in arrays if a.size]
    if not data:
        return None
    lo = min(float(a.min()) for a in data)
    hi = max(float(a.max()) for a in data)
    if lo >= 0.0 and hi <= 1.0:
        return np.linspace(0.0, 1.0, 21)
    if lo >= -1.0 and hi <= 1.0:
        return np.linspace(-1.0, 1.0, 21)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, 21)


def _score_histograms(suite: SuiteRun, stats: SampleStats, providers: Sequence[ProviderView]) -> list[Figure]:
    figures = []
    keys: list[str] = []
    for spec in suite.metrics:
        if spec.sample_key and spec.sample_key not in keys:
            keys.append(spec.sample_key)
    for key in keys:
        vk = (suite.name, key)
        per = stats.values.get(vk)
        if not per or vk in stats.binary:
            continue
        arrays = {p.id: np.frombuffer(per[p.id], dtype=float) for p in providers if p.id in per}
        edges = _hist_bins(arrays.values())
        if edges is None:
            continue
        series = []
        for p in providers:
            if p.id not in arrays:
                continue
            counts, _ = np.histogram(arrays[p.id], bins=edges)
            a = arrays[p.id]
            markers = [(float(np.median(a)), f"median {float(np.median(a)):.2f}")] if a.size else []
            series.append(charts.HistogramSeries(p.id, p.color, [int(c) for c in counts], markers))
        metrics = ", ".join(m.display for m in suite.metrics if m.sample_key == key)
        title = f"Distribution of per-sample {key}"
        svg = charts.histogram_panels(
            [float(e) for e in edges], series, title=title, x_fmt=lambda v: f"{v:g}"
        )
        figures.append(
            Figure(
                title=title,
                svg=svg,
                caption=f"Successful calls only; 20 equal-width bins; bar height relative to each provider's "
                f"tallest bin. Evidences: {metrics}.",
            )
        )
    return figures


def _factuality_figure(suite: SuiteRun, providers: Sequence[ProviderView]) -> Figure | None:
    rows = []
    for p in providers:
        res = suite.results.get(p.id)
        if res is None:
            continue
        counts = res.counts
        if not all(isinstance(counts.get(k), int) for k, _, _ in _FACT_SEGMENTS):
            continue
        rows.append(charts.StackedRow(p.id, [(k, int(counts[k]), c, t) for k, c, t in _FACT_SEGMENTS]))
    if not rows:
        return None
    title = "Answers graded correct / incorrect / not attempted"
    return Figure(
        title=title,
        svg=charts.stacked_bars(rows, title=title),
        caption="Share of scored answers per grade (failed calls excluded); hover a segment for counts.",
    )


def _suite_view(
    index: int,
    record: RunRecord,
    suite: SuiteRun,
    providers: Sequence[ProviderView],
    stats: SampleStats,
    pairs: Sequence[tuple[str, str]],
    policy: PolicyView | None,
) -> SuiteView:
    pids = [p.id for p in providers]
    metric_rows = [
        Row(
            label=spec.display,
            cells=[
                judged_cell(suite, spec, pid, metric_cell(record, suite, spec, pid, policy)) for pid in pids
            ],
            sub=f"{spec.name} \u00b7 {_DIRECTION[spec.direction]}"
            + (f" \u00b7 {judge_note(suite, record)}" if spec.graded_by == "judge" else ""),
            hint=spec.definition,
            judged=spec.graded_by == "judge",
        )
        for spec in suite.metrics
    ]
    calls = []
    for pid in pids:
        res = suite.results.get(pid)
        calls.append(
            Cell(f"{res.calls:,} calls, {res.failed:,} failed") if res else Cell(na("not run"), missing=True)
        )
    figures: list[Figure] = []
    if not suite.error:
        fact = _factuality_figure(suite, providers)
        if fact is not None:
            figures.append(fact)
        figures.extend(_breakdown_figures(suite, providers))
        figures.extend(_score_histograms(suite, stats, providers))
    notes = [(pid, n) for pid in pids if (res := suite.results.get(pid)) for n in res.notes]
    return SuiteView(
        anchor=f"suite-{index}",
        name=suite.name,
        title=suite.title,
        version=suite.version,
        concern=CONCERNS.get(suite.concern, suite.concern),
        description=suite.description,
        error=suite.error,
        metric_rows=metric_rows,
        figures=figures,
        counts=_counts_table(suite, pids),
        notes=notes,
        comparisons=_comp_rows(suite, pairs),
        calls=calls,
    )


def _judge_ids(record: RunRecord) -> list[str]:
    """Providers that act as judges: ``role: judge`` in their config, or named by a suite scorer."""
    cfgs = provider_configs(record)
    ids = [pid for pid, cfg in cfgs.items() if cfg.get("role") == "judge" and pid in record.providers]
    for suite in record.suites.values():
        for entry in suite.scorers.values():
            spec = entry.get("spec", {}) if isinstance(entry, Mapping) else {}
            options = spec.get("options", {}) if isinstance(spec, Mapping) else {}
            for key in ("provider", "judge", "judge_provider"):
                pid = (options.get(key) if isinstance(options, Mapping) else None) or (
                    spec.get(key) if isinstance(spec, Mapping) else None
                )
                if isinstance(pid, str) and pid in record.providers and pid not in ids:
                    ids.append(pid)
    return ids


def _cost_lines(record: RunRecord) -> list[str]:
    judges = set(_judge_ids(record))
    priced = [s.cost.total_usd for s in record.providers.values() if s.cost.total_usd is not None]
    unpriced = [pid for pid, s in record.providers.items() if s.cost.priced_by == "not priced"]
    lines = []
    if priced:
        line = f"Total cost of the run: {fmt_usd(sum(priced))}"
        if unpriced:
            line += f" (not counting {', '.join(unpriced)}: not priced)"
        lines.append(line + ".")
    else:
        lines.append("Total cost of the run: n/a (no provider is priced).")
    for jid, js in record.judges.items():
        cost = fmt_usd(js.cost.total_usd) if js.cost.total_usd is not None else "n/a (not priced)"
        lines.append(
            f"Judge {jid} ({js.kind}:{js.model}): {cost} over {js.calls:,} calls ({js.failed:,} failed, "
            f"{js.reused:,} reused); not part of the audited providers' costs or error budgets."
        )
    if judges:
        jc = [record.providers[j].cost.total_usd for j in judges]
        calls = sum(record.providers[j].calls for j in judges)
        known = [c for c in jc if c is not None]
        cost = fmt_usd(sum(known)) if known else "n/a (not priced)"
        lines.append(f"Judge cost ({', '.join(sorted(judges))}): {cost} over {calls:,} calls.")
    return lines


def _interval_methods(record: RunRecord) -> list[str]:
    """Every interval method behind this run's metrics and breakdowns, most used first."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for suite in record.suites.values():
        for res in suite.results.values():
            ests = [*res.metrics.values(), *(e for b in res.breakdowns for e in b.rows.values())]
            counts.update(e.method for e in ests if e.ci_low is not None)
    return [
        f"{method_name(m)} ({n:,} estimate{'s' if n != 1 else ''}"
        + (f"; {WIDER_BY_DESIGN[m]})" if m in WIDER_BY_DESIGN else ")")
        for m, n in counts.most_common()
    ]


def _evidence(
    record: RunRecord,
    stats: SampleStats,
    providers: Sequence[ProviderView],
    redact_many: RedactMany | None,
) -> list[EvidenceGroup]:
    pv = {p.id: p for p in providers}
    order = {"lower": "highest first", "higher": "lowest first", "neutral": "farthest from 0 first"}
    groups: list[EvidenceGroup] = []
    raw: list[tuple[Any, list[tuple[ProviderView, list[EvidenceExample]]]]] = []
    suites = {s.name: i for i, s in enumerate(ordered_suites(record))}
    for ekey in sorted(stats.evidence, key=lambda k: (suites.get(k.suite, 99), k.sample_key, k.direction)):
        per = stats.evidence[ekey]
        shown = [(pv[pid], exs) for pid, exs in per.items() if pid in pv]
        shown.sort(key=lambda t: providers.index(t[0]))
        raw.append((ekey, shown))
    texts: list[str] = []
    known: list[list[tuple[int, int, str]]] = []
    for _, shown in raw:
        for _, exs in shown:
            for ex in exs:
                texts.extend((ex.prompt, ex.output))
                known.extend(([], list(ex.spans)))
    if redact_many is not None and texts:
        texts = redact_many(texts, known)
    it = iter(texts)
    for gi, (ekey, shown) in enumerate(raw):
        suite = record.suites.get(ekey.suite)
        if suite is None or suite.error:
            continue
        metric_names = [
            m.display
            for m in suite.metrics
            if m.sample_key == ekey.sample_key and m.direction == ekey.direction
        ]
        binary = (ekey.suite, ekey.sample_key) in stats.binary
        out_prov: list[tuple[ProviderView, list[EvidenceShown]]] = []
        for p, exs in shown:
            items = []
            for ex in exs:
                prompt, output = next(it), next(it)
                value = ("yes" if ex.value else "no") if binary else f"{ex.value:.3f}"
                items.append(
                    EvidenceShown(
                        sample_id=ex.sample_id,
                        value=f"{ekey.sample_key} = {value}",
                        prompt=prompt,
                        prompt_cut=ex.prompt_cut,
                        output=output,
                        output_cut=ex.output_cut,
                        finish_reason=ex.finish_reason,
                        guard_action=ex.guard_action,
                    )
                )
            out_prov.append((p, items))
        groups.append(
            EvidenceGroup(
                anchor=f"evidence-{gi}",
                suite_title=suite.title,
                suite=suite.name,
                key=ekey.sample_key,
                metrics=", ".join(metric_names),
                order=order.get(ekey.direction, ""),
                providers=out_prov,
            )
        )
    return groups


def _method(record: RunRecord) -> list[MethodSuite]:
    out = []
    for suite in ordered_suites(record):
        scorer_rows = []
        for role, entry in suite.scorers.items():
            spec = entry.get("spec", {}) if isinstance(entry, Mapping) else {}
            info = entry.get("info", {}) if isinstance(entry, Mapping) else {}
            backend = str(spec.get("backend", "")) if isinstance(spec, Mapping) else ""
            model = str(spec.get("model") or "default") if isinstance(spec, Mapping) else ""
            version = ", ".join(
                f"{k} {v}"
                for k, v in (info.items() if isinstance(info, Mapping) else ())
                if isinstance(v, (str, int, float))
            )
            if isinstance(entry, Mapping) and entry.get("info_error"):
                version = f"n/a ({entry['info_error']})"
            scorer_rows.append([str(role), backend, model, version or "n/a (not recorded)"])
        ds_rows = [
            [d.name, d.path or "", d.sha256[:16] + "\u2026", fmt_count(d.rows)] for d in suite.datasets
        ]
        out.append(
            MethodSuite(
                title=suite.title,
                name=suite.name,
                version=suite.version,
                description=suite.description,
                metrics=list(suite.metrics),
                scorers=Table(["role", "backend", "model", "version"], scorer_rows) if scorer_rows else None,
                params=", ".join(f"{k}={v}" for k, v in suite.params.items()) or "defaults",
                datasets=Table(["dataset", "path", "sha256", "rows"], ds_rows) if ds_rows else None,
            )
        )
    return out


def _config_yaml(record: RunRecord) -> str:
    text = yaml.safe_dump(record.config, sort_keys=False, allow_unicode=True, width=100)
    if len(text) > MAX_CONFIG_CHARS:
        text = text[:MAX_CONFIG_CHARS] + f"\n# \u2026 cut: {len(text) - MAX_CONFIG_CHARS:,} more characters\n"
    return text


def _environment(record: RunRecord) -> tuple[Table, Table, Table | None, Table | None]:
    env = record.environment
    env_rows = [
        [str(k), str(v)] for k, v in env.items() if k != "packages" and isinstance(v, (str, int, float, bool))
    ]
    packages = env.get("packages", {}) if isinstance(env.get("packages"), Mapping) else {}
    pkg_rows = [[str(k), str(v)] for k, v in sorted(packages.items())]
    datasets = [[d.name, d.path or "", d.sha256, fmt_count(d.rows)] for d in record.datasets]
    seen = {d.sha256 for d in record.datasets}
    for suite in record.suites.values():
        for d in suite.datasets:
            if d.sha256 not in seen:
                seen.add(d.sha256)
                datasets.append([d.name, d.path or "", d.sha256, fmt_count(d.rows)])
    models = []
    for pid, s in record.providers.items():
        info = ", ".join(
            f"{k}: {v}" for k, v in s.model_info.items() if isinstance(v, (str, int, float, bool)) and v != ""
        )
        models.append([pid, s.kind, s.model, info or "n/a (not reported)"])
    return (
        Table(["setting", "value"], env_rows),
        Table(["package", "version"], pkg_rows),
        Table(["dataset", "path", "sha256", "rows"], datasets) if datasets else None,
        Table(["provider", "kind", "model", "details"], models) if models else None,
    )


def _key_figures(record: RunRecord, policy: PolicyView | None) -> list[KeyFigure]:
    calls = sum(s.calls for s in record.providers.values())
    failed = sum(s.failed for s in record.providers.values())
    scored = sum(1 for s in record.suites.values() if not s.error)
    costs = [s.cost.total_usd for s in record.providers.values() if s.cost.total_usd is not None]
    figures = [
        KeyFigure("Providers", str(len(record.providers))),
        KeyFigure(
            "Suites scored",
            f"{scored} of {len(record.suites)}" if record.suites else "none",
            status=None if scored == len(record.suites) else "error",
        ),
        KeyFigure(
            "Calls", fmt_count(calls), f"{failed:,} failed ({fmt_pct(failed / calls if calls else None)})"
        ),
        KeyFigure("Total cost", fmt_usd(sum(costs)) if costs else na("not priced")),
        KeyFigure("Duration", fmt_duration(record.duration_s)),
    ]
    if policy is not None:
        label = {"pass": "Pass", "fail": "Fail", "error": "Error"}.get(policy.status or "", "n/a")
        figures.append(KeyFigure("Gate policy", label, policy.name, status=policy.status))
    return figures


def _samples_shortfall(record: RunRecord, stats: SampleStats) -> str | None:
    """What the evidence lacks when ``samples.jsonl`` holds fewer calls than ``run.json`` counts.

    A truncated or hand-cut samples file still renders; the report must then say that its
    distributions and worst examples are over part of the run, and how much is missing.
    """
    expected = sum(s.calls for s in record.providers.values())
    missing = expected - stats.lines
    parts = []
    if missing > 0:
        parts.append(
            f"{record.samples_file} holds {stats.lines:,} readable call records of the {expected:,} calls "
            f"run.json counts: {missing:,} are missing, so score distributions, latency histograms and "
            "worst examples leave them out (the metrics come from run.json and are complete)."
        )
    if stats.bad_lines:
        parts.append(f"{stats.bad_lines:,} unreadable lines of {record.samples_file} were skipped.")
    return " ".join(parts) or None


def build_view(
    record: RunRecord,
    stats: SampleStats,
    *,
    policy: PolicyView | None = None,
    redact_many: RedactMany | None = None,
    redactor: str | None = None,
    max_examples: int = 5,
    run_dir: str | Path | None = None,
) -> ReportView:
    """Compute every section of the report.

    Args:
        record: The run record.
        stats: From :func:`~rai_harness.report.samples.scan_samples`.
        policy: Gate verdict to colour the scorecard with.
        redact_many: Masks PII in a batch of texts (``--redact``); ``None`` shows texts as recorded.
        redactor: Name of the redaction engine (shown in the report).
        max_examples: Worst examples per metric and provider (as scanned).
        run_dir: The run folder: absolute paths of the machine in the view are shown relative
            to it (or by their base name), so a shared report does not reveal the machine's layout.

    Returns:
        The view the templates render.
    """
    providers = _providers(record)
    pids = [p.id for p in providers]
    pairs = guard_pairs(record)
    suites = [
        _suite_view(i, record, s, providers, stats, pairs, policy)
        for i, s in enumerate(ordered_suites(record))
    ]
    guard_rows = [r for sv in suites for r in sv.comparisons if r.guard_pair]
    ordered = ordered_suites(record)
    blocked = blocked_shares(record, pairs, stats)
    tradeoffs, tradeoff_notes = tradeoff_figures(record, providers, stats)
    env, packages, datasets, models = _environment(record)
    failed_total = sum(s.failed for s in record.providers.values())
    samples_note = None
    if not stats.found:
        samples_note = (
            f"{record.samples_file} was not found next to run.json: score distributions, latency "
            "histograms and worst examples are left out."
        )
    else:
        samples_note = _samples_shortfall(record, stats)
    view = ReportView(
        title=f"Responsible-AI audit: {record.name}",
        run_name=record.name,
        run_id=record.run_id,
        status=record.status if record.status in _STATUS_LABEL else "incomplete",
        status_label=_STATUS_LABEL.get(record.status, record.status.title() or "Unknown"),
        problems=list(record.problems),
        started=iso_time(record.started_at),
        finished=iso_time(record.finished_at),
        duration=fmt_duration(record.duration_s),
        generated_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        rai_version=__version__,
        record_version=str(record.schema_version),
        description=str(record.config.get("description") or ""),
        providers=providers,
        key_figures=_key_figures(record, policy),
        policy=policy,
        scorecard=_scorecard(record, pids, policy),
        tradeoffs=tradeoffs,
        tradeoff_notes=tradeoff_notes,
        guard_pairs=pairs,
        guard_rows=guard_rows,
        guard_overhead=guard_overhead_table(record, pairs, stats),
        suites=suites,
        efficiency=efficiency_table(record, providers),
        errors=errors_table(record, stats, redact_many),
        latency_figures=[*load_figures(record, providers), *latency_figures(record, stats, providers)],
        load_table=load_table(record, providers),
        suite_efficiency=suite_efficiency_table(record, pids),
        cost_lines=_cost_lines(record),
        evidence=_evidence(record, stats, providers, redact_many) if max_examples > 0 else [],
        evidence_note=f"Up to {max_examples} examples per metric and provider; prompts cut at "
        f"400 and outputs at 700 characters.",
        samples_note=samples_note,
        method=_method(record),
        failed_note=(
            f"Failed calls ({failed_total:,} in this run) are counted per provider and suite and excluded "
            "from every metric's denominator; they never count as safe or as correct."
        ),
        config_yaml=_config_yaml(record) if redact_many is None else redact_many([_config_yaml(record)])[0],
        config_path=record.config_path,
        config_sha=record.config_sha256,
        seed=record.seed,
        environment=env,
        packages=packages,
        datasets=datasets,
        models=models,
        timing_warning=str(record.timing_quality.get("warning"))
        if record.timing_quality.get("warning")
        else None,
        redacted=redact_many is not None,
        redactor=redactor,
        summary=executive_summary(
            record, ordered, pairs, policy, [(r.a, r.metric, r.verdict) for r in guard_rows], blocked
        ),
        limitations=limitations(record, ordered, pairs, blocked),
        blocked=blocked,
        interval_methods=_interval_methods(record),
    )
    scrub = PathScrubber(run_dir)
    return scrub.view(view)
