"""The run summary ``rai run`` prints: efficiency and headline safety scores, readable at 80 columns.

CI logs are often 80 columns wide. Provider ids are folded onto more lines, never cut
(``smollm...`` identifies nothing); numbers use the report's formats (:mod:`.fmt`) so the
console and the HTML report read the same; every safety score comes with its interval and n.
"""

from __future__ import annotations

from rich import box
from rich.table import Table

from rai_harness.markdown import console_escape
from rai_harness.record import MetricSpec, RunRecord
from rai_harness.report.fmt import fmt_bound, fmt_rate_per_s, fmt_seconds, fmt_usd, fmt_value, is_percent
from rai_harness.stats import Estimate

__all__ = ["efficiency_table", "safety_table", "safety_tables"]

_ARROW = {"lower": "\u2193", "higher": "\u2191", "neutral": "\u21940"}


def efficiency_table(record: RunRecord) -> Table:
    """Calls, failures, latency, throughput and cost per provider (TTFT is in the HTML report)."""
    table = Table(
        title=f"run {console_escape(record.name)} ({console_escape(record.status)})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    longest = max((len(pid) for pid in record.providers), default=8)
    table.add_column("provider", overflow="fold", min_width=min(longest, 20))
    # Two-line headers keep the numeric columns narrow, so the table fits 80 columns
    # without rich cropping a header (the ids fold, everything else stays on one line).
    for col in ("calls", "failed", "latency\np50", "latency\np95", "tok/s\np50", "$ per 1k\ncalls"):
        table.add_column(col, justify="right", overflow="fold")
    table.caption = "-: not measured (no successful call) or not priced; *: estimated tokens"
    table.caption_justify = "left"
    for pid, s in record.providers.items():
        table.add_row(
            console_escape(pid),
            f"{s.calls:,}",
            f"{s.failed:,}",
            fmt_seconds(s.latency_s.p50) if s.latency_s.p50 is not None else "-",
            fmt_seconds(s.latency_s.p95) if s.latency_s.p95 is not None else "-",
            fmt_rate_per_s(s.output_tokens_per_s.p50).replace(" tok/s", "")
            if s.output_tokens_per_s.p50 is not None
            else "-",
            "-"
            if s.cost.per_1k_calls_usd is None
            else fmt_usd(s.cost.per_1k_calls_usd) + ("*" if s.cost.estimated else ""),
        )
    return table


def _score(est: Estimate | None, spec: MetricSpec) -> str:
    if est is None or est.value is None:
        return "n/a" + (f" ({console_escape(est.note)})" if est is not None and est.note else "")
    signed = spec.direction == "neutral" and not is_percent(spec.unit)
    text = f"{fmt_value(est.value, spec.unit, signed=signed)} n={est.n:,}"
    if est.ci_low is not None and est.ci_high is not None:
        lo, hi = (
            fmt_bound(est.ci_low, spec.unit, signed=signed),
            fmt_bound(est.ci_high, spec.unit, signed=signed),
        )
        flag = " (0 width)" if est.ci_low == est.ci_high else ""
        text += f"\n[{lo}, {hi}]{flag}"
    return console_escape(text)


#: Width of a provider column in the safety table: ``[81.5, 100.0]`` and ``100.0% n=300``.
_SCORE_WIDTH = 14


def _metric_width(record: RunRecord) -> int:
    """Wide enough for the suite names (``factuality.truthfulqa_gen``) not to break mid-word."""
    return min(max([14, *(len(name) for name in record.suites)]), 26)


def safety_tables(record: RunRecord, width: int = 80) -> list[Table]:
    """:func:`safety_table` split over as many tables as it takes to fit ``width`` columns.

    Rich crops a table whose columns cannot shrink to the console's width (a provider column
    cut to ``gpt-`` is as bad as ``smollm...``). Columns have fixed widths here, so each
    table takes as many providers as fit, in run order; ids fold inside their column.

    Args:
        record: The run record.
        width: The console width in columns.

    Returns:
        The tables, in provider order; empty without suites.
    """
    pids = list(record.providers)
    if not record.suites or not pids:
        return []
    # Each column is padded by one space on both sides, except at the table's two edges.
    per_table = max(1, (width - _metric_width(record) - 1) // (_SCORE_WIDTH + 2))
    tables = []
    for start in range(0, len(pids), per_table):
        table = safety_table(record, pids[start : start + per_table])
        assert table is not None
        if start:
            table.title = "headline safety scores, continued"
        tables.append(table)
    return tables


def safety_table(record: RunRecord, providers: list[str] | None = None) -> Table | None:
    """Headline metric of every suite per provider: value, n and 95% interval; ``None`` without suites.

    Args:
        record: The run record.
        providers: Only these providers' columns (default: every provider, in run order).
    """
    suites = [s for s in record.suites.values()]
    if not suites:
        return None
    pids = list(record.providers) if providers is None else providers
    table = Table(
        title="headline safety scores (95% interval)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("metric", overflow="fold", width=_metric_width(record))
    for pid in pids:
        table.add_column(console_escape(pid), justify="right", overflow="fold", width=_SCORE_WIDTH)
    for suite in suites:
        heads = [m for m in suite.metrics if m.headline] or list(suite.metrics[:1])
        for spec in heads:
            label = f"{console_escape(_ARROW[spec.direction] + ' ' + spec.display)}\n[dim]{console_escape(suite.name)}[/]"
            if suite.error:
                table.add_row(label, *["n/a (scoring failed)" for _ in pids])
                continue
            cells = []
            for pid in pids:
                res = suite.results.get(pid)
                cells.append(_score(res.metrics.get(spec.name), spec) if res is not None else "not run")
            table.add_row(label, *cells)
    return table
