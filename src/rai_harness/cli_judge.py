"""``rai judge calibrate``: a judge's agreement with human labels (accuracy, kappa, confusion matrix)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rai_harness.errors import RaiError

__all__ = ["judge_app"]

judge_app = typer.Typer(
    no_args_is_help=True, help="Measure judge models before trusting model-graded metrics."
)
_out = Console()
_err = Console(stderr=True)

#: ``--judge smollm2`` without a config: the offline default judge.
#: Calibration sends long prompts (SimpleQA's grader is ~1,400 tokens) to an in-process model: small
#: batches and a long per-call wait (queue included), so a busy CPU slows it down instead of failing it.
_DEFAULT_JUDGES = {
    "smollm2": {
        "kind": "hf-local",
        "id": "smollm2",
        "model": "smollm2",
        "max_batch_size": 4,
        "timeout_s": 7200,
        "max_retries": 0,
    }
}


def _fmt(est: dict[str, object]) -> str:
    value, low, high = est.get("value"), est.get("ci_low"), est.get("ci_high")
    if not isinstance(value, (int, float)):
        return f"n/a ({est.get('note') or 'undefined'})"
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    # A value without an interval says why (a constant judge's kappa is 0 by construction).
    return f"{value:.3f} (no interval: {est.get('note') or 'not computed'})"


def _max_error_rate(config: Path | None) -> float:
    """The failed-call share a calibration may have: ``runner.max_error_rate`` of --config, else the default."""
    from rai_harness.config import RunnerSettings, load_run_config

    return load_run_config(config).runner.max_error_rate if config else RunnerSettings().max_error_rate


def resolve_judge(judge_id: str, config: Path | None) -> object:
    """The judge's provider config: from ``--config`` (``judges`` or ``providers``) or a built-in default."""
    from rai_harness.config import load_run_config, parse_provider
    from rai_harness.errors import ConfigError

    if config is not None:
        cfg = load_run_config(config)
        for p in [*cfg.judges, *cfg.providers]:
            if p.provider_id == judge_id:
                return p
        known = ", ".join(p.provider_id for p in [*cfg.judges, *cfg.providers])
        raise ConfigError(f"no judge or provider with id {judge_id!r} (ids: {known})", file=str(config))
    if judge_id in _DEFAULT_JUDGES:
        return parse_provider(_DEFAULT_JUDGES[judge_id], file=None, key_path="--judge")
    raise ConfigError(
        f"--judge {judge_id!r} needs --config (a run config whose `judges` holds it); without one only "
        f"{', '.join(_DEFAULT_JUDGES)} is known"
    )


@judge_app.command("calibrate")
def calibrate(
    judge: Annotated[
        str, typer.Option("--judge", help="Judge id (in --config's judges/providers, or smollm2).")
    ],
    data: Annotated[
        Path, typer.Option("--data", help="Labelled set: HaluEval QA JSONL, or rows with rubric+label.")
    ],
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config that defines the judge.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default reports/calibration/<judge>-<data>).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use a seeded sample of N rows.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Row sample, request seeds, bootstrap.")] = 0,
) -> None:
    """Grade a labelled set with a judge and report accuracy, Cohen's kappa and the confusion matrix."""
    from rai_harness.run.calibrate import CALIBRATION_FILE, calibrate_sync

    try:
        cfg = resolve_judge(judge, config)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in judge)
        folder = out or Path("reports") / "calibration" / f"{safe}-{data.stem}"
        result = calibrate_sync(
            cfg,  # type: ignore[arg-type]
            data,
            out_dir=folder,
            limit=limit,
            seed=seed,
            max_error_rate=_max_error_rate(config),
        )
    except RaiError as exc:
        _err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    a = result.agreement.to_dict()
    calls = result.calls
    _out.print(
        f"judge [bold]{escape(judge)}[/] on {escape(str(data))} ({result.rubric}, {a['n']} items answered; "
        f"{calls['failed']} of {calls['calls']} judge calls failed, left out of the agreement)",
        highlight=False,
    )
    summary = Table(show_header=False)
    for name in ("accuracy", "kappa", "coverage"):
        summary.add_row(name, _fmt(a[name]))  # type: ignore[arg-type]
    _out.print(summary)
    matrix = Table(title="confusion (rows: gold, columns: judge)")
    matrix.add_column("gold")
    for column in result.agreement.columns:
        matrix.add_column(column, justify="right")
    for label, row in zip(result.agreement.labels, result.agreement.confusion, strict=False):
        matrix.add_row(label, *(str(v) for v in row))
    if result.agreement.n:  # no answered item, no matrix
        _out.print(matrix)
    if not result.usable:
        # Written for the record (failures, replies), but marked unusable: runs refuse it.
        for problem in result.problems:
            _err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        _err.print(f"wrote {folder / CALIBRATION_FILE}, marked unusable (usable: false)", highlight=False)
        raise typer.Exit(1)
    _out.print(f"wrote {folder / CALIBRATION_FILE}", highlight=False)


def register(app: typer.Typer) -> None:
    """Mount ``rai judge`` on the root app."""
    app.add_typer(judge_app, name="judge", help="Measure judge models (agreement with human labels).")
