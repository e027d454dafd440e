"""The report's content, computed once from the run record (and samples) for every output format.

:func:`build_view` turns a :class:`~rai_harness.record.RunRecord` plus the streamed
:class:`~rai_harness.report.samples.SampleStats` into plain dataclasses of already formatted
strings and already drawn charts. Templates only lay them out, which keeps the formatting
rules in one place (:mod:`rai_harness.report.fmt`) and the templates free of arithmetic.
Strings here are untrusted text: the HTML template escapes them; only chart markup
(:class:`markupsafe.Markup` from :mod:`rai_harness.report.charts`) is inserted as-is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Protocol

import numpy as np
import yaml
from markupsafe import Markup

from rai_harness import __version__
from rai_harness.record import Comparison, MetricSpec, ProviderSummary, RunRecord, SuiteRun
from rai_harness.report import charts
from rai_harness.report.findings import BlockedShare, Finding, blocked_shares, executive_summary, limitations
from rai_harness.report.fmt import (
    WIDER_BY_DESIGN,
    fmt_bound,
    fmt_count,
    fmt_diff,
    fmt_duration,
    fmt_estimate,
    fmt_p,
    fmt_pct,
    fmt_rate_per_s,
    fmt_seconds,
    fmt_usd,
    interval_label,
    is_percent,
    method_name,
    na,
)
from rai_harness.report.policy import PolicyView
from rai_harness.report.samples import EvidenceExample, SampleStats
from rai_harness.stats import Estimate

__all__ = ["CONCERNS", "ReportView", "build_view", "guard_pairs"]

#: Concern -> heading, in scorecard order.
CONCERNS: dict[str, str] = {
    "toxicity": "Toxicity",
    "bias": "Bias",
    "pii": "PII leakage",
    "factuality": "Factuality",
}
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

# ---------------------------------------------------------------------------------------------
# View dataclasses
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderView:
    """A provider as the report names it."""

    id: str
    kind: str
    model: str
    color: str
    shape: str
    guarded: bool
    guard_policy: str | None
    pricing: str
    calls: int
    failed: int


@dataclass(frozen=True)
class Cell:
    """One table cell: the value, its interval, and the gate's verdict when a policy was given."""

    text: str
    status: str | None = None  # "pass" | "fail" | "error" | None
    title: str | None = None
    missing: bool = False
    #: What the interval is over and how it was computed (``37/300; 95% Clopper-Pearson (exact)``), shown under it.
    n: str | None = None


@dataclass(frozen=True)
class Row:
    """A labelled row of cells (one per provider)."""

    label: str
    cells: list[Cell]
    sub: str | None = None  # suite name / direction hint under the label
    hint: str | None = None  # tooltip: the metric's definition
    judged: bool = False  # a model-graded metric (``sub`` names the judge and its agreement)


@dataclass(frozen=True)
class RowGroup:
    """Rows under a heading (a concern, or performance and cost)."""

    title: str
    rows: list[Row]


@dataclass(frozen=True)
class Figure:
    """A chart with its title, caption and (optionally) the numbers behind it as a table."""

    title: str
    svg: Markup
    caption: str = ""
    table: Table | None = None
    wide: bool = True


_NUMERIC = re.compile(r"^[\u2212+\-$<>]?\s?[\d.,]+")


@dataclass(frozen=True)
class Table:
    """A plain table of strings."""

    header: list[str]
    rows: list[list[str]]

    @property
    def num_cols(self) -> list[bool]:
        """Which columns hold numbers (right-aligned): every present value starts like a number."""
        out = []
        for i in range(len(self.header)):
            values = [r[i] for r in self.rows if i < len(r) and r[i] and not r[i].startswith("n/a")]
            out.append(bool(values) and all(_NUMERIC.match(v) for v in values))
        return out


@dataclass(frozen=True)
class CompRow:
    """One paired comparison, oriented a - b (guarded - unguarded for guard pairs)."""

    suite: str
    metric: str
    a: str
    b: str
    diff: str
    p: str
    test: str
    n: str
    verdict: str
    significant: bool
    guard_pair: bool


@dataclass(frozen=True)
class SuiteView:
    """One suite's section."""

    anchor: str
    name: str
    title: str
    version: str
    concern: str
    description: str
    error: str | None
    metric_rows: list[Row]
    figures: list[Figure]
    counts: Table | None
    notes: list[tuple[str, str]]
    comparisons: list[CompRow]
    calls: list[Cell]


