"""Re-score a finished run: the score and aggregate phases again, without calling a model.

``rai score RUN_DIR`` reads the run's ``run.json`` and ``samples.jsonl``, rebuilds each suite
from the parameters the record holds (so the same samples, with the same ids), scores the
recorded outputs with the current classifiers and suite versions, and writes a new run folder.
Nothing is generated: no provider is built, so no provider can be called.

The new ``run.json`` keeps the source run's calls, efficiency figures and environment, and
records under ``rescore`` where it came from (source run id and hash of its ``run.json``), when
and with which rai-harness it was re-scored, and which suite versions scored it; each suite's
``scorers`` entry names the classifier (spec, model and revision) that produced the scores.
With an unchanged scorer the metrics are exactly the source's: scoring is deterministic and
the bootstrap intervals are seeded with the run's seed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rai_harness import __version__
from rai_harness.classifiers.pool import ClassifierPool
from rai_harness.config import RunnerSettings
from rai_harness.errors import ConfigError
from rai_harness.record import (
    SCHEMA_VERSION,
    Rescore,
    RunRecord,
    SuiteRun,
    file_sha256,
    read_run_record,
    read_samples,
    write_run,
)
from rai_harness.run.execute import build_suite, environment_info
from rai_harness.run.score import JudgedSuite, PlannedSuite, error_budget_problems, run_status, score_suites

__all__ = ["default_rescore_dir", "score_run"]


def default_rescore_dir(run_dir: str | Path) -> Path:
    """Where ``rai score`` writes by default: a sibling folder ``<run folder>-rescored``."""
    folder = Path(run_dir)
    if folder.suffix == ".json":
        folder = folder.parent
    return folder.with_name(f"{folder.resolve().name}-rescored")


def score_run(
    run_dir: str | Path,
    *,
    suites: Sequence[str] = (),
    out_dir: str | Path | None = None,
    pool: ClassifierPool | None = None,
) -> RunRecord:
    """Re-score a finished run's outputs with the current scorers and write a new run folder.

    Args:
        run_dir: The run folder (holds ``run.json`` and ``samples.jsonl``).
        suites: Re-score only these suites (default: every suite of the run); the others are
            copied unchanged.
        out_dir: Where to write the new ``run.json`` and ``samples.jsonl`` (default
            :func:`default_rescore_dir`). It must not be ``run_dir``: the source record is
            the evidence the new one is checked against.
        pool: Classifier pool (default: the process-wide one).

    Returns:
        The new run record (also written to ``out_dir/run.json``).

    Raises:
        ConfigError: Missing or invalid run folder, an unknown suite, ``out_dir`` equal to
            ``run_dir``, or a suite whose parameters or dataset changed since the run (its
            items would no longer match the recorded outputs).
    """
    source_dir = Path(run_dir)
    if source_dir.suffix == ".json":
        source_dir = source_dir.parent
    original = read_run_record(source_dir)
    target = Path(out_dir) if out_dir is not None else default_rescore_dir(source_dir)
    if target.resolve() == source_dir.resolve():
        raise ConfigError(
            "--out must differ from the run folder: the source record is kept as the evidence the "
            "re-scored one is compared with",
            file=str(target),
        )
    names = _selected_suites(original, suites)
    samples = read_samples(source_dir / _samples_name(original, source_dir))
    base = _config_dir(original)
    planned = [_replan(original, name, base) for name in names]
    scored = score_suites(planned, samples, seed=original.seed, pool=pool, judged=_judged(original, names))
    kept_problems = [
        p for p in original.problems if p.startswith("suite ") and _problem_suite(p) not in names
    ]
    scoring_problems = [*kept_problems, *scored.problems]
    runner = RunnerSettings.model_validate(original.config.get("runner") or {})
    budget = error_budget_problems(original.providers, runner.max_error_rate)
    record = original.model_copy(
        update={
            "run_id": uuid.uuid4().hex,
            # The new record has this harness's format (it adds ``rescore``), whatever the source's.
            "schema_version": SCHEMA_VERSION,
            "status": run_status(budget, scoring_problems),
            "problems": [*budget, *scoring_problems],
            "suites": {name: scored.suites.get(name, run) for name, run in original.suites.items()},
            "rescore": _provenance(original, source_dir, names, scored.suites),
        }
    )
    # Validate the assembled record (model_copy does not) before it becomes a file.
    record = RunRecord.model_validate(record.model_dump())
    judge_calls = (
        read_samples(source_dir / Path(original.judge_calls_file).name) if original.judge_calls_file else []
    )
    write_run(target, record, scored.records, judge_calls=judge_calls)
    return record


def _judged(original: RunRecord, names: Sequence[str]) -> dict[str, JudgedSuite]:
    """The judge of each judged suite, as the run recorded it (its verdicts are in the samples)."""
    out = {}
    for name in names:
        run = original.suites[name]
        if run.judge is None:
            continue
        kappas = [r.metrics["judge_kappa"] for r in run.results.values() if "judge_kappa" in r.metrics]
        out[name] = JudgedSuite(
            info=run.judge,
            metrics=tuple(m for m in run.metrics if m.graded_by == "judge"),
            constants={"judge_kappa": kappas[0]} if kappas else {},
        )
    return out


def _selected_suites(original: RunRecord, wanted: Sequence[str]) -> list[str]:
    known = list(original.suites)
    if not known:
        raise ConfigError("the run has no suites to score (it sent plain prompts only)", key_path="suites")
    unknown = [n for n in wanted if n not in original.suites]
    if unknown:
        raise ConfigError(
            f"suite {unknown[0]!r} is not in this run; its suites are: {', '.join(known)}", key_path="--suite"
        )
    return [n for n in known if not wanted or n in wanted]


def _samples_name(original: RunRecord, source_dir: Path) -> str:
    name = original.samples_file
    # The record is input like any other: it may only name a file inside its own folder.
    if Path(name).name != name or name in ("", ".", ".."):
        raise ConfigError(
            f"samples_file must be a file name in the run folder, got {name!r}",
            file=str(source_dir / "run.json"),
            key_path="samples_file",
        )
    return name


def _config_dir(original: RunRecord) -> Path | None:
    """The folder suite datasets were resolved against (the config file's), when it still exists."""
    if original.config_path is None:
        return None
    path = Path(original.config_path)
    return path.resolve().parent if path.is_file() else None


def _replan(original: RunRecord, name: str, base: Path | None) -> PlannedSuite:
    """Rebuild a suite from the parameters the record holds, and check its data is the same."""
    recorded = original.suites[name]
    try:
        suite, data = build_suite(name, recorded.params, seed=original.seed, base_dir=base)
    except ConfigError as exc:
        raise ConfigError(
            f"cannot rebuild suite {name!r} as the run used it: {exc.detail}",
            file=exc.file,
            key_path=f"suites.{name}.params" + (f".{exc.key_path}" if exc.key_path else ""),
        ) from exc
    before = {d.name: d.sha256 for d in recorded.datasets}
    after = {d.name: d.sha256 for d in data.datasets}
    if before != after:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        raise ConfigError(
            f"the data of suite {name!r} changed since the run ({', '.join(changed)}: content hash differs); "
            "its items would not match the recorded outputs. Restore the dataset or rerun `rai run`",
            key_path=f"suites.{name}.datasets",
        )
    return PlannedSuite(suite, data, _suite_providers(original, name))


def _suite_providers(original: RunRecord, name: str) -> tuple[str, ...]:
    """The providers that ran a suite, in the config's order (the selection in the config snapshot)."""
    for sel in original.config.get("suites") or []:
        if isinstance(sel, dict) and sel.get("name") == name and sel.get("providers"):
            return tuple(str(p) for p in sel["providers"])
    return tuple(original.providers)


def _problem_suite(problem: str) -> str:
    """The suite a scoring problem names ("suite NAME: ..." or "suite NAME, provider P: ...")."""
    head = problem.removeprefix("suite ")
    return head.split(":", 1)[0].split(",", 1)[0]


def _provenance(
    original: RunRecord, source_dir: Path, names: Sequence[str], runs: dict[str, SuiteRun]
) -> Rescore:
    environment: dict[str, Any] = environment_info()
    return Rescore(
        source_run_id=original.run_id,
        source_dir=str(source_dir),
        source_sha256=file_sha256(source_dir / "run.json"),
        scored_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        harness_version=__version__,
        suites={name: runs[name].version for name in names if name in runs},
        source_suites={name: run.version for name, run in original.suites.items()},
        environment=environment,
    )
