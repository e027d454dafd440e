"""Agreement between a judge and gold labels: accuracy, Cohen's kappa, a confusion matrix.

Used to measure an LLM judge on a labelled set (``rai judge calibrate``) before its grades
are trusted. Every number comes with a 95% interval:

* **accuracy** (share of items where the judge's label equals the gold label): Clopper-Pearson (exact);
* **Cohen's kappa** ``κ = (p_o − p_e) / (1 − p_e)``, agreement corrected for the agreement
  two raters with these label frequencies would reach by chance (J. Cohen 1960, *Educational
  and Psychological Measurement* 20(1):37-46): seeded expanded-percentile bootstrap over
  items (:func:`~rai_harness.stats.bootstrap.bootstrap`);
* **confusion matrix**: counts, rows = gold label, columns = judge label, and each cell as a
  share of its row (how often gold label *i* is judged *j*) with a Clopper-Pearson (exact) interval.

A judge reply that could not be parsed is never guessed: it is its own column
(:data:`UNPARSED`), counts as a disagreement in accuracy and kappa (so a judge that often
emits nothing usable scores low, as it should), and the parsed share is reported as
``coverage``. A judge call that failed (an outage, a timeout) is no reply: the caller leaves
it out (``rai judge calibrate`` counts it apart), never passes it here as unparsed.

When either rater uses one category for every item (a judge that answers "A" whatever it
reads), kappa is 0 (or 0/0) by construction and every bootstrap resample repeats it: the
zero-width interval would look precise while it measures nothing. Such a kappa is reported
without an interval and with a note saying why. The matrix comes from scikit-learn; kappa is computed from the same table with
numpy (thousands of bootstrap resamples), checked against scikit-learn's in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rai_harness.stats.bootstrap import bootstrap
from rai_harness.stats.estimate import Estimate
from rai_harness.stats.intervals import clopper_pearson

__all__ = ["UNPARSED", "Agreement", "agreement", "cohen_kappa"]

#: Column of the confusion matrix for judge replies that named no label.
UNPARSED = "(unparsed)"


def cohen_kappa(gold: Sequence[str], judged: Sequence[str], labels: Sequence[str]) -> float | None:
    """Cohen's kappa of two label sequences over ``labels``; ``None`` when undefined.

    Undefined when chance agreement is 1 (both raters used one and the same label for
    every item): kappa is 0/0 there, and no number would be honest.

    Raises:
        ValueError: Sequences of different lengths.
    """
    if len(gold) != len(judged):
        raise ValueError(f"{len(gold)} gold labels but {len(judged)} judged labels")
    if not gold:
        return None
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    codes_a = np.fromiter((index[x] for x in gold), dtype=np.intp, count=len(gold))
    codes_b = np.fromiter((index[x] for x in judged), dtype=np.intp, count=len(judged))
    table = np.bincount(codes_a * k + codes_b, minlength=k * k).reshape(k, k).astype(np.float64)
    n = table.sum()
    p_o = np.trace(table) / n
    p_e = float(table.sum(axis=1) @ table.sum(axis=0)) / (n * n)
    if p_e >= 1.0:
        return None
    return float((p_o - p_e) / (1.0 - p_e))


@dataclass(frozen=True)
class Agreement:
    """A judge measured against gold labels (see the module docstring).

    Attributes:
        labels: The gold label set, in order (rows of the matrix).
        columns: ``labels`` plus :data:`UNPARSED` (columns of the matrix).
        n: Items compared.
        accuracy: Share of items judged with their gold label (Clopper-Pearson).
        kappa: Cohen's kappa, unparsed replies a category of their own (bootstrap).
        coverage: Share of items whose judge reply was parsed (Clopper-Pearson).
        confusion: ``confusion[i][j]`` = items with gold ``labels[i]`` judged ``columns[j]``.
        confusion_rates: Gold label -> judge column -> share of that gold row (Clopper-Pearson).
    """

    labels: tuple[str, ...]
    columns: tuple[str, ...]
    n: int
    accuracy: Estimate
    kappa: Estimate
    coverage: Estimate
    confusion: tuple[tuple[int, ...], ...]
    confusion_rates: dict[str, dict[str, Estimate]]

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (for calibration files and run records)."""
        return {
            "labels": list(self.labels),
            "columns": list(self.columns),
            "n": self.n,
            "accuracy": self.accuracy.model_dump(mode="json"),
            "kappa": self.kappa.model_dump(mode="json"),
            "coverage": self.coverage.model_dump(mode="json"),
            "confusion": [list(row) for row in self.confusion],
            "confusion_rates": {
                g: {c: e.model_dump(mode="json") for c, e in row.items()}
                for g, row in self.confusion_rates.items()
            },
        }


