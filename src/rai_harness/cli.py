"""The ``rai`` command line. Thin: every command calls a public function of the package.

Exit codes: 0 success; 1 the run finished but failed (an error budget was exceeded);
2 a usage or configuration error (the message names the file, key path and fix), or an
incomplete run.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from rai_harness import __version__
from rai_harness.errors import ConfigError, RaiError
from rai_harness.markdown import console_escape

app = typer.Typer(
    name="rai",
    help="Responsible-AI evaluation and guardrail harness: bias, toxicity, PII leakage and factuality, "
    "next to latency and cost, for any LLM provider.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
out_console = Console()

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"rai-harness {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages to stderr.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(exc: RaiError) -> typer.Exit:
    # Escaped: a message is plain text, and rich would drop a bracketed part such as
    # "[also rules[1].max: ...]" as an unknown markup tag.
    err_console.print(f"[bold red]error:[/] {console_escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


#: Redraws per second of ``rai run``'s progress bars. Rich's default (10) redraws on a thread that
#: takes the GIL from the event loop timing the calls: in ``benchmarks/runner_overhead.py``
#: (2,000 calls at concurrency 64) it cost several points of wall time over a bare loop.
RUN_PROGRESS_HZ = 2


def run_progress(console: Console, *, disable: bool = False) -> Progress:
    """The progress display of ``rai run``: one bar per provider (done/total, errors, calls/s)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"),
        TextColumn("{task.fields[rate]:.1f} calls/s"),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
        transient=False,
        refresh_per_second=RUN_PROGRESS_HZ,
    )


