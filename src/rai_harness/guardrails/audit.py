"""Auditing a guard on labelled data: how often each rail is right, how fast, how fair.

For each rail of a stage, on a CSV or JSONL file whose label column says whether the rail
*should* trigger (1) or not (0):

* precision, recall and F1 of the rail's own trigger rule at its configured threshold(s);
* ROC-AUC of the raw score (the max watched label or span score), i.e. the quality of the
  classifier across all thresholds, computed with scikit-learn;
* latency per text, measured two ways (both are reported, with their names):
  ``batched_ms_per_text`` = wall time of scoring the whole file in batches of
  ``batch_size`` divided by the number of texts (offline throughput), and
  ``single_p50_ms`` / ``single_p95_ms`` = one text per call on an evenly spaced
  subsample of at most ``single_sample`` texts (what one inline request pays, without
  micro-batching or queueing);
* with a group column, the unintended-bias AUCs of Borkan et al. (2019), "Nuanced
  Metrics for Measuring Unintended Bias with Real Data for Text Classification":

  - **Subgroup AUC**: AUC on the examples that mention the group. Low: the classifier
    separates toxic from non-toxic poorly *within* the group's texts.
  - **BPSN AUC** (background positive, subgroup negative): AUC on the group's negatives
    plus the positives that do not mention the group. Low: non-toxic texts mentioning
    the group score higher than toxic texts that do not (false positives on the group).
  - **BNSP AUC** (background negative, subgroup positive): AUC on the group's positives
    plus the negatives that do not mention the group. Low: toxic texts mentioning the
    group score lower than non-toxic ones that do not (misses on the group).

  Each is ``None`` (shown "n/a") when its subset lacks positives or negatives. The
  per-metric generalised mean over groups with power -5 (the Jigsaw competition's
  aggregate, which weighs the worst groups most) is reported as well.

Labels may be 0/1, true/false, yes/no, or fractions in [0, 1] (Jigsaw-style annotator
shares), which are binarised at 0.5 as in Borkan et al. Group memberships are a list
(JSONL) or a comma-separated string (CSV or JSONL); an empty value means "no group".

The audit scores each classifier once (rails sharing one reuse its scores) and applies no
timeouts: it measures the classifier, not the deadline.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rai_harness.classifiers.base import Classifier, LabelScores
from rai_harness.errors import ConfigError, RunError, did_you_mean
from rai_harness.guardrails.guard import Guard
from rai_harness.guardrails.rails import Rail, Stage
from rai_harness.guardrails.textprep import PreparedText, prepare
from rai_harness.stats.classification import BinaryMetrics, binary_metrics, roc_auc
from rai_harness.validation import iter_jsonl

if TYPE_CHECKING:
    from rai_harness.guardrails.guard import ClassifierSource
    from rai_harness.guardrails.policy import GuardPolicy

__all__ = [
    "AuditReport",
    "BiasSummary",
    "BinaryMetrics",
    "GroupBias",
    "LabelledData",
    "LatencyStats",
    "RailAudit",
    "audit_guard",
    "binary_metrics",
    "bnsp_auc",
    "bpsn_auc",
    "load_labelled",
    "power_mean",
    "roc_auc",
    "subgroup_auc",
]

#: Power of the generalised mean over groups used by the Jigsaw Unintended Bias competition.
JIGSAW_POWER = -5.0


# -- data ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelledData:
    """Texts with 0/1 labels and, optionally, group memberships."""

    path: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    groups: tuple[frozenset[str], ...] | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.texts)

    @property
    def positives(self) -> int:
        """Rows labelled 1."""
        return sum(self.labels)


def _parse_label(value: Any, *, file: str, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "y", "t"):
            return 1
        if text in ("false", "no", "n", "f"):
            return 0
        try:
            number = float(text)
        except ValueError:
            number = math.nan
    else:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ConfigError(
            f"label must be 0/1, true/false or a fraction in [0, 1], got {shown}", file=file, key_path=where
        )
    # Fractions are annotator shares (Jigsaw): at least half the raters said "toxic".
    return int(number >= 0.5)


def _parse_groups(value: Any, *, file: str, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigError(
            f"groups must be a list or a comma-separated string, got {type(value).__name__}",
            file=file,
            key_path=where,
        )
    return frozenset(str(item).strip() for item in items if str(item).strip())


def _missing_field(field: str, row: Mapping[str, Any], *, file: str, where: str) -> ConfigError:
    fields = [str(k) for k in row]
    suggestion = did_you_mean(field, fields)
    return ConfigError(
        f"missing field '{field}'{suggestion}; fields in this row: {', '.join(fields) or 'none'}",
        file=file,
        key_path=where,
    )


def _rows(path: Path) -> list[tuple[int, Mapping[str, Any]]]:
    """(line number, row) pairs of a CSV or JSONL file."""
    file = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".ndjson"):
        raise ConfigError(
            f"unsupported data file type '{suffix or '(none)'}'; use .csv, .tsv or .jsonl", file=file
        )
    if suffix in (".jsonl", ".ndjson"):
        # The one JSONL reader: a byte-order mark, bytes that are not UTF-8, deep nesting and a
        # lone surrogate are each an error naming the line, never an internal error.
        return [(line.number, line.obj) for line in iter_jsonl(path, what="data file")]
    try:
        # utf-8-sig: a byte-order mark would otherwise become part of the first column's name.
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError as exc:
        raise ConfigError("data file not found; check the path", file=file) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the data file: {exc.strerror}", file=file) from exc
    rows: list[tuple[int, Mapping[str, Any]]] = []
    with handle:
        reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
        try:
            for row in reader:
                rows.append((reader.line_num, row))
        except csv.Error as exc:
            raise ConfigError(f"bad CSV: {exc}", file=file, key_path=f"line {reader.line_num}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"the data file is not UTF-8 text ({exc.reason}, after line {reader.line_num}); save it as UTF-8",
                file=file,
            ) from None
    return rows


def load_labelled(
    path: str | Path,
    *,
    text_field: str = "text",
    label_field: str = "label",
    group_field: str | None = None,
) -> LabelledData:
    """Read a labelled CSV/TSV/JSONL file.

    Raises:
        ConfigError: naming the file, the line and the field of the first bad row.
    """
    p = Path(path)
    file = str(p)
    texts: list[str] = []
    labels: list[int] = []
    groups: list[frozenset[str]] = []
    for line, row in _rows(p):
        for needed in (text_field, label_field):
            if needed not in row:
                raise _missing_field(needed, row, file=file, where=f"line {line}.{needed}")
        text = row[text_field]
        if not isinstance(text, str):
            raise ConfigError(
                f"must be a string, got {type(text).__name__}",
                file=file,
                key_path=f"line {line}.{text_field}",
            )
        texts.append(text)
        labels.append(_parse_label(row[label_field], file=file, where=f"line {line}.{label_field}"))
        if group_field is not None:
            if group_field not in row:
                raise _missing_field(group_field, row, file=file, where=f"line {line}.{group_field}")
            groups.append(_parse_groups(row[group_field], file=file, where=f"line {line}.{group_field}"))
    if not texts:
        raise ConfigError("the data file has no rows", file=file)
    return LabelledData(file, tuple(texts), tuple(labels), tuple(groups) if group_field is not None else None)


# -- metrics ---------------------------------------------------------------------------------


def _subset_auc(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> float | None:
    return roc_auc(labels[mask].tolist(), scores[mask].tolist())


def subgroup_auc(labels: Sequence[int], scores: Sequence[float], in_group: Sequence[bool]) -> float | None:
    """AUC restricted to the examples that mention the group (Borkan et al. 2019)."""
    y, s, g = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float), np.asarray(in_group, dtype=bool)
    return _subset_auc(y, s, g)


def bpsn_auc(labels: Sequence[int], scores: Sequence[float], in_group: Sequence[bool]) -> float | None:
    """Background-positive, subgroup-negative AUC: the group's negatives + other positives."""
    y, s, g = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float), np.asarray(in_group, dtype=bool)
    return _subset_auc(y, s, (g & (y == 0)) | (~g & (y == 1)))


