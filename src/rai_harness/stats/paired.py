"""Paired comparisons: the same items under two conditions, and gaps between groups.

Provider A vs provider B on the same prompts, a run vs its baseline, group X vs group Y on
the same template: pairing removes the item-to-item variation from the comparison, so these
tests are far more sensitive than comparing two independent intervals.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from rai_harness.stats.bootstrap import _as_finite_floats, mean_with_draws
from rai_harness.stats.estimate import Estimate

__all__ = [
    "GapResult",
    "McNemarResult",
    "PairedResult",
    "bootstrap_p_value",
    "max_pairwise_gap",
    "mcnemar",
    "paired_bootstrap_diff",
]

# Below this many discordant pairs McNemar's test is computed exactly (binomial).
_EXACT_BELOW = 25


@dataclass(frozen=True)
class PairedResult:
    """A paired difference and its test.

    Attributes:
        estimate: The mean difference ``a − b`` with its bootstrap interval.
        p_value: Two-sided p-value for "mean difference = 0", or ``None`` when there is no
            interval (no pairs, one pair, one cluster).
        n: Number of pairs.
    """

    estimate: Estimate
    p_value: float | None
    n: int


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired binary outcomes.

    Attributes:
        b01: Pairs where ``a`` is false and ``b`` is true.
        b10: Pairs where ``a`` is true and ``b`` is false.
        statistic: ``min(b01, b10)`` for the exact test; ``(|b01 − b10| − 1)² / (b01 + b10)``
            for the chi-square test.
        p_value: Two-sided p-value for "a and b have the same success rate"; 1.0 when there
            are no discordant pairs.
        method: ``"exact"`` (binomial) or ``"chi-square"`` (with continuity correction).
        n: Number of pairs.
    """

    b01: int
    b10: int
    statistic: float
    p_value: float
    method: str
    n: int = 0


@dataclass(frozen=True)
class GapResult:
    """The largest gap between group means, for counterfactual fairness.

    Attributes:
        gap: ``mean[high_group] − mean[low_group]`` with its paired bootstrap interval.
        high_group: The group with the highest mean ("" when there is no shared template).
        low_group: The group with the lowest mean ("" when there is no shared template).
        group_means: Each group's mean over the shared templates, in input order.
    """

    gap: Estimate
    high_group: str
    low_group: str
    group_means: dict[str, float] = field(default_factory=dict)


def bootstrap_p_value(resampled: np.ndarray) -> float:
    """Return the two-sided bootstrap p-value for "the statistic is 0".

    ``p = min(1, 2 · min((1 + #{θ*_b ≤ 0}) / (B + 1), (1 + #{θ*_b ≥ 0}) / (B + 1)))``:
    twice the smaller tail share of the B resampled statistics on either side of zero
    (the percentile-interval inversion: p < α exactly when the percentile interval at
    level 1 − α excludes 0). The +1 in numerator and denominator counts the observed data
    as one resample, so the p-value is never exactly 0: with B resamples it cannot be
    resolved below 2 / (B + 1) (Davison & Hinkley 1997, eq. 4.11).

    Args:
        resampled: The bootstrap distribution of the statistic.

    Returns:
        The p-value, in (0, 1].
    """
    b = len(resampled)
    low = (1 + int(np.count_nonzero(resampled <= 0.0))) / (b + 1)
    high = (1 + int(np.count_nonzero(resampled >= 0.0))) / (b + 1)
    return float(min(1.0, 2.0 * min(low, high)))


