"""The report's view model: the dataclasses every output format lays out, and the cell helpers.

:func:`~rai_harness.report.view.build_view` fills these with already formatted strings and
already drawn charts; the section builders (:mod:`~rai_harness.report.tradeoffs`,
:mod:`~rai_harness.report.performance`) share the helpers below. Strings here are untrusted
text: the HTML template escapes them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Protocol

from markupsafe import Markup

from rai_harness.record import MetricSpec, RunRecord, SuiteRun
from rai_harness.report.findings import BlockedShare, Finding
from rai_harness.report.fmt import (
    fmt_bound,
    fmt_estimate,
    interval_label,
    is_percent,
    na,
)
from rai_harness.report.policy import PolicyView
from rai_harness.stats import Estimate

__all__ = [
    "CONCERNS",
    "Cell",
    "CompRow",
    "EvidenceGroup",
    "EvidenceShown",
    "Figure",
    "KeyFigure",
    "MethodSuite",
    "PathScrubber",
    "ProviderView",
    "RedactMany",
    "ReportView",
    "Row",
    "RowGroup",
    "SuiteView",
    "Table",
    "guard_pairs",
    "headline_specs",
    "iso_time",
    "judge_note",
    "judged_cell",
    "metric_cell",
    "ordered_suites",
    "provider_configs",
    "self_judging",
    "spec_of",
    "unit_fmt",
]

#: Concern -> heading, in scorecard order.
CONCERNS: dict[str, str] = {
    "toxicity": "Toxicity",
    "bias": "Bias",
    "pii": "PII leakage",
    "factuality": "Factuality",
}


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


def iso_time(ts: str) -> str:
    """``ts`` (ISO 8601) as ``YYYY-MM-DD HH:MM UTC``; the text itself when it does not parse."""
    try:
        d = dt.datetime.fromisoformat(ts)
    except (TypeError, ValueError):
        return ts or "n/a"
    if d.tzinfo is not None:
        d = d.astimezone(dt.timezone.utc)
        return d.strftime("%Y-%m-%d %H:%M:%S UTC")
    return d.strftime("%Y-%m-%d %H:%M:%S")


def provider_configs(record: RunRecord) -> dict[str, Mapping[str, Any]]:
    """Each provider's config snapshot from the run record, by provider id."""
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
    cfgs = provider_configs(record)

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


def spec_of(suite: SuiteRun, metric: str) -> MetricSpec | None:
    """The suite's spec of ``metric``, or ``None``."""
    return next((m for m in suite.metrics if m.name == metric), None)


def unit_fmt(unit: str, signed: bool = False) -> Callable[[float], str]:
    """A formatter for values in ``unit`` (percent units get a ``%``)."""
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


def metric_cell(
    record: RunRecord, suite: SuiteRun, spec: MetricSpec, pid: str, policy: PolicyView | None
) -> Cell:
    """The scorecard cell of one metric for one provider (estimate, interval, n, policy mark)."""
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


def self_judging(record: RunRecord, suite: SuiteRun) -> list[str]:
    """The suite's providers graded by their own model (``run.json`` judges' ``self_judging``)."""
    judge = suite.judge
    summary = record.judges.get(judge.id) if judge is not None else None
    own = (summary.model_info.get("self_judging") if summary is not None else None) or []
    return [str(pid) for pid in own if pid in suite.results]


def judge_note(suite: SuiteRun, record: RunRecord | None = None) -> str:
    """Who graded a model-graded metric and how far it agrees with people (or that nobody measured it).

    With the run ``record``, a judge that grades its own model's answers is named as such.
    """
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
            agreement += " (measured for a different judge configuration, so not this judge's judge_kappa)"
    else:
        agreement = "agreement with human labels not measured (no judge_calibration)"
    repeats = f"; {judge.repeats} grades per reply" if judge.repeats > 1 else ""
    own = self_judging(record, suite) if record is not None else []
    selfish = f"; self-judging ({', '.join(own)}): known to favour its own answers" if own else ""
    return f"judged by {judge.id} ({judge.kind}:{judge.model}); {agreement}{repeats}{selfish}"


def judged_cell(suite: SuiteRun, spec: MetricSpec, pid: str, cell: Cell) -> Cell:
    """A model-graded cell, with the matcher's score on the same replies under it."""
    if spec.graded_by != "judge" or not spec.matcher_metric:
        return cell
    result = suite.results.get(pid)
    if result is None:
        return cell
    judge_counts = result.counts.get("judge")
    same = judge_counts.get("matcher_same_items", {}) if isinstance(judge_counts, Mapping) else {}
    raw = same.get(spec.matcher_metric) if isinstance(same, Mapping) else None
    matcher_spec = spec_of(suite, spec.matcher_metric)
    est: Estimate | None
    if isinstance(raw, Mapping):
        where, est = "on the same replies", Estimate.model_validate(raw)
    else:
        where, est = "on all replies", result.metrics.get(spec.matcher_metric)
    if est is None or matcher_spec is None:
        return cell
    line = f"matcher {where}: {fmt_estimate(est, matcher_spec)}"
    return dataclasses.replace(cell, n=f"{cell.n}; {line}" if cell.n else line)


def headline_specs(suite: SuiteRun) -> list[MetricSpec]:
    """The suite's headline metrics (its first metric when none is marked)."""
    heads = [m for m in suite.metrics if m.headline]
    return heads or suite.metrics[:1]


def ordered_suites(record: RunRecord) -> list[SuiteRun]:
    """The run's suites in scorecard order (by concern, as :data:`CONCERNS` lists them)."""
    order = list(CONCERNS)
    return sorted(
        record.suites.values(),
        key=lambda s: order.index(s.concern) if s.concern in order else len(order),
    )


# ---------------------------------------------------------------------------------------------