@dataclass(frozen=True)
class EvidenceShown:
    """One example as shown (texts possibly redacted)."""

    sample_id: str
    value: str
    prompt: str
    prompt_cut: int
    output: str
    output_cut: int
    finish_reason: str | None
    guard_action: str | None


@dataclass(frozen=True)
class EvidenceGroup:
    """Worst examples for one suite's per-sample score, per provider."""

    anchor: str
    suite_title: str
    suite: str
    key: str
    metrics: str
    order: str
    providers: list[tuple[ProviderView, list[EvidenceShown]]]


@dataclass(frozen=True)
class MethodSuite:
    """A suite's method notes."""

    title: str
    name: str
    version: str
    description: str
    metrics: list[MetricSpec]
    scorers: Table | None
    params: str
    datasets: Table | None


@dataclass(frozen=True)
class KeyFigure:
    """A headline number in the summary strip."""

    label: str
    value: str
    sub: str = ""
    status: str | None = None


@dataclass
class ReportView:
    """Everything the templates render."""

    title: str
    run_name: str
    run_id: str
    status: str
    status_label: str
    problems: list[str]
    started: str
    finished: str
    duration: str
    generated_at: str
    rai_version: str
    record_version: str
    description: str
    providers: list[ProviderView]
    key_figures: list[KeyFigure]
    policy: PolicyView | None
    scorecard: list[RowGroup]
    tradeoffs: list[Figure]
    tradeoff_notes: list[str]
    guard_pairs: list[tuple[str, str]]
    guard_rows: list[CompRow]
    guard_overhead: Table | None
    suites: list[SuiteView]
    efficiency: Table
    errors: Table | None
    latency_figures: list[Figure]
    suite_efficiency: Table | None
    cost_lines: list[str]
    evidence: list[EvidenceGroup]
    evidence_note: str
    samples_note: str | None
    method: list[MethodSuite]
    failed_note: str
    config_yaml: str
    config_path: str | None
    config_sha: str | None
    seed: int
    environment: Table
    packages: Table
    datasets: Table | None
    models: Table | None
    timing_warning: str | None
    redacted: bool
    redactor: str | None
    #: Executive summary: what passed, what failed, the biggest risks (see :mod:`.findings`).
    summary: list[Finding] = field(default_factory=list)
    #: Limitations: dataset sizes, scorer caveats, guard/scorer overlap, blocked answers.
    limitations: list[str] = field(default_factory=list)
    #: Where blocked answers drive a guard's effect (shown in the guard section too).
    blocked: list[BlockedShare] = field(default_factory=list)
    #: Per-stage (per-rate) results of a load profile, one row per provider and stage.
    load_table: Table | None = None
    redaction_note: str | None = None
    #: Interval methods used by this run's estimates, as ``"Clopper-Pearson (exact) (54 estimates)"``.
    interval_methods: list[str] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sections:
            names = [
                ("summary", "Executive summary"),
                ("scorecard", "Scorecard"),
                ("tradeoffs", "Trade-offs"),
            ]
            if self.guard_pairs:
                names.append(("guard", "Guarded vs unguarded"))
            names += [
                ("suites", "Suites"),
                ("limitations", "Limitations"),
                ("efficiency", "Efficiency"),
                ("evidence", "Evidence"),
                ("method", "Method"),
                ("repro", "Reproducibility"),
            ]
            self.sections = names

    def number(self, anchor: str) -> int:
        """The section's number in the table of contents (sections that are left out are skipped)."""
        return next(i for i, (a, _) in enumerate(self.sections, 1) if a == anchor)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


# An absolute path of two or more segments: POSIX (/home/me/x), home (~/x) or Windows (C:\\x\\y).
# Not after a word character, dot, colon or slash, so "tok/s", "37/300", "and/or" and URLs
# ("https://host/v1") are left alone.
_ABS_PATH = re.compile(
    r"(?<![\w.:/\\~$-])(?:~?/(?:[\w.@+~-]+/)+[\w.@+~-]*|[A-Za-z]:\\(?:[\w.@+~ -]+\\)+[\w.@+~-]*)"
)