def paired_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    *,
    clusters: Sequence[Hashable] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedResult:
    """Estimate the mean paired difference ``a − b`` with a (cluster) bootstrap and a p-value.

    ``a[i]`` and ``b[i]`` are the same item under two conditions. With ``dᵢ = aᵢ − bᵢ`` the
    point is ``d̄``; the interval is the percentile bootstrap of ``d̄`` over items (or over
    whole clusters of items, e.g. templates), exactly :func:`bootstrap_mean` of ``d``. The
    p-value is :func:`bootstrap_p_value` of the resampled ``d̄*``:
    ``min(1, 2 · min(share of d̄* ≤ 0, share of d̄* ≥ 0))`` with each share counted as
    ``(1 + count) / (B + 1)``.

    References: B. Efron & R. J. Tibshirani (1993), *An Introduction to the Bootstrap*,
    ch. 13 and 16; A. C. Davison & D. V. Hinkley (1997), *Bootstrap Methods and their
    Application*, §3.8 and §4.4.

    Args:
        a: Values under the first condition.
        b: Values under the second condition, same length and order as ``a``.
        clusters: Optional cluster label (e.g. template id) per pair.
        n_resamples: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Nominal coverage, in (0, 1).

    Returns:
        A :class:`PairedResult`; ``p_value`` is ``None`` when there is no interval.

    Raises:
        ValueError: ``a`` and ``b`` differ in length, contain NaN or infinity, or the
            bootstrap arguments are invalid.
    """
    arr_a = _as_finite_floats(a, "a")
    arr_b = _as_finite_floats(b, "b")
    if len(arr_a) != len(arr_b):
        raise ValueError(f"a and b must have the same length, got {len(arr_a)} and {len(arr_b)}")
    est, draws = mean_with_draws(
        arr_a - arr_b,
        clusters=clusters,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        name="a - b",
    )
    p_value = None if draws is None else bootstrap_p_value(draws)
    return PairedResult(estimate=est, p_value=p_value, n=len(arr_a))


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """McNemar's test: do paired binary outcomes ``a`` and ``b`` have the same success rate?

    Only the discordant pairs carry information: ``b01`` (a false, b true) and ``b10``
    (a true, b false), ``m = b01 + b10``. Under the null each discordant pair is equally
    likely either way, ``b01 ~ Binomial(m, 1/2)``.

    * ``m < 25``: exact two-sided binomial test on ``b01`` (``scipy.stats.binomtest``);
      ``statistic = min(b01, b10)``, ``method = "exact"``.
    * ``m ≥ 25``: chi-square with continuity correction,
      ``χ² = (|b01 − b10| − 1)² / m`` on 1 degree of freedom, ``method = "chi-square"``.
    * ``m = 0``: nothing to test; ``p_value = 1.0``, ``statistic = 0``, ``method = "exact"``.

    Reference: Q. McNemar (1947), "Note on the sampling error of the difference between
    correlated proportions or percentages", Psychometrika 12(2):153-157.

    Args:
        a: Outcome per item under the first condition.
        b: Outcome per item under the second condition, same length and order.

    Returns:
        A :class:`McNemarResult`.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length, got {len(a)} and {len(b)}")
    b01 = sum(1 for x, y in zip(a, b, strict=True) if not x and y)
    b10 = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    m = b01 + b10
    if m == 0:
        return McNemarResult(b01=0, b10=0, statistic=0.0, p_value=1.0, method="exact", n=len(a))
    if m < _EXACT_BELOW:
        p = sps.binomtest(b01, m, 0.5, alternative="two-sided").pvalue
        return McNemarResult(
            b01=b01,
            b10=b10,
            statistic=float(min(b01, b10)),
            p_value=min(1.0, float(p)),
            method="exact",
            n=len(a),
        )
    chi2 = (abs(b01 - b10) - 1) ** 2 / m
    p = sps.chi2.sf(chi2, df=1)
    return McNemarResult(
        b01=b01, b10=b10, statistic=float(chi2), p_value=float(p), method="chi-square", n=len(a)
    )


def max_pairwise_gap(
    values_by_group: Mapping[str, Mapping[Hashable, float]],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> GapResult:
    """The largest gap between group means over shared templates, with a paired bootstrap interval.

    Counterfactual fairness: each group maps template id → that group's value on the
    template (e.g. mean toxicity of the completions of the template filled with the
    group's term). Only templates present for every group are used (the others are
    counted in the note). With ``m_g`` the mean of group g over the T shared templates:

    ``gap = max_g m_g − min_g m_g = m_high − m_low``

    Interval: a paired bootstrap over templates. Each resample draws T template ids with
    replacement and recomputes the means of the two groups *identified on the full data*
    on that same resample; the interval is the percentile interval of
    ``m*_high − m*_low`` (the bootstrap of the mean of ``d_t = v_high,t − v_low,t``).
    The pair is fixed because re-taking the max over groups in each resample is biased
    upward (the maximum of noisy gaps exceeds the true maximum gap, and never falls below
    zero even when all groups are equal); the note says so. The gap is between the two
    groups that were extreme in this sample, so it can still overstate the true gap when
    many groups are close.

    References: A. C. Davison & D. V. Hinkley (1997), *Bootstrap Methods and their
    Application*, §3.8; B. Efron & R. J. Tibshirani (1993), *An Introduction to the
    Bootstrap*, ch. 13.

    Args:
        values_by_group: Group name → (template id → that group's value on the template).
        n_resamples: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Nominal coverage, in (0, 1).

    Returns:
        A :class:`GapResult`; ``gap`` has ``n`` = number of shared templates. With no
        shared template, ``gap`` is :meth:`Estimate.empty`, the group names are "" and
        ``group_means`` is empty.

    Raises:
        ValueError: Fewer than two groups, a NaN or infinite value, or invalid bootstrap
            arguments.
    """
    groups = list(values_by_group)
    if len(groups) < 2:
        raise ValueError(f"max_pairwise_gap needs at least two groups, got {len(groups)}")
    # Shared templates in the first group's order: deterministic, unlike set iteration.
    first = values_by_group[groups[0]]
    others = [values_by_group[g] for g in groups[1:]]
    shared = [t for t in first if all(t in o for o in others)]
    all_templates: set[Hashable] = set()
    for g in groups:
        all_templates.update(values_by_group[g])
    n_missing = len(all_templates) - len(shared)
    missing_note = (
        f"{n_missing} template(s) missing for at least one group were ignored" if n_missing else None
    )
    if not shared:
        note = "no template shared by all groups"
        if missing_note:
            note += f"; {missing_note}"
        return GapResult(gap=Estimate.empty(note), high_group="", low_group="", group_means={})

    table = np.array(
        [_as_finite_floats([values_by_group[g][t] for t in shared], f"values of group {g!r}") for g in groups]
    )
    means = table.mean(axis=1)
    order = np.argsort(means, kind="stable")
    lo, hi = int(order[0]), int(order[-1])
    diffs = table[hi] - table[lo]
    est, _ = mean_with_draws(
        diffs,
        clusters=None,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        name="gap",
    )
    gap_value = float(means[hi] - means[lo])
    notes = [] if est.note is None else [est.note]
    if est.ci_low is not None:
        notes.append(
            f"interval: paired bootstrap over {len(shared)} shared templates of the gap between "
            f"{groups[hi]!r} and {groups[lo]!r}, the pair identified on the full data and held fixed "
            "(the max-over-groups gap is biased upward)"
        )
    if missing_note:
        notes.append(missing_note)
    gap = est.model_copy(update={"value": gap_value, "note": "; ".join(notes) or None})
    return GapResult(
        gap=gap,
        high_group=groups[hi],
        low_group=groups[lo],
        group_means={g: float(m) for g, m in zip(groups, means, strict=True)},
    )