def bnsp_auc(labels: Sequence[int], scores: Sequence[float], in_group: Sequence[bool]) -> float | None:
    """Background-negative, subgroup-positive AUC: the group's positives + other negatives."""
    y, s, g = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float), np.asarray(in_group, dtype=bool)
    return _subset_auc(y, s, (g & (y == 1)) | (~g & (y == 0)))


def power_mean(values: Sequence[float | None], p: float = JIGSAW_POWER) -> float | None:
    """Generalised mean ``(mean(v ** p)) ** (1 / p)`` over the defined values (``None`` if none)."""
    defined = np.asarray([v for v in values if v is not None], dtype=float)
    if defined.size == 0:
        return None
    if np.any(defined <= 0):
        return 0.0  # a negative power of 0 diverges: the mean is pulled all the way down
    return float(np.mean(defined**p) ** (1.0 / p))


@dataclass(frozen=True, slots=True)
class GroupBias:
    """Unintended-bias AUCs of one group (``None``: undefined, shown as n/a)."""

    group: str
    n: int
    positives: int
    negatives: int
    subgroup_auc: float | None
    bpsn_auc: float | None
    bnsp_auc: float | None


@dataclass(frozen=True, slots=True)
class BiasSummary:
    """Power mean (p = -5) of each bias AUC over the groups where it is defined."""

    subgroup_auc: float | None
    bpsn_auc: float | None
    bnsp_auc: float | None
    power: float = JIGSAW_POWER