class RedactMany(Protocol):
    """Masks PII in a batch of texts; ``known`` adds spans already found per text (see :class:`.Redactor`)."""

    def __call__(
        self, texts: list[str], known: list[list[tuple[int, int, str]]] | None = None, /
    ) -> list[str]: ...


class PathScrubber:
    """Rewrites absolute paths of the machine that made the run: relative to the run folder, or the base name.

    A report is shared (CI artifacts, audits); ``/home/alice/work/...`` tells a reader about the
    machine and nothing about the audit. Paths inside the run folder become relative to it
    (``samples.jsonl``), others keep only their last component (``default.yaml``). Model outputs
    (the evidence) and chart markup are left exactly as recorded.
    """

    def __init__(self, run_dir: str | Path | None) -> None:
        self.root = Path(run_dir).resolve() if run_dir is not None else None

    def path(self, text: str) -> str:
        """One path as shown."""
        if self.root is not None and text.startswith("/"):
            try:
                return Path(os.path.normpath(text)).relative_to(self.root).as_posix() or "."
            except ValueError:
                pass
        name = PureWindowsPath(text).name if re.match(r"^[A-Za-z]:\\", text) else PurePosixPath(text).name
        return name or text.rstrip("/\\").rsplit("/", 1)[-1] or "."

    def text(self, text: str) -> str:
        """Every absolute path in ``text`` rewritten with :meth:`path`."""
        if "/" not in text and "\\" not in text:
            return text
        return _ABS_PATH.sub(lambda m: self.path(m.group(0)), text)

    def value(self, value: Any) -> Any:
        """Strings, lists, tuples, dicts and dataclasses, rewritten recursively (Markup and evidence untouched)."""
        if isinstance(value, (Markup, EvidenceGroup)):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {
                f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
            }
            return dataclasses.replace(value, **changes)
        return value

    def view(self, view: ReportView) -> ReportView:
        """The view with every path rewritten (sections kept as computed)."""
        out: ReportView = self.value(view)
        return out


def _iso(ts: str) -> str:
    try:
        d = dt.datetime.fromisoformat(ts)
    except (TypeError, ValueError):
        return ts or "n/a"
    if d.tzinfo is not None:
        d = d.astimezone(dt.timezone.utc)
        return d.strftime("%Y-%m-%d %H:%M:%S UTC")
    return d.strftime("%Y-%m-%d %H:%M:%S")


def _provider_configs(record: RunRecord) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for p in record.config.get("providers", []) or []:
        if isinstance(p, Mapping):
            pid = p.get("id") or f"{p.get('kind')}:{p.get('model')}"
            out[str(pid)] = p
    return out


def guard_pairs(record: RunRecord) -> list[tuple[str, str]]:
    """``(guarded, unguarded)`` provider ids: the same kind and model, with and without a guard.

    A guarded provider is one whose config has ``guard`` (or whose model info says
    ``guarded_by``). Its partner is an unguarded provider of the same kind and model; when
    there are several, the one whose id the guarded id starts with (``smollm2`` for
    ``smollm2+guard``).
    """
    cfgs = _provider_configs(record)

    def guarded(pid: str) -> bool:
        cfg = cfgs.get(pid, {})
        return bool(cfg.get("guard")) or "guarded_by" in record.providers[pid].model_info

    pairs = []
    for g in record.providers:
        if not guarded(g):
            continue
        gs = record.providers[g]
        partners = [
            u
            for u, us in record.providers.items()
            if u != g and not guarded(u) and us.kind == gs.kind and us.model == gs.model
        ]
        partners.sort(key=lambda u: (not g.startswith(u), u))
        if partners:
            pairs.append((g, partners[0]))
    return pairs


def _spec_of(suite: SuiteRun, metric: str) -> MetricSpec | None:
    return next((m for m in suite.metrics if m.name == metric), None)


def _unit_fmt(unit: str, signed: bool = False) -> Callable[[float], str]:
    if is_percent(unit):
        return lambda v: fmt_bound(v, unit) + "%"
    return lambda v: fmt_bound(v, unit, signed=signed)


def _est_title(est: Estimate | None) -> str | None:
    if est is None:
        return None
    parts = [f"n = {est.n:,}"]
    if est.successes is not None:
        parts.append(f"successes = {est.successes:,}")
    if est.n_clusters is not None:
        parts.append(f"clusters = {est.n_clusters:,}")
    if est.method and est.method != "none":
        parts.append(f"{est.confidence:.0%} {est.method} interval")
    if est.note:
        parts.append(est.note)
    return "; ".join(parts)


