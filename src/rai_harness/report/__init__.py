"""Reports from a run folder: a self-contained HTML audit report, a Markdown summary, a JSON summary.

>>> from rai_harness.report import render_report
>>> render_report("reports/quickstart")                    # doctest: +SKIP
PosixPath('reports/quickstart/report.html')

A report reads only the run folder (``run.json`` and ``samples.jsonl``), never a model, so a
finished run can be re-rendered at any time. ``samples.jsonl`` is streamed once (see
:mod:`rai_harness.report.samples`), so the cost of a report grows with the number of calls
only through that one pass, and its size not at all: charts are histograms, evidence is capped.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rai_harness.errors import ConfigError

if TYPE_CHECKING:
    from rai_harness.record import RunRecord
    from rai_harness.report.redaction import Redactor

# Heavy modules (the run record pulls in numpy, scipy and pydantic models) are imported inside
# the functions: the parallel samples scan starts fresh processes that import this package,
# and they need none of it.
RedactorKind = Literal["auto", "presidio", "regex"]

__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "ReportFormat",
    "build_report",
    "default_output",
    "load_run",
    "render_report",
]

log = logging.getLogger(__name__)

ReportFormat = Literal["html", "md", "json"]
#: Worst examples shown per metric and provider.
DEFAULT_MAX_EXAMPLES = 5
_SUFFIX: dict[str, str] = {"html": "report.html", "md": "report.md", "json": "report-summary.json"}


def load_run(run_dir: str | Path) -> RunRecord:
    """Read a run folder's ``run.json``, with errors that say which file is wrong and what to do.

    Args:
        run_dir: The folder ``rai run`` wrote.

    Returns:
        The run record.

    Raises:
        ConfigError: The folder or ``run.json`` is missing, unreadable, too new or invalid.
    """
    from rai_harness.record import read_run_record

    folder = Path(run_dir)
    if not folder.is_dir():
        raise ConfigError(
            "run folder not found; pass the folder `rai run` wrote (it holds run.json), e.g. reports/quickstart",
            file=str(folder),
        )
    path = folder / "run.json"
    if not path.is_file():
        raise ConfigError(
            "no run.json in this folder; pass the folder `rai run` wrote, or rerun the config to finish the run",
            file=str(path),
        )
    return read_run_record(folder)


def default_output(run_dir: str | Path, fmt: ReportFormat) -> Path:
    """Where a report goes by default: ``report.html``, ``report.md`` or ``report-summary.json`` in the run folder."""
    return Path(run_dir) / _SUFFIX[fmt]


def build_report(
    run_dir: str | Path,
    *,
    fmt: ReportFormat = "html",
    redact: bool = False,
    policy: str | Path | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    redactor: RedactorKind = "auto",
    html_path: str | None = None,
    html_link: str | None = None,
) -> str:
    """Render a report of a run folder to a string.

    Args:
        run_dir: The run folder.
        fmt: ``"html"`` (the audit report), ``"md"`` (GitHub Markdown summary) or ``"json"``.
        redact: Mask personal data in the texts the HTML report shows.
        policy: A gate policy YAML; scorecard cells are marked pass/fail by it.
        max_examples: Worst examples per metric and provider (HTML only; 0 shows none).
        redactor: With ``redact``: ``"auto"`` (presidio when it loads, plus regex), ``"presidio"``
            or ``"regex"`` (no model load; e-mails, phones, cards, SSNs by shape).
        html_path: For ``md``: where the HTML report is, to point readers to it.
        html_link: For ``md``: the HTML report's path relative to the Markdown file (a link).

    Returns:
        The report text.

    Raises:
        ConfigError: Missing or invalid run folder, run record or policy file; unknown format.
    """
    from rai_harness.report.policy import evaluate_policy
    from rai_harness.report.summary import build_summary

    if fmt not in _SUFFIX:
        raise ConfigError(f"unknown report format {fmt!r}; use html, md or json", key_path="--format")
    if max_examples < 0:
        raise ConfigError("must be 0 or more", key_path="--max-examples")
    folder = Path(run_dir)
    record = load_run(folder)
    policy_view = evaluate_policy(record, policy) if policy is not None else None
    if fmt == "json":
        return (
            json.dumps(build_summary(record, policy_view), ensure_ascii=False, separators=(",", ":")) + "\n"
        )

    from rai_harness.report.samples import SampleStats, scan_samples
    from rai_harness.report.view import build_view

    if fmt == "md":
        view = build_view(record, SampleStats(), policy=policy_view, max_examples=0, run_dir=folder)
        from rai_harness.report.markdown import render_markdown

        return render_markdown(view, html_path=html_path, html_link=html_link)
    from rai_harness.report.viewmodel import guard_pairs

    paired = sorted({pid for pair in guard_pairs(record) for pid in pair})
    stats = scan_samples(folder, record, max_examples=max_examples, paired=paired)
    engine: Redactor | None = None
    if redact:
        from rai_harness.report.redaction import Redactor

        engine = Redactor(redactor)
    view = build_view(
        record,
        stats,
        policy=policy_view,
        redact_many=engine.redact_many if engine is not None else None,
        redactor=engine.engine if engine is not None else None,
        max_examples=max_examples,
        run_dir=folder,
    )
    if engine is not None:
        # After build_view: the note says what was actually masked, presidio failures included.
        view.redaction_note = engine.note()
    from rai_harness.report.html import render_html

    return render_html(view)


def render_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    fmt: ReportFormat = "html",
    redact: bool = False,
    policy: str | Path | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    redactor: RedactorKind = "auto",
) -> Path:
    """Write a report of a run folder and return its path.

    ``rai run`` calls this after writing ``run.json``; ``rai report`` calls it on any run folder.

    Args:
        run_dir: The run folder (holds ``run.json`` and ``samples.jsonl``).
        out: Output file; default :func:`default_output` (inside the run folder).
        fmt: ``"html"``, ``"md"`` or ``"json"``.
        redact: Mask personal data in the example texts of the HTML report.
        policy: Gate policy YAML whose verdict marks the scorecard.
        max_examples: Worst examples per metric and provider in the HTML report.
        redactor: Redaction engine (see :func:`build_report`).

    Returns:
        The path written.

    Raises:
        ConfigError: Missing or invalid inputs (the message names the file and the fix).
    """
    target = Path(out) if out is not None else default_output(run_dir, fmt)
    html_path = html_link = None
    if fmt == "md":
        html = default_output(run_dir, "html")
        if html.exists():
            # Never the machine's absolute path: relative to the working directory when the
            # report is below it (CI), else its file name.
            try:
                html_path = html.resolve().relative_to(Path.cwd().resolve()).as_posix()
            except ValueError:
                html_path = html.name
            if html.parent.resolve() == target.parent.resolve():
                html_link = html.name
    text = build_report(
        run_dir,
        fmt=fmt,
        redact=redact,
        policy=policy,
        max_examples=max_examples,
        redactor=redactor,
        html_path=html_path,
        html_link=html_link,
    )
    from rai_harness.record import write_json_atomic

    write_json_atomic(target, text)  # atomic: a browser or CI step never sees half a report
    # The temporary file is private (0600); a report is meant to be shared like any other output.
    os.chmod(target, 0o644)
    log.info("wrote %s (%d bytes)", target, len(text.encode("utf-8")))
    return target
