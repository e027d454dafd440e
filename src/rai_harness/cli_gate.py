"""``rai gate``: decide whether a finished run passes a policy, for CI.

Thin, like the rest of the CLI: :func:`run_gate_cli` calls
:func:`~rai_harness.gate.evaluate_run_dir`, prints a table, writes the optional JUnit, Markdown
and JSON files (the console gets a summary of at most 40 lines; the files have every
result), appends the Markdown to ``$GITHUB_STEP_SUMMARY`` when that is set, and returns
the verdict's exit code. ``rai run CONFIG --gate POLICY.yaml`` calls the same function.

Exit codes: 0 every check passed; 1 a check failed; 2 a check could not be evaluated, or a
file could not be read or written.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from rai_harness.errors import ConfigError
from rai_harness.gate import (
    GatePolicy,
    GateVerdict,
    evaluate_run_dir,
    load_gate_policy,
    write_junit,
    write_markdown,
)
from rai_harness.gate.render import measured_text, threshold_text
from rai_harness.gate.verdict import EXIT_ERROR, RuleResult
from rai_harness.markdown import console_escape
from rai_harness.record import write_json_atomic

__all__ = ["gate_error_cli", "print_verdict", "register", "release_closed_stdout", "run_gate_cli"]

_STYLES = {"pass": "green", "fail": "bold red", "error": "bold yellow"}
_MARKS = {"pass": "\u2713 pass", "fail": "\u2717 FAIL", "error": "? ERROR"}
#: The console summary stays within this many lines (CI logs): the full table is in the files.
MAX_CONSOLE_LINES = 40


#: Characters of an error's message shown under a provider's check, and under a run-level one.
#: An error's message ends with its fix ("... measured another judge: rerun rai judge calibrate
#: with this config"); cut at 160 characters, the fix was the part lost. Errors are few: the
#: console's line budget still bounds the summary.
_ERROR_CHARS, _RUN_ERROR_CHARS = 600, 1000


def _short(text: str, limit: int = _ERROR_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _without_provider(message: str, provider: str) -> str:
    """``message`` with the provider's quoted id said as "this provider" (the id is the heading
    above it). "provider 'x' has no results" must not read "provider this provider has...",
    so the word "provider" before the id goes with it."""
    quoted = repr(provider)  # how the gate's messages quote an id (`{provider!r}`)
    return message.replace(f"provider {quoted}", "this provider").replace(quoted, "this provider")


def _by_provider(results: Sequence[RuleResult]) -> list[RuleResult]:
    """Errors first (the run may not be gateable at all), then failures, then passes; within a
    status, grouped by provider in the order providers first appear (run-level results first)."""
    order: dict[str | None, int] = {None: -1}
    for r in results:
        order.setdefault(r.provider, len(order))
    rank = {"error": 0, "fail": 1, "pass": 2}
    return sorted(results, key=lambda r: (rank[r.status], order[r.provider]))


def _provider_table(results: Sequence[RuleResult]) -> Table:
    """One provider's checks: status, check id, measured vs threshold (metric: in the files)."""
    table = Table(show_edge=False, pad_edge=False, box=None, show_header=False, padding=(0, 1, 0, 2))
    table.add_column("status", no_wrap=True)
    table.add_column("check", overflow="fold", ratio=3)
    table.add_column("measured", justify="right", overflow="fold", ratio=2)
    table.add_column("limit", overflow="fold", ratio=1)
    for r in results:
        message = ""
        if r.status == "error" and r.message:
            # An error has no number to show: its message is what a reader acts on. The
            # provider's id is the heading above, so it is not repeated inside the message.
            text = _without_provider(r.message, r.provider) if r.provider else r.message
            # A run-level error (invalid policy, unreadable run or baseline) stops every check,
            # and its message ends with the fix ("did you mean 'max'?", the allowed keys): cut
            # at 160 characters it lost that. There are few of them, so they get more room.
            limit = _RUN_ERROR_CHARS if r.provider is None else _ERROR_CHARS
            message = f"\n[dim]{console_escape(_short(text, limit))}[/]"
        table.add_row(
            f"[{_STYLES[r.status]}]{_MARKS[r.status]}[/]",
            f"{console_escape(r.rule_id)}{message}",
            console_escape(measured_text(r)) or "n/a",
            console_escape(threshold_text(r)),
        )
    return table