def _metric_cell(
    record: RunRecord, suite: SuiteRun, spec: MetricSpec, pid: str, policy: PolicyView | None
) -> Cell:
    if suite.error:
        return Cell(na("scoring failed"), missing=True, title=suite.error)
    result = suite.results.get(pid)
    if result is None:
        return Cell(na("not run for this provider"), missing=True)
    est = result.metrics.get(spec.name)
    verdict = policy.cell(pid, f"{suite.name}:{spec.name}") if policy else None
    text = fmt_estimate(est, spec)
    title = _est_title(est)
    if verdict is not None:
        title = "; ".join([*([title] if title else []), *verdict.messages])
    missing = est is None or est.value is None
    return Cell(
        text,
        status=verdict.status if verdict else None,
        title=title,
        missing=missing,
        n=None if missing or est is None else interval_label(est, spec.unit),
    )


def _judge_note(suite: SuiteRun) -> str:
    """Who graded a model-graded metric and how far it agrees with people (or that nobody measured it)."""
    judge = suite.judge
    if judge is None:
        return "model-graded"
    cal = judge.calibration or {}
    kappa = cal.get("kappa") if isinstance(cal.get("kappa"), Mapping) else None
    if kappa is not None and isinstance(kappa.get("value"), (int, float)):
        est = Estimate.model_validate(kappa)
        interval = (
            f" [{est.ci_low:.2f}, {est.ci_high:.2f}]"
            if est.ci_low is not None and est.ci_high is not None
            else ""
        )
        agreement = f"Cohen's kappa {est.value:.2f}{interval} vs human labels on {cal.get('n')} items"
        if cal.get("same_judge") is False:
            agreement += " (measured for a different judge configuration)"
    else:
        agreement = "agreement with human labels not measured (no judge_calibration)"
    repeats = f"; {judge.repeats} grades per reply" if judge.repeats > 1 else ""
    return f"judged by {judge.id} ({judge.kind}:{judge.model}); {agreement}{repeats}"


def _judged_cell(suite: SuiteRun, spec: MetricSpec, pid: str, cell: Cell) -> Cell:
    """A model-graded cell, with the matcher's score on the same replies under it."""
    if spec.graded_by != "judge" or not spec.matcher_metric:
        return cell
    result = suite.results.get(pid)
    if result is None:
        return cell
    judge_counts = result.counts.get("judge")
    same = judge_counts.get("matcher_same_items", {}) if isinstance(judge_counts, Mapping) else {}
    raw = same.get(spec.matcher_metric) if isinstance(same, Mapping) else None
    matcher_spec = _spec_of(suite, spec.matcher_metric)
    est: Estimate | None
    if isinstance(raw, Mapping):
        where, est = "on the same replies", Estimate.model_validate(raw)
    else:
        where, est = "on all replies", result.metrics.get(spec.matcher_metric)
    if est is None or matcher_spec is None:
        return cell
    line = f"matcher {where}: {fmt_estimate(est, matcher_spec)}"
    return dataclasses.replace(cell, n=f"{cell.n}; {line}" if cell.n else line)


def _headline_specs(suite: SuiteRun) -> list[MetricSpec]:
    heads = [m for m in suite.metrics if m.headline]
    return heads or suite.metrics[:1]


def _ordered_suites(record: RunRecord) -> list[SuiteRun]:
    order = list(CONCERNS)
    return sorted(
        record.suites.values(),
        key=lambda s: order.index(s.concern) if s.concern in order else len(order),
    )


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


def _providers(record: RunRecord) -> list[ProviderView]:
    cfgs = _provider_configs(record)
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
    for suite in _ordered_suites(record):
        for spec in _headline_specs(suite):
            cells = [_metric_cell(record, suite, spec, pid, policy) for pid in pids]
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