def group_bias(
    labels: Sequence[int], scores: Sequence[float], groups: Sequence[frozenset[str]]
) -> tuple[GroupBias, ...]:
    """Bias AUCs for every group that appears in ``groups``, sorted by name."""
    y = np.asarray(labels, dtype=int)
    out = []
    for name in sorted({g for member in groups for g in member}):
        mask = [name in member for member in groups]
        in_y = y[np.asarray(mask, dtype=bool)]
        out.append(
            GroupBias(
                group=name,
                n=int(in_y.size),
                positives=int(in_y.sum()),
                negatives=int(in_y.size - in_y.sum()),
                subgroup_auc=subgroup_auc(labels, scores, mask),
                bpsn_auc=bpsn_auc(labels, scores, mask),
                bnsp_auc=bnsp_auc(labels, scores, mask),
            )
        )
    return tuple(out)


# -- the audit -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Per-text classifier latency, milliseconds.

    Attributes:
        batched_ms_per_text: Wall time of scoring every text in batches of ``batch_size``,
            divided by the number of texts.
        batch_size: Texts per batch in that measurement.
        single_p50_ms: Median latency of a one-text call, over ``single_n`` texts.
        single_p95_ms: 95th percentile of the same.
        single_n: Texts in the one-text subsample.
    """

    batched_ms_per_text: float
    batch_size: int
    single_p50_ms: float | None
    single_p95_ms: float | None
    single_n: int


@dataclass(frozen=True, slots=True)
class RailAudit:
    """How one rail does on the labelled data."""

    rail: str
    classifier: str
    action: str
    thresholds: Mapping[str, float]
    n: int
    positives: int
    metrics: BinaryMetrics
    latency: LatencyStats
    groups: tuple[GroupBias, ...] = ()
    bias: BiasSummary | None = None


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Audit of every rail of one stage of a guard.

    Attributes:
        policy: The guard's name.
        data_path: The labelled file.
        stage: Which rails were audited.
        n: Rows.
        positives: Rows labelled 1.
        rails: One audit per rail.
        guard: The whole stage as one filter (predicts 1 when any rail triggers).
        group_field: The group column, when bias metrics were computed.
    """

    policy: str
    data_path: str
    stage: Stage
    n: int
    positives: int
    rails: tuple[RailAudit, ...]
    guard: BinaryMetrics
    group_field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``None`` for n/a)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Scored:
    # One per row; None for a row the guard blocks before any classifier sees it (longer than
    # max_chars with over_max_chars: block), as check() does.
    results: tuple[LabelScores | None, ...]
    latency: LatencyStats


def _score_classifier(
    classifier: Classifier, prepared: Sequence[PreparedText], *, batch_size: int, single_sample: int
) -> _Scored:
    """Score what the guard's classifiers would score: each row's detection text."""
    texts = [p.detection for p in prepared if not p.skip]
    if not texts:
        raise ConfigError("every row is longer than the policy's max_chars: the guard blocks them unscored")
    results: list[LabelScores] = []
    started = time.perf_counter()
    try:
        for i in range(0, len(texts), batch_size):
            batch = list(texts[i : i + batch_size])
            out = classifier.predict(batch)
            if len(out) != len(batch):
                raise RunError(f"classifier returned {len(out)} results for {len(batch)} texts")
            results.extend(out)
        batched_ms = (time.perf_counter() - started) * 1000.0 / len(texts)
        single: list[float] = []
        k = min(single_sample, len(texts))
        # Evenly spaced, so the subsample spans short and long texts of a sorted file alike.
        for index in np.unique(np.linspace(0, len(texts) - 1, k).round().astype(int)) if k else []:
            t0 = time.perf_counter()
            classifier.predict([texts[int(index)]])
            single.append((time.perf_counter() - t0) * 1000.0)
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"classifier '{classifier.name}' failed during the audit: {exc}") from exc
    latency = LatencyStats(
        batched_ms_per_text=batched_ms,
        batch_size=min(batch_size, len(texts)),  # the batch size actually used
        single_p50_ms=float(np.percentile(single, 50)) if single else None,
        single_p95_ms=float(np.percentile(single, 95)) if single else None,
        single_n=len(single),
    )
    scored = iter(results)
    return _Scored(tuple(None if p.skip else next(scored) for p in prepared), latency)


