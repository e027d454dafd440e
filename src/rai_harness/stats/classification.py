"""Binary classification metrics: confusion counts, precision, recall, F1 and ROC-AUC.

The one implementation, used by the guard audit (:mod:`rai_harness.guardrails.audit`) and
by the toxicity head's training report (:mod:`rai_harness.training.pipeline`), so both say
the same thing about the same predictions, edge cases included:

* a rate whose denominator is zero is ``None`` (undefined), never ``0.0``: precision when
  nothing was predicted positive, recall when nothing is positive, F1 when there is neither
  a true positive, a false positive nor a false negative (every item a true negative). A
  report that printed 0.0 there would claim a failure that did not happen;
* ROC-AUC is ``None`` when the labels lack positives or negatives (or there are none).

ROC-AUC is the Mann-Whitney statistic with ties counted half, which equals scikit-learn's
``roc_auc_score``; it accepts per-item weights (a bootstrap resample is a weight vector of
counts), and the ranking can be computed once (:func:`rank_codes`) and reused across many
weightings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = ["BinaryMetrics", "RankCodes", "binary_metrics", "rank_codes", "roc_auc", "roc_auc_ranked"]


@dataclass(frozen=True, slots=True)
class BinaryMetrics:
    """Confusion counts and the rates derived from them (``None`` when undefined)."""

    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None = None


class RankCodes(NamedTuple):
    """Dense ranks of a score vector (equal scores share a code) and the number of codes."""

    codes: np.ndarray
    n_codes: int


def binary_metrics(
    labels: Sequence[int] | np.ndarray,
    predicted: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray | None = None,
) -> BinaryMetrics:
    """Precision, recall and F1 of ``predicted`` against ``labels``; ROC-AUC of ``scores``.

    Args:
        labels: 1 (positive) or 0 per item.
        predicted: Whether each item was predicted positive.
        scores: Scores to rank by, for ROC-AUC (omitted: ``roc_auc`` is ``None``).

    Raises:
        ValueError: The sequences differ in length.
    """
    y = np.asarray(labels).astype(bool)
    p = np.asarray(predicted).astype(bool)
    if y.shape != p.shape:
        raise ValueError(f"got {p.size} predictions for {y.size} labels")
    tp, fp = int(np.sum(y & p)), int(np.sum(~y & p))
    fn, tn = int(np.sum(y & ~p)), int(np.sum(~y & ~p))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    auc = roc_auc(labels, scores) if scores is not None else None
    return BinaryMetrics(tp, fp, fn, tn, precision, recall, f1, auc)


def rank_codes(scores: Sequence[float] | np.ndarray) -> RankCodes:
    """Dense ranks of ``scores`` (one sort), for :func:`roc_auc_ranked`."""
    values = np.asarray(scores, dtype=float).ravel()
    if values.size == 0:
        return RankCodes(np.zeros(0, dtype=np.int64), 0)
    _, codes = np.unique(values, return_inverse=True)
    codes = codes.ravel()
    return RankCodes(codes, int(codes.max()) + 1)


def roc_auc_ranked(ranks: RankCodes, labels: Any, weights: Any = None) -> float | None:
    """ROC-AUC from precomputed ranks, with optional per-item weights.

    Args:
        ranks: From :func:`rank_codes` of the scores.
        labels: 1 or 0 per item (any array-like).
        weights: Non-negative weight per item (default 1 each); a bootstrap resample is the
            vector of how often each item was drawn.

    Returns:
        The probability that a random positive outranks a random negative (ties count
        half), or ``None`` when the (weighted) positives or negatives are empty.
    """
    y = np.asarray(labels).ravel()
    if y.size != ranks.codes.size:
        raise ValueError(f"got {ranks.codes.size} scores for {y.size} labels")
    if y.size == 0:
        return None
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=float).ravel()
    pos = np.bincount(ranks.codes, weights=w * (y == 1), minlength=ranks.n_codes)
    neg = np.bincount(ranks.codes, weights=w * (y == 0), minlength=ranks.n_codes)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    below = np.cumsum(neg) - neg  # negative weight strictly below each score
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def roc_auc(labels: Any, scores: Any, weights: Any = None) -> float | None:
    """ROC-AUC of ``scores`` against ``labels`` (equals ``sklearn.metrics.roc_auc_score``).

    Returns:
        The AUC, or ``None`` when the labels lack positives or negatives (or are empty).
    """
    return roc_auc_ranked(rank_codes(scores), labels, weights)