def agreement(
    gold: Sequence[str],
    judged: Sequence[str | None],
    labels: Sequence[str],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Agreement:
    """Compare judge labels (``None`` = unparsed) with gold labels.

    Args:
        gold: One gold label per item, each in ``labels``.
        judged: The judge's label per item, in ``labels``, or ``None`` when its reply named none.
        labels: The label set.
        n_resamples: Bootstrap resamples for the kappa interval.
        seed: Bootstrap seed.

    Raises:
        ValueError: Lengths differ, or a label is not in ``labels``.
    """
    if len(gold) != len(judged):
        raise ValueError(f"{len(gold)} gold labels but {len(judged)} judge labels")
    labels = tuple(labels)
    if UNPARSED in labels:
        raise ValueError(f"{UNPARSED!r} is reserved for unparsed judge replies")
    known = set(labels)
    for name, seq in (("gold", gold), ("judge", judged)):
        bad = sorted({x for x in seq if x is not None and x not in known})
        if bad:
            raise ValueError(f"{name} label {bad[0]!r} is not one of {', '.join(labels)}")
    columns = (*labels, UNPARSED)
    seen = [x if x is not None else UNPARSED for x in judged]
    n = len(gold)

    from sklearn.metrics import confusion_matrix  # heavy import: only when calibrating

    matrix = confusion_matrix(list(gold), seen, labels=list(columns)) if n else np.zeros((0, 0), int)
    confusion = tuple(tuple(int(v) for v in matrix[i]) for i in range(len(labels))) if n else ()
    rates: dict[str, dict[str, Estimate]] = {}
    for i, g in enumerate(labels):
        row_total = sum(confusion[i]) if n else 0
        rates[g] = {c: clopper_pearson(confusion[i][j] if n else 0, row_total) for j, c in enumerate(columns)}
    pairs = list(zip(gold, seen, strict=True))
    return Agreement(
        labels=labels,
        columns=columns,
        n=n,
        accuracy=clopper_pearson(sum(1 for a, b in pairs if a == b), n),
        kappa=_kappa(pairs, columns, n_resamples=n_resamples, seed=seed),
        coverage=clopper_pearson(sum(1 for x in judged if x is not None), n),
        confusion=confusion,
        confusion_rates=rates,
    )


def _kappa(
    pairs: Sequence[tuple[str, str]], columns: Sequence[str], *, n_resamples: int, seed: int
) -> Estimate:
    """Kappa with a bootstrap interval, or without one when a rater is constant (module docstring)."""

    def kappa_of(sample: Sequence[tuple[str, str]]) -> float | None:
        return cohen_kappa([a for a, _ in sample], [b for _, b in sample], columns)

    constant = _constant_rater(pairs)
    if constant is None:
        return bootstrap(pairs, kappa_of, n_resamples=n_resamples, seed=seed)
    value = kappa_of(pairs)
    shown = "undefined (0/0)" if value is None else f"{value:g}"
    return Estimate(
        value=value,
        n=len(pairs),
        note=f"{constant}: kappa is {shown} by construction and measures no agreement; no interval",
    )


def _constant_rater(pairs: Sequence[tuple[str, str]]) -> str | None:
    """Which rater gave one label to every item (``None`` when both vary or there are no items)."""
    if not pairs:
        return None
    judged = {b for _, b in pairs}
    gold = {a for a, _ in pairs}
    if len(judged) == 1:
        return f"the judge gave {next(iter(judged))!r} to all {len(pairs)} items"
    if len(gold) == 1:
        return f"every one of the {len(pairs)} gold labels is {next(iter(gold))!r}"
    return None
