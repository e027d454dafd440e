"""Verdict -> JUnit XML (for CI test reports) and Markdown (for job summaries and PR comments).

JUnit follows the common schema CI servers read (Jenkins, GitLab, GitHub test reporters):
``<testsuites>`` holding one ``<testsuite>`` per provider (plus one for run-level checks),
each with ``name``, ``tests``, ``failures``, ``errors``, ``skipped`` and ``time``; one
``<testcase name classname time>`` per check; a failed check holds ``<failure>``, one that
could not be evaluated holds ``<error>``. The measured value, bound and threshold are in the
``message`` attribute and the element's text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from rai_harness.gate.verdict import GateVerdict, RuleResult, num
from rai_harness.markdown import md_escape
from rai_harness.record import write_json_atomic

__all__ = [
    "STATUS_ICONS",
    "measured_text",
    "threshold_text",
    "to_junit_xml",
    "to_markdown",
    "write_junit",
    "write_markdown",
]

#: Shown in Markdown next to each status.
STATUS_ICONS = {"pass": "✅", "fail": "❌", "error": "⚠️"}

# Characters XML 1.0 cannot hold at all, even escaped (ElementTree would write them anyway).
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def measured_text(result: RuleResult) -> str:
    """``"0.0712 (ci_high)"``, or ``""`` when nothing was measured."""
    if result.measured is None:
        return ""
    return f"{num(result.measured)} ({result.bound})" if result.bound else num(result.measured)


def threshold_text(result: RuleResult) -> str:
    """``"<= 0.05"``, or ``""`` for a check without a threshold."""
    if result.op is None or result.threshold is None:
        return ""
    return f"{result.op} {num(result.threshold)}"


def _details(result: RuleResult) -> str:
    lines = [
        f"check: {result.rule_id}",
        f"provider: {result.provider or '(run)'}",
        f"metric: {result.metric}",
        f"status: {result.status}",
        f"message: {result.message}",
    ]
    if result.measured is not None:
        lines.append(f"measured: {measured_text(result)}")
    if result.threshold is not None:
        lines.append(f"threshold: {threshold_text(result)}")
    if result.value is not None:
        lines.append(f"value: {num(result.value)}")
    if result.ci_low is not None and result.ci_high is not None:
        conf = f"{result.confidence:.0%} " if result.confidence is not None else ""
        lines.append(f"{conf}interval: [{num(result.ci_low)}, {num(result.ci_high)}]")
    if result.baseline_value is not None:
        lines.append(f"baseline value: {num(result.baseline_value)}")
    for label, value in (("n", result.n), ("method", result.method), ("p-value", result.p_value)):
        if value is not None:
            lines.append(f"{label}: {value}")
    if result.source:
        lines.append(f"policy key: {result.source}")
    if result.description:
        lines.append(f"description: {result.description}")
    return "\n".join(lines)


def _groups(verdict: GateVerdict) -> dict[str | None, list[RuleResult]]:
    """Results by provider, run-level (``None``) first, then providers in first-seen order."""
    groups: dict[str | None, list[RuleResult]] = {None: []}
    for r in verdict.results:
        groups.setdefault(r.provider, []).append(r)
    if not groups[None]:
        del groups[None]
    return groups


def _counts(results: Iterable[RuleResult]) -> dict[str, str]:
    rs = list(results)
    return {
        "tests": str(len(rs)),
        "failures": str(sum(1 for r in rs if r.status == "fail")),
        "errors": str(sum(1 for r in rs if r.status == "error")),
        "skipped": "0",
        "time": "0",
    }


def to_junit_xml(verdict: GateVerdict) -> str:
    """Render a verdict as a JUnit XML document.

    Args:
        verdict: The gate's verdict.

    Returns:
        The XML text, with its declaration (UTF-8).
    """
    policy = verdict.policy_name
    root = ET.Element("testsuites", {"name": _xml_text(f"rai gate: {policy}"), **_counts(verdict.results)})
    properties = {
        "policy": verdict.policy_file or policy,
        "run": verdict.run_dir or "",
        "run_id": verdict.run_id or "",
        "baseline": verdict.baseline_dir or "",
        "verdict": verdict.status,
        "exit_code": str(verdict.exit_code),
    }
    for provider, results in _groups(verdict).items():
        group = provider if provider is not None else "run"
        suite = ET.SubElement(
            root, "testsuite", {"name": _xml_text(f"{policy}: {group}"), **_counts(results)}
        )
        props = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            if value:
                ET.SubElement(props, "property", {"name": key, "value": _xml_text(value)})
        for r in results:
            case = ET.SubElement(
                suite,
                "testcase",
                {
                    "name": _xml_text(r.rule_id),
                    "classname": _xml_text(f"rai_gate.{policy}.{group}"),
                    "time": "0",
                },
            )
            if r.status == "pass":
                continue
            tag = "failure" if r.status == "fail" else "error"
            summary = measured_text(r)
            if summary and r.op is not None:
                summary += f" vs {threshold_text(r)}"
            message = f"{summary}: {r.message}" if summary else r.message
            element = ET.SubElement(case, tag, {"message": _xml_text(message), "type": r.kind})
            element.text = _xml_text(_details(r))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(verdict: GateVerdict, path: str | Path) -> None:
    """Write :func:`to_junit_xml` to ``path`` (atomically; parent folders are created)."""
    write_json_atomic(Path(path), to_junit_xml(verdict))


def _cell(text: str) -> str:
    # Run names, provider ids, rule ids and messages come from configs and model output: the
    # report's escaping (no links, images, HTML, pipes or line breaks survive) is the one used.
    return md_escape(text)


def _code(text: str) -> str:
    """Text for a code span: Markdown does not render inside one, but a backtick would end it,
    a pipe would end a table cell and a line break the paragraph."""
    return " ".join(text.replace("`", "'").replace("|", "\\|").split())


def to_markdown(verdict: GateVerdict) -> str:
    """Render a verdict as GitHub-flavoured Markdown: a headline and one table row per result.

    Args:
        verdict: The gate's verdict.

    Returns:
        The Markdown text.
    """
    icon = STATUS_ICONS[verdict.status]
    lines = [f"## {icon} RAI gate: {verdict.status.upper()} (exit code {verdict.exit_code})", ""]
    what = f"Policy **{_cell(verdict.policy_name)}**"
    if verdict.policy_file:
        what += f" (`{_code(verdict.policy_file)}`)"
    if verdict.run_name:
        what += f" on run **{_cell(verdict.run_name)}**"
    if verdict.run_dir:
        what += f" (`{_code(verdict.run_dir)}`)"
    if verdict.baseline_dir:
        what += f" against baseline `{_code(verdict.baseline_dir)}`"
    n = len(verdict.results)
    what += (
        f": {n} check{'s' if n != 1 else ''}, {verdict.count('pass')} passed, "
        f"{verdict.count('fail')} failed, {verdict.count('error')} could not be evaluated."
    )
    lines += [what, ""]
    lines.append("| status | check | provider | metric | measured | threshold | details |")
    lines.append("| --- | --- | --- | --- | ---: | --- | --- |")
    for r in verdict.results:
        row = [
            f"{STATUS_ICONS[r.status]} {r.status}",
            _cell(r.rule_id),
            _cell(r.provider or "(run)"),
            f"`{_code(r.metric)}`" if r.metric else "",
            _cell(measured_text(r)),
            _cell(threshold_text(r)),
            _cell(r.message),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(verdict: GateVerdict, path: str | Path, *, append: bool = False) -> None:
    """Write (or append, for ``$GITHUB_STEP_SUMMARY``) :func:`to_markdown` to ``path``.

    Args:
        verdict: The gate's verdict.
        path: The file.
        append: Add to the end of the file instead of replacing it.
    """
    p = Path(path)
    if append:
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a", encoding="utf-8") as fh:
            fh.write(to_markdown(verdict) + "\n")
    else:
        write_json_atomic(p, to_markdown(verdict))
