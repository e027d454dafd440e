"""One classification-metrics module: the guard audit and the training report agree (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest

from rai_harness.guardrails import audit
from rai_harness.stats.classification import binary_metrics, rank_codes, roc_auc, roc_auc_ranked
from rai_harness.training import pipeline as train


def test_roc_auc_equals_sklearn_with_ties_and_weights() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.round(rng.random(400) * 0.5 + 0.4 * y, 1)  # coarse: many ties
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    counts = rng.integers(0, 4, 400)
    expanded = np.repeat(np.arange(400), counts)
    weighted = roc_auc_ranked(rank_codes(p), y, counts)
    assert weighted == pytest.approx(roc_auc_score(y[expanded], p[expanded]), abs=1e-12)


# (labels, predicted-positive) cases where some rate has a zero denominator.
EDGE_CASES = {
    "all true negatives": ([0, 0, 0], [False, False, False]),
    "nothing predicted positive": ([1, 0, 1], [False, False, False]),
    "no actual positives": ([0, 0, 0], [True, False, False]),
    "perfect": ([1, 0], [True, False]),
    "empty": ([], []),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_training_report_and_guard_audit_agree_on_edge_cases(case: str) -> None:
    labels, predicted = EDGE_CASES[case]
    y = np.asarray(labels, dtype=int)
    # The training report thresholds scores; scores of 1/0 reproduce the predictions at 0.5.
    scores = np.asarray(predicted, dtype=float)
    from_training = train._f1(y, scores, 0.5)
    from_audit = audit.binary_metrics(labels, predicted)
    assert from_training == {
        "f1": from_audit.f1,
        "precision": from_audit.precision,
        "recall": from_audit.recall,
    }
    assert train._auc(y, scores) == audit.roc_auc(labels, scores.tolist())


def test_undefined_rates_are_none_never_zero() -> None:
    m = binary_metrics([0, 0, 0], [False, False, False])
    assert (m.tn, m.precision, m.recall, m.f1) == (3, None, None, None)
    m = binary_metrics([1, 0, 1], [False, False, False])
    assert (m.precision, m.recall, m.f1) == (None, 0.0, 0.0)
    m = binary_metrics([0, 0], [True, False])
    assert (m.precision, m.recall, m.f1) == (0.0, None, 0.0)
    assert roc_auc([1, 1], [0.2, 0.9]) is None and roc_auc([], []) is None
    with pytest.raises(ValueError, match="predictions"):
        binary_metrics([1, 0], [True])


def test_one_wilson_interval() -> None:
    from rai_harness.stats.intervals import wilson
    from rai_harness.testing import synthetic_run

    est = wilson(3, 10)
    assert train._wilson(3, 10) == [est.ci_low, est.ci_high]
    assert train._wilson(0, 0) == [0.0, 1.0]
    assert not hasattr(synthetic_run, "_wilson")