class ProgressSink:
    """Per-provider rich progress bars: done/total, errors, calls/s."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.errors: dict[str, int] = defaultdict(int)
        self.started = time.perf_counter()

    def start(self, plan: Any, reused: int) -> None:
        self.started = time.perf_counter()
        if reused:
            err_console.print(f"resuming: {reused} completed calls found in the journal will be reused")
        for pp in plan.providers:
            # The description is rendered as markup: an id such as "team/model[/italic]" is text.
            self.tasks[pp.provider_id] = self.progress.add_task(
                console_escape(pp.provider_id), total=len(pp.requests), errors=0, rate=0.0
            )

    def record(self, record: Any) -> None:
        task = self.tasks.get(record.provider_id)
        if task is None:
            return
        if not record.ok:
            self.errors[record.provider_id] += 1
        done = self.progress.tasks[task].completed + 1
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(task, advance=1, errors=self.errors[record.provider_id], rate=done / elapsed)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Run config YAML (see evals/).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: reports/<name>).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N prompts.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Require an existing journal in the output folder and reuse it.")
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard the journal in the output folder first.")
    ] = False,
    provider: Annotated[
        list[str] | None, typer.Option("--provider", "-p", help="Run only this provider id (repeatable).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    gate: Annotated[
        Path | None, typer.Option("--gate", help="Gate the finished run with this policy (exit 0/1/2).")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="With --gate: baseline run folder for regressions.")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="With --gate: write JUnit XML here.")] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="With --gate: write a Markdown summary here.")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write report.html into the output folder.")
    ] = True,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="Where calls run: local (this process) or ray (Ray actors); default: runner.engine.",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="With --engine ray: join this cluster (auto, HOST:PORT); default: a local 127.0.0.1 instance.",
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option("--ray-workers", min=1, max=1024, help="With --engine ray: call actors (default 2)."),
    ] = None,
) -> None:
    """Run a config: call every provider, journal each call, score the suites, write run.json,
    samples.jsonl and report.html.

    Rerunning into the same output folder reuses every completed call (only missing or
    failed calls are made again), so an interrupted run resumes where it stopped. With
    ``--gate`` the exit code is the gate's: 0 pass, 1 a rule failed, 2 error or incomplete run.
    """
    from rai_harness.config import load_run_config
    from rai_harness.record import retire_run_outputs
    from rai_harness.run import execute_run, plan_run

    if resume and fresh:
        raise _fail(ConfigError("--resume and --fresh contradict each other; choose one"))
    if gate is None and (baseline or junit or markdown):
        raise _fail(ConfigError("--baseline, --junit and --markdown need --gate POLICY.yaml"))

    def gate_error(exc: BaseException | str, run_dir: Path | None = None) -> typer.Exit:
        """Exit 2 with the error printed and, under ``--gate``, in the JUnit and Markdown files."""
        failure = _fail(exc if isinstance(exc, RaiError) else RaiError(str(exc)))
        if gate is not None and (junit or markdown):
            from rai_harness.cli_gate import gate_error_cli

            gate_error_cli(
                str(exc), policy or gate, run_dir=run_dir, junit=junit, markdown=markdown, console=err_console
            )
        return failure

    policy = None
    try:
        cfg = _with_engine(load_run_config(config), engine, ray_address, ray_workers)
        plan = plan_run(cfg, config_path=config, out_dir=out, limit=limit, provider_ids=provider or ())
        if gate is not None:
            from rai_harness.gate import load_gate_policy

            # Validated before the first request: a typo in the policy must not cost a whole run.
            policy = load_gate_policy(gate)
    except RaiError as exc:
        raise gate_error(exc) from None
    journal_path = plan.out_dir / "journal.sqlite"
    if resume and not journal_path.exists():
        raise gate_error(
            ConfigError(f"--resume: no journal at {journal_path}; run without --resume to start"),
            plan.out_dir,
        )
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{journal_path}{suffix}").unlink(missing_ok=True)
    # Until this run writes its own, the folder must hold no result a gate or a reviewer could
    # take for this run's: an interrupted rerun once left the previous run's passing run.json
    # (and JUnit) in place, and `rai gate` passed on them. They move to previous/; the journal
    # stays: it is what resumes.
    try:
        retire_run_outputs(plan.out_dir, [p for p in (junit, markdown) if p is not None])
    except RaiError as exc:
        raise _fail(exc) from None
    with run_progress(err_console, disable=quiet) as progress:
        sink = ProgressSink(progress)
        try:
            record = asyncio.run(execute_run(plan, on_record=sink.record, on_start=sink.start))
        except RaiError as exc:
            raise gate_error(exc, plan.out_dir) from None
        except KeyboardInterrupt:
            raise gate_error(
                f"interrupted: completed calls are saved in {journal_path}; rerun the same command to resume",
                plan.out_dir,
            ) from None
    _print_summary(record, plan.out_dir)
    if report:
        from rai_harness.report import render_report

        try:
            err_console.print(f"report: {console_escape(str(render_report(plan.out_dir, policy=gate)))}")
        except RaiError as exc:
            err_console.print(f"[yellow]report not written:[/] {console_escape(str(exc))}", highlight=False)
    if policy is not None:
        from rai_harness.cli_gate import run_gate_cli

        # The gate owns the exit code: it fails a failed run (1) and errors on an incomplete one (2).
        raise typer.Exit(
            run_gate_cli(
                plan.out_dir, policy, baseline=baseline, junit=junit, markdown=markdown, console=err_console
            )
        )
    if record.status != "complete":
        for problem in record.problems:
            err_console.print(f"[bold red]run failed:[/] {console_escape(str(problem))}", highlight=False)
        raise typer.Exit(EXIT_FAILED)


def _with_engine(cfg: Any, engine: str | None, address: str | None, workers: int | None) -> Any:
    """The run config with the command line's engine settings applied (validated like the file's)."""
    from pydantic import ValidationError

    from rai_harness.config import RunnerSettings

    changes: dict[str, Any] = {}
    if engine is not None:
        changes["engine"] = engine
    if address is not None:
        changes["ray_address"] = address
    if workers is not None:
        changes["ray_workers"] = workers
    if not changes:
        return cfg
    settings = {**cfg.runner.model_dump(), **changes}
    if settings["engine"] != "ray" and (address is not None or workers is not None):
        raise ConfigError("--ray-address and --ray-workers need --engine ray (or runner.engine: ray)")
    try:
        runner = RunnerSettings.model_validate(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise ConfigError(f"{option}: {first['msg']}") from None
    return cfg.model_copy(update={"runner": runner})


def _print_summary(record: Any, out_dir: Path, console: Console | None = None) -> None:
    """Efficiency and headline safety scores of a finished run, readable at 80 columns."""
    from rai_harness.report.console import efficiency_table, safety_tables

    console = console or err_console
    console.print(efficiency_table(record))
    for scores in safety_tables(record, console.width):
        console.print(scores)
    warning = record.timing_quality.get("warning")
    if warning:
        console.print(f"[yellow]timing:[/] {console_escape(str(warning))}", highlight=False, markup=True)
    console.print(
        f"wrote {out_dir / 'run.json'} and {out_dir / 'samples.jsonl'}", highlight=False, markup=False
    )


@app.command()
def providers(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List provider kinds and their settings."""
    from rai_harness.providers.catalog import describe_kinds

    kinds = describe_kinds()
    if as_json:
        out_console.print_json(json.dumps(kinds))
        return
    for kind in kinds:
        table = Table(title=f"{kind['kind']}: {kind['description']}", title_justify="left", show_edge=False)
        table.add_column("setting")
        table.add_column("type")
        table.add_column("default")
        table.add_column("description")
        for f in kind["fields"]:
            table.add_row(f["name"], f["type"], f["default"], f["description"])
        out_console.print(table)
        out_console.print()


