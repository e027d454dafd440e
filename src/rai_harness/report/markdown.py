"""``--format md``: GitHub-flavoured Markdown for ``$GITHUB_STEP_SUMMARY`` and PR comments.

Short on purpose: status and problems, the gate verdict, the scorecard table and the
guarded-vs-unguarded differences, then where the full HTML report is. No model output is
included (a PR comment is no place for the worst toxic examples).

Every value is escaped for Markdown *and* inline HTML: GitHub renders ``<b>`` and
``[text](url)`` inside table cells, so a provider id or a problem message could otherwise
inject a link or markup into the comment.
"""

from __future__ import annotations

from urllib.parse import quote

from rai_harness.markdown import md_escape
from rai_harness.report.viewmodel import Cell, ReportView

__all__ = ["md_escape", "render_markdown"]

_STATUS_ICON = {"complete": "\u2705", "failed": "\u274c", "incomplete": "\u26a0\ufe0f"}
_CELL_MARK = {"pass": " \u2705", "fail": " \u274c", "error": " \u2753"}
_FINDING_MARK = {
    "pass": "\u2705",
    "fail": "\u274c",
    "error": "\u2753",
    "risk": "\u26a0\ufe0f",
    "info": "\u2139\ufe0f",
}
#: Limitations listed in a PR comment (the HTML report has them all).
MAX_MD_LIMITATIONS = 8


def _cell(c: Cell) -> str:
    n = f" ({c.n})" if c.n else ""
    return md_escape(c.text + n) + (_CELL_MARK.get(c.status or "", ""))