def _tradeoffs(
    record: RunRecord, providers: Sequence[ProviderView], stats: SampleStats
) -> tuple[list[Figure], list[str]]:
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
    x_untested: set[str] = set()
    for suite in _ordered_suites(record):
        if suite.error:
            continue
        for spec in _headline_specs(suite):
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
                x_untested.update(pid for (pid, _, _), ci in zip(raw, x_ci, strict=True) if ci is None)
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
                    y_fmt=_unit_fmt(spec.unit, spec.direction == "neutral"),
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
        notes.append(
            "Differences in cost or latency could not be tested for "
            f"{', '.join(sorted(x_untested))} (no per-call latencies or costs in the samples file, or "
            "too few calls); they count as ties in the Pareto marks."
        )
    if not figures:
        notes.append("No trade-off chart: no provider has both a headline metric and a cost or latency.")
    return figures, notes


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
        spec = _spec_of(suite, c.metric)
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
        spec = _spec_of(suite, metric)
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
            shown, series, title=title, fmt=_unit_fmt(unit, signed), percent_scale=is_percent(unit)
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
                _judged_cell(suite, spec, pid, _metric_cell(record, suite, spec, pid, policy)) for pid in pids
            ],
            sub=f"{spec.name} \u00b7 {_DIRECTION[spec.direction]}"
            + (f" \u00b7 {_judge_note(suite)}" if spec.graded_by == "judge" else ""),
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


def _efficiency(record: RunRecord, providers: Sequence[ProviderView]) -> Table:
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


def _errors(record: RunRecord, stats: SampleStats, redact_many: RedactMany | None = None) -> Table | None:
    rows = []
    for pid, s in record.providers.items():
        for etype, n in sorted(s.errors_by_type.items(), key=lambda kv: -kv[1]):
            rows.append([pid, etype, fmt_count(n), stats.error_examples.get(pid, {}).get(etype, "")])
    if redact_many is not None and rows:
        # Error messages can quote the prompt or the provider's answer: mask them like evidence.
        for row, masked in zip(rows, redact_many([r[3] for r in rows]), strict=True):
            row[3] = masked
    return Table(["provider", "error type", "calls", "example message"], rows) if rows else None


def _latency_figures(
    record: RunRecord, stats: SampleStats, providers: Sequence[ProviderView]
) -> list[Figure]:
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


def _load_table(record: RunRecord, providers: Sequence[ProviderView]) -> Table | None:
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


def _load_figures(record: RunRecord, providers: Sequence[ProviderView]) -> list[Figure]:
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
                table=_load_table(record, loaded) if attr == "latency_s" else None,
                wide=False,
            )
        )
    return figures


def _suite_efficiency(record: RunRecord, pids: Sequence[str]) -> Table | None:
    rows = []
    for suite in _ordered_suites(record):
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


def _judge_ids(record: RunRecord) -> list[str]:
    """Providers that act as judges: ``role: judge`` in their config, or named by a suite scorer."""
    cfgs = _provider_configs(record)
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


def _guard_overhead(record: RunRecord, pairs: Sequence[tuple[str, str]], stats: SampleStats) -> Table | None:
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
    suites = {s.name: i for i, s in enumerate(_ordered_suites(record))}
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
    for suite in _ordered_suites(record):
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
        for i, s in enumerate(_ordered_suites(record))
    ]
    guard_rows = [r for sv in suites for r in sv.comparisons if r.guard_pair]
    ordered = _ordered_suites(record)
    blocked = blocked_shares(record, pairs, stats)
    tradeoffs, tradeoff_notes = _tradeoffs(record, providers, stats)
    env, packages, datasets, models = _environment(record)
    failed_total = sum(s.failed for s in record.providers.values())
    samples_note = None
    if not stats.found:
        samples_note = (
            f"{record.samples_file} was not found next to run.json: score distributions, latency "
            "histograms and worst examples are left out."
        )
    elif stats.bad_lines:
        samples_note = f"{stats.bad_lines:,} unreadable lines of {record.samples_file} were skipped."
    view = ReportView(
        title=f"Responsible-AI audit: {record.name}",
        run_name=record.name,
        run_id=record.run_id,
        status=record.status if record.status in _STATUS_LABEL else "incomplete",
        status_label=_STATUS_LABEL.get(record.status, record.status.title() or "Unknown"),
        problems=list(record.problems),
        started=_iso(record.started_at),
        finished=_iso(record.finished_at),
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
        guard_overhead=_guard_overhead(record, pairs, stats),
        suites=suites,
        efficiency=_efficiency(record, providers),
        errors=_errors(record, stats, redact_many),
        latency_figures=[*_load_figures(record, providers), *_latency_figures(record, stats, providers)],
        load_table=_load_table(record, providers),
        suite_efficiency=_suite_efficiency(record, pids),
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