def _reflow_help(typer_app: typer.Typer) -> None:
    """Give every command of ``typer_app`` (and its groups) its docstring as flowing paragraphs.

    Typer's rich help keeps a docstring's single line breaks, so text wrapped at the source's
    width came out broken mid-sentence at a terminal's ("only missing or" / "failed calls").
    Paragraphs (blank-line separated) stay; double backticks become the single ones of the
    rest of the help.
    """
    for info in typer_app.registered_commands:
        doc = info.help or (inspect.getdoc(info.callback) if info.callback else None)
        if doc:
            paragraphs = (" ".join(p.split()) for p in doc.split("\n\n"))
            info.help = "\n\n".join(paragraphs).replace("``", "`")
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


def _mount_subcommands() -> None:
    from rai_harness.cli_guard import guard_app
    from rai_harness.cli_suites import register as register_suites

    register_suites(app)
    # Report, gate and score commands: each module adds its commands to `app` in register(app).
    for module in (
        "rai_harness.cli_report",
        "rai_harness.cli_gate",
        "rai_harness.cli_score",
        "rai_harness.cli_judge",
    ):
        importlib.import_module(module).register(app)

    app.add_typer(
        guard_app, name="guard", help="Check texts with a guard policy, or audit a policy on labelled data."
    )
    try:
        from rai_harness.cli_train import train_app
    except ImportError:  # pragma: no cover - the training command is optional
        return
    app.add_typer(train_app, name="train", help="Train the bundled classifier heads.")


_mount_subcommands()
_reflow_help(app)


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    """Deliver SIGTERM as SIGINT: asyncio.run cancels the run the graceful way, else KeyboardInterrupt."""
    signal.raise_signal(signal.SIGINT)


def main() -> None:
    """Console-script entry point: exit 0 success, 1 a check or run failed, 2 an error.

    Exit code 1 means "a check failed" to a CI job, so an unexpected exception must not
    produce it (Python's traceback exits 1): it is an error (2) with a one-line message, and
    the traceback under ``-v``. A closed stdout (``rai gate ... | head -1``) keeps the
    command's own exit code.
    """
    code: int | str | None
    # SIGTERM (CI cancelling a job, Kubernetes stopping a pod) goes the way of Ctrl-C: `rai run`
    # then says where the journal is and `--gate` writes its JUnit error; the default
    # action killed the process silently.
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        app()
        code = EXIT_OK
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:  # outside `rai run`, which handles its own
        err_console.print("[bold red]interrupted[/]", highlight=False)
        code = EXIT_ERROR
    except Exception as exc:  # the last line of defence of the exit code
        logging.getLogger("rai_harness").debug("unexpected error", exc_info=True)
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {console_escape(str(exc))} "
            "(rerun with -v for the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
        )
        code = EXIT_ERROR
    from rai_harness.cli_gate import release_closed_stdout

    release_closed_stdout()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
