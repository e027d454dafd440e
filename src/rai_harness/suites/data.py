"""Loading suite datasets: the project's own small sets, local files, or Hugging Face hub ids.

``dataset`` in a suite's params is resolved in this order:

1. unset: the suite's default file under the project's ``datasets/`` folder
   (``$RAI_HARNESS_DATASETS`` overrides where that folder is);
2. an existing local path (relative to the config file's folder, then the working
   directory): ``.jsonl``/``.json`` (one object per line) and ``.csv`` are read directly, so
   errors name the line; ``.parquet`` goes through ``datasets.load_dataset("parquet", ...)``;
3. anything else is a Hugging Face hub id, loaded with ``datasets.load_dataset(id, subset,
   split=...)`` (needs the network, or a populated HF cache).

Every load returns a :class:`~rai_harness.record.DatasetInfo` with a content hash,
so the run record pins exactly which data produced its numbers.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rai_harness.errors import ConfigError, MissingDependencyError
from rai_harness.record import DatasetInfo, file_sha256
from rai_harness.types import stable_hash
from rai_harness.validation import iter_jsonl

__all__ = ["load_rows", "project_datasets_dir", "require_fields", "sample_rows"]


def project_datasets_dir() -> Path:
    """The project's ``datasets/`` folder (``$RAI_HARNESS_DATASETS``, else the checkout's)."""
    env = os.environ.get("RAI_HARNESS_DATASETS")
    if env:
        return Path(env).expanduser()
    # src/rai_harness/suites/data.py -> the repository root holds datasets/.
    return Path(__file__).resolve().parents[3] / "datasets"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [line.obj for line in iter_jsonl(path, what="dataset file")]


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [dict(row) for row in csv.DictReader(fh)]


def _load_hub(source: str, subset: str | None, split: str) -> tuple[list[dict[str, Any]], DatasetInfo]:
    try:
        import datasets as hf_datasets
    except ModuleNotFoundError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError("datasets", feature="loading hub datasets") from exc
    try:
        ds = hf_datasets.load_dataset(source, subset, split=split)  # type: ignore[attr-defined]
    except Exception as exc:
        raise ConfigError(
            f"could not load {source!r} (subset {subset!r}, split {split!r}) as a local file or a Hugging "
            f"Face hub dataset: {type(exc).__name__}: {exc}. Give an existing .jsonl/.csv path, or a hub id "
            "with network access",
            key_path="params.dataset",
        ) from exc
    rows = [dict(r) for r in ds]
    fingerprint = getattr(ds, "_fingerprint", None)
    name = f"{source}:{subset}" if subset else source
    return rows, DatasetInfo(
        name=f"{name}[{split}]",
        path=source,
        sha256=stable_hash(rows) if fingerprint is None else fingerprint,
        rows=len(rows),
    )


def load_rows(
    source: str | None,
    *,
    default: str,
    base_dir: Path | None = None,
    subset: str | None = None,
    split: str = "train",
) -> tuple[list[dict[str, Any]], DatasetInfo]:
    """Read a suite's dataset rows (see the module docstring for how ``source`` resolves).

    Args:
        source: The suite's ``dataset`` parameter.
        default: Path of the default file, relative to :func:`project_datasets_dir`.
        base_dir: The config file's folder.
        subset: Hub dataset configuration name.
        split: Hub dataset split.

    Raises:
        ConfigError: Missing or unreadable file, or a hub id that cannot be loaded.
    """
    if source is None:
        path = project_datasets_dir() / default
        if not path.exists():
            raise ConfigError(
                f"the default dataset {path} is missing; run from a rai-harness checkout, set "
                "RAI_HARNESS_DATASETS to its datasets/ folder, or give `dataset:` explicitly",
                key_path="params.dataset",
            )
    else:
        candidates = [Path(source).expanduser()]
        if base_dir is not None and not candidates[0].is_absolute():
            candidates.insert(0, base_dir / source)
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            return _load_hub(source, subset, split)
        path = found
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = _read_jsonl(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".parquet":
        import datasets as hf_datasets

        load = hf_datasets.load_dataset  # type: ignore[attr-defined]
        rows = [dict(r) for r in load("parquet", data_files=str(path), split="train")]
    else:
        raise ConfigError(
            f"unsupported dataset file type {suffix!r}; use .jsonl, .csv or .parquet",
            file=str(path),
            key_path="params.dataset",
        )
    if not rows:
        raise ConfigError("the dataset has no rows", file=str(path), key_path="params.dataset")
    return rows, DatasetInfo(name=path.stem, path=str(path), sha256=file_sha256(path), rows=len(rows))


def require_fields(rows: Sequence[dict[str, Any]], fields: Sequence[str], *, dataset: DatasetInfo) -> None:
    """Raise a ConfigError naming the first row and field that is missing.

    Raises:
        ConfigError: A row lacks one of ``fields``.
    """
    for i, row in enumerate(rows):
        missing = [f for f in fields if f not in row or row[f] is None]
        if missing:
            raise ConfigError(
                f"row {i + 1} lacks {', '.join(missing)}; every row needs {', '.join(fields)}",
                file=dataset.path,
                key_path="params.dataset",
            )


def sample_rows(rows: Sequence[Any], limit: int | None, seed: int) -> list[Any]:
    """The first ``limit`` rows after a seeded shuffle (all rows, in file order, without a limit)."""
    out = list(rows)
    if limit is None or limit >= len(out):
        return out
    random.Random(seed).shuffle(out)
    return out[:limit]
