"""``rai gate``: decide whether a finished run passes a policy, for CI.

Thin, like the rest of the CLI: :func:`run_gate_cli` calls
:func:`~rai_harness.gate.evaluate_run_dir`, prints a table, writes the optional JUnit, Markdown
and JSON files, appends the Markdown to ``$GITHUB_STEP_SUMMARY`` when that is set, and returns
the verdict's exit code. ``rai run CONFIG --gate POLICY.yaml`` calls the same function.

Exit codes: 0 every check passed; 1 a check failed; 2 a check could not be evaluated, or a
file could not be read or written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from rai_harness.gate import GatePolicy, GateVerdict, evaluate_run_dir, write_junit, write_markdown
from rai_harness.gate.render import measured_text, threshold_text
from rai_harness.gate.verdict import EXIT_ERROR
from rai_harness.record import write_json_atomic

__all__ = ["print_verdict", "register", "run_gate_cli"]

_STYLES = {"pass": "green", "fail": "bold red", "error": "bold yellow"}


def print_verdict(verdict: GateVerdict, console: Console) -> None:
    """Print a verdict as a rich table with a one-line summary.

    Args:
        verdict: The gate's verdict.
        console: Where to print.
    """
    title = f"gate {verdict.policy_name}" + (f" on run {verdict.run_name}" if verdict.run_name else "")
    table = Table(title=escape(title), title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("status", "left"),
        ("check", "left"),
        ("provider", "left"),
        ("measured", "right"),
        ("threshold", "left"),
        ("details", "left"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold")
    for r in verdict.results:
        table.add_row(
            f"[{_STYLES[r.status]}]{r.status}[/]",
            escape(r.rule_id),
            escape(r.provider or "(run)"),
            escape(measured_text(r)),
            escape(threshold_text(r)),
            escape(r.message),
        )
    console.print(table)
    counts = (
        f"{verdict.count('pass')} passed, {verdict.count('fail')} failed, {verdict.count('error')} errors"
    )
    console.print(
        f"[{_STYLES[verdict.status]}]gate {verdict.status.upper()}[/] ({counts}; exit code {verdict.exit_code})"
    )


def run_gate_cli(
    run_dir: str | Path,
    policy: str | Path | GatePolicy,
    *,
    baseline: str | Path | None = None,
    junit: str | Path | None = None,
    markdown: str | Path | None = None,
    json_path: str | Path | None = None,
    console: Console | None = None,
) -> int:
    """Gate a finished run and report it; return the exit code (0 pass, 1 fail, 2 error).

    Unreadable inputs become error results (so the JUnit and Markdown files still say what
    went wrong); a report file that cannot be written makes the exit code 2.

    Args:
        run_dir: The run folder (or its ``run.json``).
        policy: The gate policy YAML, or a policy already loaded with
            :func:`~rai_harness.gate.load_gate_policy` (``rai run --gate`` loads it before the
            run, so a bad policy fails before the first request).
        baseline: The baseline run folder, for ``regressions``.
        junit: Write JUnit XML here.
        markdown: Write the Markdown summary here.
        json_path: Write the verdict as JSON here.
        console: Where to print the table (default: stdout).

    Returns:
        The verdict's exit code, or 2 when a report file could not be written.
    """
    console = console or Console()
    verdict = evaluate_run_dir(run_dir, policy, baseline_dir=baseline)
    print_verdict(verdict, console)
    code = verdict.exit_code
    writes = [
        (junit, lambda p: write_junit(verdict, p)),
        (markdown, lambda p: write_markdown(verdict, p)),
        (json_path, lambda p: write_json_atomic(Path(p), json.dumps(verdict.to_dict(), indent=2) + "\n")),
    ]
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        writes.append((summary, lambda p: write_markdown(verdict, p, append=True)))
    for path, write in writes:
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            console.print(f"[bold red]error:[/] cannot write {escape(str(path))}: {escape(str(exc))}")
            code = EXIT_ERROR
    return code


def register(app: typer.Typer) -> None:
    """Add ``rai gate`` to the CLI."""

    @app.command()
    def gate(
        run_dir: Annotated[Path, typer.Argument(help="Run folder written by `rai run` (holds run.json).")],
        policy: Annotated[
            Path, typer.Option("--policy", "-p", help="Gate policy YAML (see evals/policies/).")
        ],
        baseline: Annotated[
            Path | None, typer.Option("--baseline", "-b", help="Baseline run folder, for `regressions`.")
        ] = None,
        junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
        markdown: Annotated[
            Path | None, typer.Option("--markdown", help="Write a Markdown summary here.")
        ] = None,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the verdict as JSON here.")
        ] = None,
    ) -> None:
        """Check a finished run against a policy: exit 0 pass, 1 a check failed, 2 could not evaluate.

        Thresholds use the conservative end of each metric's confidence interval unless the
        policy says otherwise; regressions compare per-item values with a baseline run.
        The Markdown summary is also appended to $GITHUB_STEP_SUMMARY when that is set.
        """
        raise typer.Exit(
            run_gate_cli(
                run_dir,
                policy,
                baseline=baseline,
                junit=junit,
                markdown=markdown,
                json_path=json_out,
            )
        )
