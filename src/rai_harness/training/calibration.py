"""Calibration, operating points and per-kind rates for the toxicity head.

* :func:`platt` fits ``sigmoid(a * logit + c)`` on validation logits (Platt 1999). For a
  logistic-regression head the map folds into the head's own weight and bias, so the shipped
  scores *are* the calibrated ones and the runtime path is unchanged.
* :func:`reliability` bins calibrated scores and compares them with the observed toxic share
  (expected calibration error, ECE).
* :func:`threshold_for_macro_fpr` reads an operating point off the calibrated curve: the
  smallest threshold whose false-positive rate on a benign reference set, every kind of text
  weighted equally, is at most the target.
* :func:`rates_by` gives the flag rate (false-positive rate for benign groups, recall for toxic
  ones) per kind or source, with Wilson intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ASSISTANT_KINDS",
    "POLICY_TARGETS",
    "platt",
    "rates_by",
    "reliability",
    "summarize_kinds",
    "threshold_for_macro_fpr",
    "wilson",
]

#: Benign kinds that stand for what an assistant says or is asked: the reference set for
#: the shipped thresholds' false-positive targets.
ASSISTANT_KINDS = ("short_reply", "refusal", "identity_statement", "counter_speech", "answer", "question")
#: Benign false-positive rate on validation assistant-register texts, each kind weighted
#: equally (:func:`threshold_for_macro_fpr`), that each shipped rail's threshold is chosen for
#: (``policy/rail``). The default's 2 % keeps a third of the
#: 3 % budget as margin for unseen text (a 1 % target left more margin than the budget needs
#: and cost toxic recall: 87 % on the test split at 1 %, with 1.5 % false positives); strict
#: spends the whole 3 % on recall, and its input rail is never laxer than the default's.
POLICY_TARGETS: dict[str, float] = {
    "default/toxic-input": 0.02,
    "default/toxic-output": 0.02,
    "strict/toxic-input": 0.02,
    "strict/toxic-output": 0.03,
}


def platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, c)`` of the Platt map ``p = sigmoid(a * logit + c)`` fitted on ``(logits, y)``.

    Unregularised (very large C) logistic regression on one feature: deterministic (lbfgs).
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, max_iter=1000, tol=1e-8)
    model.fit(np.asarray(logits, dtype=np.float64).reshape(-1, 1), np.asarray(y, dtype=np.int64))
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability table (equal-width bins) and expected calibration error of scores ``p``."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        if not n:
            continue
        mean_p, frac = float(p[m].mean()), float(y[m].mean())
        ece += n / len(p) * abs(mean_p - frac)
        table.append(
            {"bin": [float(edges[b]), float(edges[b + 1])], "n": n, "mean_score": mean_p, "toxic_share": frac}
        )
    return {"ece": ece, "n": len(p), "bins": table}


def threshold_for_macro_fpr(benign_scores: np.ndarray, kinds: Sequence[str], target: float) -> float:
    """Smallest threshold (2 decimals) at which the mean of the per-kind false-positive rates is
    at most ``target``: every kind of benign text counts the same, whatever its size.

    A rail flags ``score >= threshold``. Pooled (one kind), the reference would be mostly
    whichever kinds are plentiful: template identity sentences and QA answers, which almost
    never score high, outnumber short replies and counter-speech by ten to one, so a pooled 2 %
    allowed several times that on the kinds a guard gets wrong most. 0.99 when no threshold
    meets the target.

    Raises:
        ValueError: No scores, or not one kind per score.
    """
    s = np.asarray(benign_scores, dtype=np.float64)
    k = np.asarray(kinds)
    if not len(s) or len(k) != len(s):
        raise ValueError("need one kind per benign score, and at least one score")
    groups = [s[k == kind] for kind in sorted(set(k.tolist()))]
    for step in range(1, 100):
        t = step / 100
        # The tolerance: a mean of 2 % and 10 % is 6.000000000000001 % in floating point.
        if np.mean([(g >= t).mean() for g in groups]) <= target + 1e-12:
            return t
    return 0.99


def wilson(k: int, n: int) -> list[float]:
    """Wilson score 95 % interval for ``k`` of ``n``."""
    from rai_harness.stats.intervals import wilson as wilson_estimate

    est = wilson_estimate(k, n)
    return [float(est.ci_low or 0.0), float(est.ci_high if est.ci_high is not None else 1.0)]


def rates_by(
    groups: Sequence[str], y: np.ndarray, p: np.ndarray, threshold: float
) -> dict[str, dict[str, Any]]:
    """Flag rate at ``threshold`` per (group, label): ``fpr`` for benign cells, ``recall`` for toxic."""
    out: dict[str, dict[str, Any]] = {}
    g = np.asarray(groups)
    y, p = np.asarray(y), np.asarray(p)
    for name in sorted(set(g.tolist())):
        cell: dict[str, Any] = {}
        for label, key in ((0, "fpr"), (1, "recall")):
            m = (g == name) & (y == label)
            n = int(m.sum())
            if n:
                k = int((p[m] >= threshold).sum())
                cell[key] = {"rate": k / n, "k": k, "n": n, "ci95": wilson(k, n)}
        out[name] = cell
    return out


def summarize_kinds(rates: Mapping[str, Mapping[str, Any]], kinds: Sequence[str]) -> dict[str, Any] | None:
    """Pooled false-positive rate over ``kinds`` (``None`` when none of them is present)."""
    k = sum(rates[x]["fpr"]["k"] for x in kinds if x in rates and "fpr" in rates[x])
    n = sum(rates[x]["fpr"]["n"] for x in kinds if x in rates and "fpr" in rates[x])
    return {"rate": k / n, "k": k, "n": n, "ci95": wilson(k, n)} if n else None
