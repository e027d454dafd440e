"""``rai score``: re-score a finished run with the current scorers, without calling a model.

Exit codes as in :mod:`rai_harness.cli`: 0 every selected suite was scored; 1 the new record
is not ``complete`` (a suite could not be scored, or the source run failed its error budget);
2 the run folder, a suite name or ``--out`` is wrong (the message names the file and the fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rai_harness.record import RunRecord

__all__ = ["register"]

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def register(app: typer.Typer) -> None:
    """Add ``rai score`` to the CLI."""

    @app.command()
    def score(
        run_dir: Annotated[Path, typer.Argument(help="Run folder written by `rai run` (holds run.json).")],
        suite: Annotated[
            list[str] | None,
            typer.Option("--suite", "-s", help="Re-score only this suite (repeatable; default: all)."),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Output folder (default: <RUN_DIR>-rescored; never RUN_DIR)."),
        ] = None,
        report: Annotated[
            bool, typer.Option("--report/--no-report", help="Write report.html into the output folder.")
        ] = True,
    ) -> None:
        """Re-score a run's recorded outputs with the current classifiers and suite versions.

        Reads run.json and samples.jsonl, calls no model, and writes a new run.json (recording
        the source run and the scorer and suite versions), samples.jsonl and report.html.
        """
        from rai_harness.errors import RaiError
        from rai_harness.record import read_run_record
        from rai_harness.run.rescore import default_rescore_dir, score_run

        err = Console(stderr=True)
        target = out if out is not None else default_rescore_dir(run_dir)
        try:
            before = read_run_record(run_dir)
            record = score_run(run_dir, suites=suite or (), out_dir=target)
        except RaiError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_ERROR) from None
        err.print(_changes(before, record))
        err.print(f"wrote {escape(str(target / 'run.json'))} and {escape(str(target / record.samples_file))}")
        if report:
            from rai_harness.report import render_report

            try:
                err.print(f"report: {escape(str(render_report(target)))}")
            except RaiError as exc:
                err.print(f"[yellow]report not written:[/] {escape(str(exc))}", highlight=False)
        if record.status != "complete":
            for problem in record.problems:
                err.print(f"[bold red]{record.status}:[/] {escape(problem)}", highlight=False)
            raise typer.Exit(EXIT_FAILED)


def _changes(before: RunRecord, after: RunRecord) -> Table:
    """Per re-scored suite: versions, and how many metric values moved."""
    table = Table(title="re-scored suites", title_justify="left")
    for col in ("suite", "version", "metrics", "changed"):
        table.add_column(col, justify="left" if col in ("suite", "version") else "right")
    rescored = after.rescore.suites if after.rescore is not None else {}
    for name, version in rescored.items():
        old_run = before.suites.get(name)
        new_run = after.suites[name]
        old_version = old_run.version if old_run is not None else "?"
        shown = version if version == old_version else f"{old_version} -> {version}"
        total = changed = 0
        for pid, result in new_run.results.items():
            old = old_run.results.get(pid) if old_run is not None else None
            for metric, estimate in result.metrics.items():
                total += 1
                if old is None or old.metrics.get(metric) != estimate:
                    changed += 1
        table.add_row(escape(name), escape(shown), str(total), str(changed))
    return table