def _summary(results: Sequence[RuleResult], rows: int) -> list[RenderableType]:
    """The first ``rows`` of ``results`` under one heading per provider.

    The provider id is printed once, whole, on its own line (``smollm2...`` names nothing in a
    CI log), so the rows below it need no provider column and fit 80 columns.
    """
    out: list[RenderableType] = []
    shown = list(results[:rows])
    i = 0
    while i < len(shown):
        j = i
        while j < len(shown) and (shown[j].provider, shown[j].status) == (shown[i].provider, shown[i].status):
            j += 1
        who = shown[i].provider
        heading = Text.from_markup(f"[bold]{console_escape(who)}[/]" if who is not None else "[bold](run)[/]")
        out.extend([heading, _provider_table(shown[i:j])])
        i = j
    return out


def _rendered_lines(console: Console, *renderables: RenderableType | None) -> int:
    """Lines the renderables take at ``console``'s width (measured on a scratch console, so a
    recording console does not record the trial)."""
    scratch = Console(file=io.StringIO(), width=console.width, color_system=None, highlight=False)
    for r in renderables:
        if r is not None:
            scratch.print(r)
    file = scratch.file
    assert isinstance(file, io.StringIO)
    return len(file.getvalue().splitlines())


def print_verdict(verdict: GateVerdict, console: Console, *, details: Sequence[str] = ()) -> None:
    """Print a short verdict for a CI log: counts, the failed checks, where the details are.

    At most :data:`MAX_CONSOLE_LINES` lines at the console's width (80 columns in most CI
    logs): checks are grouped under each provider's id (printed once, whole); passing checks
    are counted, not listed, unless everything fits; errored and failed checks are listed
    until the budget is spent, and the rest are counted with a pointer to the JUnit,
    Markdown or JSON files, which hold every result with its message.

    Args:
        verdict: The gate's verdict.
        console: Where to print.
        details: Paths of the files that hold the full results (named in the last line).
    """
    title = f"policy {verdict.policy_name}" + (f" on run {verdict.run_name}" if verdict.run_name else "")
    counts = (
        f"{verdict.count('pass')} passed, {verdict.count('fail')} failed, {verdict.count('error')} errors"
    )
    head = Text.from_markup(
        f"[{_STYLES[verdict.status]}]gate {verdict.status.upper()}[/]: {console_escape(title)} "
        f"({counts}; exit code {verdict.exit_code})"
    )
    everything = _by_provider(verdict.results)
    bad = [r for r in everything if r.status != "pass"]
    where = (
        "full results: " + ", ".join(details)
        if details
        else "full results: rerun with --junit, --markdown or --json FILE"
    )
    body = _summary(everything, len(everything))
    tail = Text(where)
    if _rendered_lines(console, head, *body, tail) > MAX_CONSOLE_LINES:
        body = []
        if not bad:
            tail = Text(f"all {len(verdict.results)} checks passed; {where}")
        rows = len(bad)
        while bad:
            body = _summary(bad, rows)
            more = len(bad) - rows
            shown = f"{verdict.count('pass')} passing checks not listed"
            if more:
                shown = f"{more} more failed or errored check{'s' if more != 1 else ''} and " + shown
            tail = Text(f"\u2026 {shown}; {where}")
            if rows <= 1 or _rendered_lines(console, head, *body, tail) <= MAX_CONSOLE_LINES:
                break
            rows = max(1, rows - max(1, rows // 4))
    console.print(head)
    for part in body:
        console.print(part)
    console.print(tail, highlight=False)


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
    console = console or _StdoutConsole()
    if not isinstance(policy, GatePolicy):
        # Loaded once here, to say below whether a baseline was used; a policy that cannot be
        # read goes on as a path, and the verdict carries its error.
        with contextlib.suppress(ConfigError):
            policy = load_gate_policy(policy)
    verdict = evaluate_run_dir(run_dir, policy, baseline_dir=baseline)
    print_verdict(verdict, console, details=[str(p) for p in (junit, markdown, json_path) if p is not None])
    if baseline is not None and isinstance(policy, GatePolicy) and not policy.regressions:
        # Silently unused, a baseline reads as "compared against it, no regression".
        console.print(
            "[yellow]note:[/] --baseline was not used: the policy has no `regressions` to compare with it",
            highlight=False,
        )
    written = _write_files(verdict, junit=junit, markdown=markdown, json_path=json_path, console=console)
    return verdict.exit_code if written else EXIT_ERROR


def release_closed_stdout() -> None:
    """Flush stdout now; if its reader has gone (``| head -1``), point it at /dev/null.

    After a BrokenPipeError every later write (and Python's flush at exit, which would turn
    any exit code into 120) fails the same way; the Python docs' advice is to redirect
    stdout to devnull.
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _StdoutConsole(Console):
    """Stdout whose reader may leave early (``rai gate ... | head -1``).

    Rich's console exits with code 1 ("a check failed", to CI) when its pipe breaks; here
    printing just stops, and the files and the exit code stay the verdict's.
    """

    def on_broken_pipe(self) -> None:
        release_closed_stdout()
        self.quiet = True


def gate_error_cli(
    message: str,
    policy: str | Path | GatePolicy | None,
    *,
    run_dir: str | Path | None = None,
    junit: str | Path | None = None,
    markdown: str | Path | None = None,
    console: Console | None = None,
) -> int:
    """Write the JUnit and Markdown files of a run that never reached the gate; return 2.

    ``rai run --gate`` documents exit code 2 *with* its JUnit and Markdown files: when the
    config cannot be planned, or the run is interrupted or stops on an error, a CI job must
    still find a failing test case that says why, not a missing file (or the previous run's).

    Args:
        message: What went wrong and how to fix it (already printed by the caller).
        policy: The policy (loaded, or its file), for the verdict's name.
        run_dir: The output folder, when known.
        junit: Write JUnit XML here.
        markdown: Write the Markdown summary here.
        console: Where to print a file that cannot be written (default: stdout).

    Returns:
        2 (:data:`~rai_harness.gate.verdict.EXIT_ERROR`).
    """
    if isinstance(policy, GatePolicy):
        name, file = policy.name, policy.source
    else:
        name, file = (Path(policy).stem, str(policy)) if policy is not None else ("policy", None)
    result = RuleResult(
        rule_id="run",
        description="The run finished and wrote run.json, so the gate could check it.",
        kind="run",
        provider=None,
        metric="status",
        status="error",
        message=message,
    )
    verdict = GateVerdict(
        results=(result,),
        policy_name=name,
        policy_file=file,
        run_dir=str(run_dir) if run_dir is not None else None,
    )
    _write_files(verdict, junit=junit, markdown=markdown, json_path=None, console=console or Console())
    return EXIT_ERROR


def _write_files(
    verdict: GateVerdict,
    *,
    junit: str | Path | None,
    markdown: str | Path | None,
    json_path: str | Path | None,
    console: Console,
) -> bool:
    """Write the verdict's files (and append to ``$GITHUB_STEP_SUMMARY``); False if one failed."""
    writes = [
        (junit, lambda p: write_junit(verdict, p)),
        (markdown, lambda p: write_markdown(verdict, p)),
        (json_path, lambda p: write_json_atomic(Path(p), json.dumps(verdict.to_dict(), indent=2) + "\n")),
    ]
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        writes.append((summary, lambda p: write_markdown(verdict, p, append=True)))
    ok = True
    for path, write in writes:
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            console.print(
                f"[bold red]error:[/] cannot write {console_escape(str(path))}: {console_escape(str(exc))}"
            )
            ok = False
    return ok


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
