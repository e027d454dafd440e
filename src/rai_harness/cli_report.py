"""``rai report``: render a run folder as a self-contained HTML audit report, Markdown or JSON.

Exit codes as in :mod:`rai_harness.cli`: 0 the report was written; 2 the run folder, its
``run.json`` or the policy file is missing or invalid (the message names the file and the fix).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rai_harness.markdown import console_escape

__all__ = ["register"]

EXIT_OK, EXIT_ERROR = 0, 2


def register(app: typer.Typer) -> None:
    """Add ``rai report`` to the CLI."""

    @app.command()
    def report(
        run_dir: Annotated[Path, typer.Argument(help="Run folder written by `rai run` (holds run.json).")],
        out: Annotated[
            str | None,
            typer.Option(
                "--out",
                "-o",
                help="Output file; '-' writes to stdout (e.g. `--format md -o - >> $GITHUB_STEP_SUMMARY`). "
                "Default: report.html / report.md / report-summary.json in the run folder.",
            ),
        ] = None,
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="html (audit report), md (GitHub summary) or json.")
        ] = "html",
        redact: Annotated[
            bool, typer.Option("--redact", help="Mask personal data in the example texts shown.")
        ] = False,
        redactor: Annotated[
            str,
            typer.Option(
                "--redactor",
                help="With --redact: auto (presidio when it loads, plus regex), presidio or regex.",
            ),
        ] = "auto",
        policy: Annotated[
            Path | None,
            typer.Option("--policy", help="Gate policy YAML; the scorecard is marked pass/fail by it."),
        ] = None,
        max_examples: Annotated[
            int,
            typer.Option("--max-examples", min=0, help="Worst examples per metric and provider (0: none)."),
        ] = 5,
    ) -> None:
        """Render a run's report: scorecard, trade-offs, suites, efficiency, evidence, method, reproducibility."""
        from rai_harness.errors import ConfigError, RaiError
        from rai_harness.report import build_report, render_report

        err = Console(stderr=True)
        try:
            if fmt not in ("html", "md", "json"):
                raise ConfigError(f"unknown format {fmt!r}; use html, md or json", key_path="--format")
            if redactor not in ("auto", "presidio", "regex"):
                raise ConfigError(
                    f"unknown redactor {redactor!r}; use auto, presidio or regex", key_path="--redactor"
                )
            if out == "-":
                text = build_report(
                    run_dir,
                    fmt=fmt,  # type: ignore[arg-type]
                    redact=redact,
                    policy=policy,
                    max_examples=max_examples,
                    redactor=redactor,  # type: ignore[arg-type]
                )
                sys.stdout.write(text)
                sys.stdout.flush()
                return
            path = render_report(
                run_dir,
                Path(out) if out else None,
                fmt=fmt,  # type: ignore[arg-type]
                redact=redact,
                policy=policy,
                max_examples=max_examples,
                redactor=redactor,  # type: ignore[arg-type]
            )
        except RaiError as exc:
            # console_escape(): a path or message with [brackets] must print as text, not as rich markup.
            err.print(f"[bold red]error:[/] {console_escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        err.print(f"wrote {console_escape(str(path))}", highlight=False)
