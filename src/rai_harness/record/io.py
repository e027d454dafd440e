"""The one reader and writer of run records (``run.json``) and samples (``samples.jsonl``).

Every file is written atomically (temporary file, then rename), so an interrupted run
never leaves a half-written record for the report or the gate to misread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from rai_harness.errors import ConfigError
from rai_harness.record.calls import CallRecord
from rai_harness.record.schema import SCHEMA_VERSION, RunRecord
from rai_harness.stats.estimate import STRICT_RECORD
from rai_harness.validation import format_validation_error, iter_jsonl

__all__ = [
    "file_sha256",
    "read_run_record",
    "read_samples",
    "retire_run_outputs",
    "write_json_atomic",
    "write_run",
    "write_samples",
]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (identifies a dataset or config version in the run record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: str) -> None:
    """Write text to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_samples(path: Path, records: Iterable[CallRecord]) -> int:
    """Write one JSON object per record to ``path`` atomically; return the count."""
    lines = [json.dumps(r.to_dict(), ensure_ascii=False, default=str) for r in records]
    write_json_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def write_run(
    out_dir: str | Path,
    record: RunRecord,
    samples: Iterable[CallRecord],
    *,
    judge_calls: Iterable[CallRecord] = (),
) -> None:
    """Write a run folder's ``samples.jsonl`` and then its ``run.json`` (the one writer of both).

    Judge calls go to ``record.judge_calls_file`` when the record names one. The record goes
    last, so a folder with a ``run.json`` always has the samples it describes.
    """
    folder = Path(out_dir)
    write_samples(folder / record.samples_file, samples)
    if record.judge_calls_file:
        write_samples(folder / record.judge_calls_file, judge_calls)
    write_json_atomic(folder / "run.json", record.model_dump_json(indent=2))


#: The journal a run folder holds while (and after) ``rai run`` works in it.
JOURNAL_FILE = "journal.sqlite"


#: Subfolder of a run folder where :func:`retire_run_outputs` keeps the previous results.
PREVIOUS_DIR = "previous"


def retire_run_outputs(out_dir: str | Path, extra: Iterable[str | Path] = ()) -> list[Path]:
    """Move a run folder's previous results aside before a new run starts writing it.

    An interrupted or failed rerun must not leave the previous run's ``run.json`` (which may
    pass a gate) looking like this run's result: :func:`write_run` writes the new one only
    when the run completes. ``samples.jsonl`` and ``report.html`` go too (they describe that
    old record). They are moved into ``previous/`` in the folder, not deleted, so a rerun that
    fails keeps the last finished results readable (``rai report out/previous``); the journal
    stays, as it is what the new run resumes from.

    Args:
        out_dir: The run folder.
        extra: Other files this run will rewrite (its JUnit and Markdown files): those inside
            the folder are moved there too, at their path within it; those elsewhere (a CI
            reports folder, maybe another filesystem) are removed, as the run rewrites them.

    Returns:
        The files moved, at their new place.

    Raises:
        ConfigError: A file could not be moved (a directory in its place, no permission).
    """
    folder = Path(out_dir)
    targets = [folder / "run.json", folder / "samples.jsonl", folder / "report.html", *map(Path, extra)]
    moved: list[Path] = []
    for path in targets:
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_dir():
            raise ConfigError(
                "is a directory, where this run writes a file; pass a file path", file=str(path)
            )
        try:
            inside = path.resolve().relative_to(folder.resolve())
        except ValueError:
            inside = None
        try:
            if inside is None:
                path.unlink()
                continue
            destination = folder / PREVIOUS_DIR / inside
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)
        except OSError as exc:
            raise ConfigError(
                f"cannot move the previous run's file aside ({exc.strerror or exc}); check the "
                "folder's permissions or pass another --out",
                file=str(path),
            ) from None
        moved.append(destination)
    return moved


def read_samples(path: str | Path) -> list[CallRecord]:
    """Read ``samples.jsonl`` back into records.

    Raises:
        ConfigError: The file is missing or unreadable, or a line is not a call record (naming
            the line).
    """
    out = []
    for line in iter_jsonl(path, what="samples file", missing_hint="pass the folder `rai run` wrote"):
        try:
            out.append(CallRecord.from_dict(line.obj))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"not a call record ({exc}); was the run interrupted? Rerun `rai run` on the same "
                "config to rewrite it",
                file=str(path),
                key_path=f"line {line.number}",
            ) from exc
    return out


def read_run_record(run_dir: str | Path) -> RunRecord:
    """Load ``run.json`` from a run folder (or the file itself); the one reader of run records.

    The schema version is checked before validation, so a record from a newer rai-harness is
    refused with "upgrade" rather than with a confusing unknown-key error.

    Raises:
        ConfigError: The file is missing, unreadable, not JSON, from a newer rai-harness (a
            higher ``schema_version``), or does not match this schema.
    """
    path = Path(run_dir)
    if path.suffix != ".json" or path.is_dir():
        path = path / "run.json"
    file = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        if (path.parent / JOURNAL_FILE).is_file():
            raise ConfigError(
                f"no run.json, but a {JOURNAL_FILE}: the run in this folder has not finished (it was "
                "interrupted, or stopped on an error); rerun the same `rai run` command to resume it",
                file=file,
            ) from exc
        raise ConfigError(
            "run record not found; pass the folder `rai run` wrote (it holds run.json)", file=file
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else "unreadable"
        raise ConfigError(
            f"cannot read the run record: {what} ({exc}); was the run interrupted? Rerun `rai run` "
            "on the same config to rewrite it",
            file=file,
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError("the run record must be a JSON object", file=file)
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(
            f"schema_version must be a whole number such as {SCHEMA_VERSION} (got {version!r}); the "
            "file was not written by rai-harness or was edited: rerun `rai run` to rewrite it",
            file=file,
            key_path="schema_version",
        )
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"schema_version {version!r} is newer than this rai-harness reads ({SCHEMA_VERSION}): "
            "upgrade rai-harness",
            file=file,
            key_path="schema_version",
        )
    try:
        # The reader's context turns on the checks that only a file can fail (an impossible
        # estimate: see Estimate); the run's own statistics are not re-checked while computed.
        return RunRecord.model_validate(data, context={STRICT_RECORD: True})
    except ValidationError as exc:
        err = format_validation_error(exc, file, "", RunRecord)
        raise ConfigError(
            f"not a valid run record: {err.detail}; rerun `rai run` on the same config to rewrite it",
            file=file,
            key_path=err.key_path,
        ) from exc