def render_markdown(view: ReportView, *, html_path: str | None = None, html_link: str | None = None) -> str:
    """Render the Markdown summary.

    Args:
        view: From :func:`~rai_harness.report.view.build_view`.
        html_path: Where the full HTML report is (shown as code).
        html_link: The HTML report's file name relative to the Markdown file, when they share a
            folder (rendered as a link; it is our own file name, never data).

    Returns:
        The Markdown text.
    """
    icon = _STATUS_ICON.get(view.status, "\u26a0\ufe0f")
    out: list[str] = [
        f"## {icon} Responsible-AI audit: {md_escape(view.run_name)} \u2014 {view.status_label}",
        "",
    ]
    calls = next((k for k in view.key_figures if k.label == "Calls"), None)
    cost = next((k for k in view.key_figures if k.label == "Total cost"), None)
    facts = [
        f"run `{md_escape(view.run_id).replace('`', '')}`",
        f"started {view.started}",
        f"duration {view.duration}",
        f"{len(view.providers)} provider{'s' if len(view.providers) != 1 else ''}",
    ]
    if calls:
        facts.append(f"{calls.value} calls ({md_escape(calls.sub)})")
    if cost:
        facts.append(f"total cost {md_escape(cost.value)}")
    out += [" \u00b7 ".join(facts), ""]
    if view.problems:
        out.append("> [!WARNING]")
        headline = {"failed": "This run failed", "incomplete": "This run is incomplete"}.get(
            view.status, "Problems"
        )
        out.append(f"> **{headline}**: {len(view.problems)} problem(s)")
        out += [f"> - {md_escape(p)}" for p in view.problems]
        out.append("")
    if view.policy is not None:
        p = view.policy
        if p.status:
            counts = {s: sum(1 for r in p.rows if r.status == s) for s in ("pass", "fail", "error")}
            out.append(
                f"**Gate policy** {md_escape(p.name)}: **{p.status.upper()}** "
                f"({counts['pass']} passed, {counts['fail']} failed, {counts['error']} could not be evaluated)"
            )
        else:
            out.append(f"**Gate policy** {md_escape(p.name)}: not applied ({md_escape(p.note or 'unknown')})")
        out.append("")
    if view.summary:
        out += ["### Executive summary", ""]
        out += [f"- {_FINDING_MARK.get(f.kind, '-')} {md_escape(f.text)}" for f in view.summary]
        out.append("")
    out += [
        "### Scorecard",
        "",
        "Point estimate, 95% confidence interval and what it is over (successes/n, or n) per provider.",
        "",
    ]
    out.append("| metric | " + " | ".join(md_escape(p.id) for p in view.providers) + " |")
    out.append("| --- | " + " | ".join("---:" for _ in view.providers) + " |")
    for group in view.scorecard:
        out.append(f"| **{md_escape(group.title)}** | " + " | ".join("" for _ in view.providers) + " |")
        for row in group.rows:
            out.append(f"| {md_escape(row.label)} | " + " | ".join(_cell(c) for c in row.cells) + " |")
    out.append("")
    judged = [(suite, row) for suite in view.suites for row in suite.metric_rows if row.judged]
    if judged:
        out += [
            "### Model-graded metrics",
            "",
            "Graded by a judge model; each row names the judge and its measured agreement with human "
            "labels, and each cell the string matcher's score on the same replies.",
            "",
        ]
        out.append("| suite | metric | " + " | ".join(md_escape(p.id) for p in view.providers) + " |")
        out.append("| --- | --- | " + " | ".join("---:" for _ in view.providers) + " |")
        for suite, row in judged:
            label = f"{row.label} ({row.sub})" if row.sub else row.label
            out.append(
                f"| {md_escape(suite.name)} | {md_escape(label)} | "
                + " | ".join(_cell(c) for c in row.cells)
                + " |"
            )
        out.append("")
    if view.guard_rows:
        out += [
            "### Guarded vs unguarded",
            "",
            "Differences are guarded \u2212 unguarded (rates in percentage points).",
            "",
        ]
        out.append("| suite | metric | guarded | unguarded | difference [95% CI] | p | reading |")
        out.append("| --- | --- | --- | --- | ---: | ---: | --- |")
        for r in view.guard_rows:
            out.append(
                f"| {md_escape(r.suite)} | {md_escape(r.metric)} | {md_escape(r.a)} | {md_escape(r.b)} | "
                f"{md_escape(r.diff)} | {md_escape(r.p)} | {md_escape(r.verdict)} |"
            )
        out.append("")
    if view.load_table is not None:
        out += [
            "### Load stages",
            "",
            "Per provider and load stage (warm-up excluded): offered and achieved request rates, "
            "TTFT and latency percentiles, and the stop rule's judgement (the throughput-latency curve "
            "is in the HTML report).",
            "",
        ]
        out.append("| " + " | ".join(md_escape(h) for h in view.load_table.header) + " |")
        out.append("| " + " | ".join("---:" if n else "---" for n in view.load_table.num_cols) + " |")
        out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in view.load_table.rows]
        out.append("")
    if view.limitations:
        # Guard/scorer overlap and blocked-answer effects first: they change how the table reads.
        ranked = sorted(
            view.limitations,
            key=lambda line: not ("overlap" in line or "blocked answers" in line or "Small samples" in line),
        )
        out += ["### Limitations", ""]
        out += [f"- {md_escape(line)}" for line in ranked[:MAX_MD_LIMITATIONS]]
        if len(ranked) > MAX_MD_LIMITATIONS:
            out.append(f"- \u2026 {len(ranked) - MAX_MD_LIMITATIONS} more in the full report.")
        out.append("")
    failing = [s for s in view.suites if s.error]
    if failing:
        out += ["### Suites not scored", ""]
        out += [f"- {md_escape(s.name)}: {md_escape(s.error or '')}" for s in failing]
        out.append("")
    tail = "Full report"
    if html_link:
        out.append(
            f"{tail}: [{md_escape(html_link)}]({quote(html_link)}) (self-contained HTML; open it in a browser)."
        )
    elif html_path:
        out.append(f"{tail}: `{html_path.replace('`', '')}` (open in a browser; self-contained).")
    else:
        out.append(f"{tail}: run `rai report RUN_DIR` for the self-contained HTML report.")
    out.append("")
    return "\n".join(out)