def _triggered(rail: Rail, result: LabelScores | None) -> bool:
    """Whether ``rail`` stops the row: a row blocked for its length is stopped by every rail."""
    return True if result is None else rail.is_triggered(result)


def _audit_rail(rail: Rail, scored: _Scored, data: LabelledData) -> RailAudit:
    scores = [1.0 if r is None else rail.score(r) for r in scored.results]
    predicted = [_triggered(rail, r) for r in scored.results]
    groups: tuple[GroupBias, ...] = ()
    bias = None
    if data.groups is not None:
        groups = group_bias(data.labels, scores, data.groups)
        bias = BiasSummary(
            subgroup_auc=power_mean([g.subgroup_auc for g in groups]),
            bpsn_auc=power_mean([g.bpsn_auc for g in groups]),
            bnsp_auc=power_mean([g.bnsp_auc for g in groups]),
        )
    return RailAudit(
        rail=rail.name,
        classifier=rail.classifier.name,
        action=rail.action,
        thresholds=dict(rail.thresholds),
        n=data.n,
        positives=data.positives,
        metrics=binary_metrics(data.labels, predicted, scores),
        latency=scored.latency,
        groups=groups,
        bias=bias,
    )


def audit_guard(
    guard_or_policy: Guard | GuardPolicy | str | Path,
    data_path: str | Path,
    *,
    text_field: str = "text",
    label_field: str = "label",
    group_field: str | None = None,
    stage: Stage = "input",
    pool: ClassifierSource | None = None,
    batch_size: int = 64,
    single_sample: int = 32,
) -> AuditReport:
    """Measure every rail of ``stage`` on a labelled file (see the module docstring).

    Args:
        guard_or_policy: A guard, a loaded policy, or a policy file path.
        data_path: CSV, TSV or JSONL with a text and a label per row (1 = should trigger).
        text_field: Column holding the text.
        label_field: Column holding the label.
        group_field: Column holding group memberships (enables the bias AUCs).
        stage: ``input`` or ``output`` rails.
        pool: Classifier source when a policy is given (default: the process-wide pool).
        batch_size: Texts per classifier call for the batched pass.
        single_sample: Texts timed one per call (latency percentiles).

    Raises:
        ConfigError: bad file, field or policy (naming the file, line and field).
        RunError: a classifier failed.
    """
    if stage not in ("input", "output"):
        raise ConfigError(f"stage must be input or output, got {stage!r}", key_path="stage")
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1", key_path="batch_size")
    data = load_labelled(data_path, text_field=text_field, label_field=label_field, group_field=group_field)
    owned = not isinstance(guard_or_policy, Guard)
    guard = (
        guard_or_policy
        if isinstance(guard_or_policy, Guard)
        else Guard.from_policy(guard_or_policy, pool=pool, micro_batch=False)
    )
    try:
        rails = guard.rails(stage)
        if not rails:
            raise ConfigError(f"the guard '{guard.name}' has no {stage} rails to audit", key_path=stage)
        # What the guard's classifiers see, not the raw rows: surrogates repaired, the
        # policy's max_chars applied, invisible characters removed, lookalikes, digits and
        # dashes folded (textprep). Scoring raw rows measured another pipeline: obfuscated PII
        # the guard redacts counted as missed.
        prepared = [
            prepare(t, max_chars=guard.max_chars, over_limit=guard.over_max_chars) for t in data.texts
        ]
        # Compute once, many consumers: rails sharing a classifier share its scores.
        scored: dict[int, _Scored] = {}
        for rail in rails:
            if id(rail.classifier) not in scored:
                scored[id(rail.classifier)] = _score_classifier(
                    rail.classifier, prepared, batch_size=batch_size, single_sample=single_sample
                )
        audits = tuple(_audit_rail(rail, scored[id(rail.classifier)], data) for rail in rails)
        any_triggered = [
            any(_triggered(rail, scored[id(rail.classifier)].results[i]) for rail in rails)
            for i in range(data.n)
        ]
    finally:
        if owned:
            guard.close()
    return AuditReport(
        policy=guard.name,
        data_path=data.path,
        stage=stage,
        n=data.n,
        positives=data.positives,
        rails=audits,
        guard=binary_metrics(data.labels, any_triggered),
        group_field=group_field,
    )
