"""Paired comparisons: the same items under two conditions, and gaps between groups.

Provider A vs provider B on the same prompts, a run vs its baseline, group X vs group Y on
the same template: pairing removes the item-to-item variation from the comparison, so these
tests are far more sensitive than comparing two independent intervals.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import special

from rai_harness.stats.bootstrap import (
    StudentizedPivots,
    _as_finite_floats,
    _check_args,
    _cluster_ids,
    mean_with_draws,
    studentized_pivots,
)
from rai_harness.stats.estimate import Estimate

__all__ = [
    "GapResult",
    "McNemarResult",
    "PairedResult",
    "bootstrap_p_value",
    "max_pairwise_gap",
    "mcnemar",
    "paired_bootstrap_diff",
    "symmetric_studentized",
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
        gap: ``mean[high_group] − mean[low_group]`` with a simultaneous interval for the
            true largest gap (see :func:`max_pairwise_gap`).
        high_group: The group with the highest mean ("" when there is no shared template).
        low_group: The group with the lowest mean ("" when there is no shared template).
        group_means: Each group's mean over the shared templates, in input order.
    """

    gap: Estimate
    high_group: str
    low_group: str
    group_means: dict[str, float] = field(default_factory=dict)


def bootstrap_p_value(
    resampled: np.ndarray,
    units: int | None = None,
    *,
    value: float | None = None,
    se_t: bool = False,
) -> float:
    """Return the two-sided bootstrap p-value for "the statistic is 0".

    With the tail shares ``q₋ = (1 + #{θ*_b ≤ 0}) / (B + 1)`` and
    ``q₊ = (1 + #{θ*_b ≥ 0}) / (B + 1)`` and ``q = min(q₋, q₊)`` (the +1 counts the observed
    data as one resample, so p is never 0; Davison & Hinkley 1997, eq. 4.11):

    * ``units=None``: the plain percentile inversion, ``p = min(1, 2q)``.
    * ``units=u``: the inversion of the expanded percentile interval of
      :mod:`rai_harness.stats.bootstrap`, ``p = 2 · (1 − T_{u−1}(Φ⁻¹(1 − q) / sqrt(u/(u − 1))))``
      (1 when ``q ≥ 1/2``).
    * ``se_t=True`` (with ``units`` and ``value``): the inversion of the t interval with the
      bootstrap standard error, ``p = 2 · (1 − T_{u−1}(|θ̂| / (sqrt(u/(u − 1)) · sd(θ*))))``.

    In every case ``p < α`` exactly when the matching interval at level ``1 − α`` (with its
    order-statistic ends) excludes 0, up to floating-point rounding at the boundary.

    Args:
        resampled: The bootstrap distribution of the statistic.
        units: Number of resampled units (items, or clusters), or ``None`` for the plain
            percentile inversion.
        value: The statistic on the full data (needed with ``se_t``).
        se_t: Invert the t interval with the bootstrap standard error instead.

    Returns:
        The p-value, in (0, 1].

    Raises:
        ValueError: ``se_t`` without ``units`` and ``value``, or ``units < 2``.
    """
    b = len(resampled)
    if units is not None and units < 2:
        raise ValueError(f"units must be >= 2, got {units}")
    if se_t:
        if units is None or value is None:
            raise ValueError("se_t needs units and value")
        sd = float(np.std(resampled, ddof=1)) if b > 1 else 0.0
        if sd == 0.0:
            return 1.0 if value == 0.0 else 2.0 / (b + 1)
        stat = abs(value) / (float(np.sqrt(units / (units - 1.0))) * sd)
        return float(min(1.0, 2.0 * special.stdtr(units - 1, -stat)))
    low = (1 + int(np.count_nonzero(resampled <= 0.0))) / (b + 1)
    high = (1 + int(np.count_nonzero(resampled >= 0.0))) / (b + 1)
    q = min(low, high)
    if units is None:
        return float(min(1.0, 2.0 * q))
    return _expanded_p(q, units)


def _expanded_p(q: float, units: int) -> float:
    """The level ``α`` at which an end taken at the expanded level ``α'`` reaches tail share ``q``.

    Inverts ``α'/2 = q`` through :func:`~rai_harness.stats.expanded_alpha`:
    ``α = 2 · T_{u−1}(Φ⁻¹(q) / sqrt(u/(u − 1)))`` (1 when ``q ≥ 1/2``).
    """
    if q >= 0.5:
        return 1.0
    factor = float(np.sqrt(units / (units - 1.0)))
    return float(min(1.0, 2.0 * special.stdtr(units - 1, special.ndtri(q) / factor)))


def symmetric_studentized(pivots: StudentizedPivots, confidence: float) -> tuple[float, float, float] | None:
    """The symmetric bootstrap-t interval of a mean and the p-value that inverts it.

    With the bootstrap-t pivots ``t*_b`` of the mean (``θ̂``, ``se``), ``h`` the
    ``(B + 1 − j)``-th smallest ``|t*_b|`` and ``j = ⌈(B + 1) α⌉ − 1``, the interval is
    ``θ̂ ± h · se`` (Hall 1988: the symmetric percentile-t, whose two-sided coverage error is
    of order 1/n², the equal-tailed one's 1/n). It excludes 0 exactly when
    ``|t₀| = |θ̂| / se > h``, i.e. when fewer than ``j`` pivots have ``|t*_b| ≥ |t₀|``, so
    with ``p = (1 + #{|t*_b| ≥ |t₀|}) / (B + 1)`` (``t₀ = ±inf`` when ``se = 0 ≠ θ̂``; 1 when
    both are 0), ``p < α`` exactly when the interval excludes 0.

    Why symmetric for a difference: under the null of exchangeable pairs the differences are
    symmetric, and the skewness of a small sample of them is noise that goes with the sign of
    ``θ̂`` (one large difference moves both). The equal-tailed bootstrap-t of
    :func:`~rai_harness.stats.bootstrap.studentized_mean`, which follows that skewness,
    rejected a true null 9-10% of the time on differences of negative-binomial counts and
    log-normal values at n = 30 (nominal 5%); the symmetric one 3-4%
    (``benchmarks/coverage.py``).

    Reference: P. Hall (1988), "Theoretical comparison of bootstrap confidence intervals",
    Annals of Statistics 16(3):927-953, §3.

    Args:
        pivots: The bootstrap-t distribution of the mean.
        confidence: Nominal coverage ``1 − α``.

    Returns:
        ``(low, high, p)``, or ``None`` when B is too small for the level or ``h`` is infinite
        (more than ``j − 1`` resamples of one repeated value).
    """
    b = len(pivots.ordered)
    j = math.ceil((b + 1) * (1.0 - confidence)) - 1
    if j < 1:
        return None
    magnitudes = np.sort(np.abs(pivots.ordered))
    half = float(magnitudes[b - j])
    if not math.isfinite(half):
        return None
    mean, se = pivots.mean, pivots.se
    # se = 0: every difference is the same; t0 is infinite unless that difference is 0.
    t0 = abs(mean) / se if se > 0.0 else (0.0 if mean == 0.0 else math.inf)
    # #{|t*| >= |t0|} by binary search on the sorted magnitudes.
    beyond = b - int(np.searchsorted(magnitudes, t0, side="left"))
    width = half * se if se > 0.0 else 0.0
    return mean - width, mean + width, min(1.0, (1 + beyond) / (b + 1))


def paired_bootstrap_diff(
    a: Sequence[float] | npt.NDArray[np.float64],
    b: Sequence[float] | npt.NDArray[np.float64],
    *,
    clusters: Sequence[Hashable] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    unbounded: bool | None = None,
) -> PairedResult:
    """Estimate the mean paired difference ``a − b`` with a (cluster) bootstrap and a p-value.

    ``a[i]`` and ``b[i]`` are the same item under two conditions. With ``dᵢ = aᵢ − bᵢ`` the
    point is ``d̄``; the interval resamples items (or whole clusters of items, e.g.
    templates), and the p-value inverts that interval, so ``p < 1 − confidence`` exactly
    when the interval excludes 0 (by construction; up to floating-point rounding at the
    boundary). Which interval follows the rule of :func:`~rai_harness.stats.bootstrap_mean`:

    * Scores, shares and rates (``a`` and ``b`` within [−1, 1]): the expanded percentile
      interval of ``d̄*``, exactly :func:`bootstrap_mean`'s, and :func:`bootstrap_p_value` of
      the same draws. The plain percentile test rejected a true null 11.7% of the time at
      n = 10 (nominal 5%); this one stays at about 5%.
    * Unbounded values (``unbounded``, or by default ``a`` or ``b`` not within [−1, 1]:
      counts, latencies, costs): the symmetric studentized bootstrap (bootstrap-t) of ``d̄``
      over items or clusters, from the pivots :func:`~rai_harness.stats.bootstrap.studentized_mean`
      draws, here of the differences, and its p-value (:func:`symmetric_studentized`: symmetric
      because differences of exchangeable pairs are; the equal-tailed ends of
      ``studentized_mean`` follow the sample's skewness, which for differences is noise, and
      rejected 9-10% at n = 30). The expanded percentile test rejected a true null up to
      7.6% of the time on heavy-tailed (log-normal) differences at n = 30 and 6.5% on
      differences of overdispersed counts (nominal 5%); this one 1-5% (conservative at
      n ≤ 10 on skewed shapes). Differences are not counts (they can be negative), so no
      count interval; where resamples of one repeated difference make the interval infinite
      (mostly tied differences), the expanded percentile interval and its p-value are used
      and the note says so.

    Coverage, type-I error and power at n = 8-100: ``benchmarks/coverage.py``.

    References: T. C. Hesterberg (2015), The American Statistician 69(4):371-386, §4.3;
    A. C. Davison & D. V. Hinkley (1997), *Bootstrap Methods and their Application*, §3.8,
    §4.4 and §5.2.1; P. Hall (1988), Annals of Statistics 16(3):927-953 (symmetric
    bootstrap-t).

    Args:
        a: Values under the first condition.
        b: Values under the second condition, same length and order as ``a``.
        clusters: Optional cluster label (e.g. template id) per pair.
        n_resamples: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Nominal coverage, in (0, 1).
        unbounded: Whether the values are an unbounded quantity (a count or cost per item).
            ``None`` decides from the data: ``a`` or ``b`` outside [−1, 1].

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
    diff = arr_a - arr_b
    if unbounded is None:
        unbounded = not (bool(np.all(np.abs(arr_a) <= 1.0)) and bool(np.all(np.abs(arr_b) <= 1.0)))
    fallback: str | None = None
    if unbounded and len(diff) >= 2:
        _check_args(n_resamples, confidence)
        ids: npt.NDArray[np.intp] | None = None
        k = len(diff)
        if clusters is not None:
            ids, k = _cluster_ids(clusters, len(diff))
        pivots = studentized_pivots(diff, ids, k, n_resamples, seed, confidence) if k >= 2 else None
        symmetric = symmetric_studentized(pivots, confidence) if pivots is not None else None
        if pivots is not None and symmetric is not None:
            low, high, p_symmetric = symmetric
            est = Estimate(
                value=pivots.mean,
                ci_low=low,
                ci_high=high,
                n=len(diff),
                n_clusters=None if ids is None else k,
                method=(
                    "symmetric-studentized-bootstrap"
                    if ids is None
                    else "symmetric-studentized-cluster-bootstrap"
                ),
                confidence=confidence,
            )
            return PairedResult(estimate=est, p_value=p_symmetric, n=len(diff))
        if pivots is not None:
            fallback = "studentized interval unbounded (resamples of one repeated difference): percentile"
    est, draws = mean_with_draws(
        diff,
        clusters=clusters,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        name="a - b",
    )
    if fallback is not None:
        est = est.model_copy(update={"note": "; ".join(x for x in (fallback, est.note) if x)})
    p_value: float | None = None
    if draws is not None and est.value is not None:
        units = est.n_clusters if est.n_clusters is not None else est.n
        p_value = bootstrap_p_value(draws, units, value=est.value, se_t=est.method.endswith("se-t"))
    return PairedResult(estimate=est, p_value=p_value, n=len(arr_a))


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """McNemar's test: do paired binary outcomes ``a`` and ``b`` have the same success rate?

    Only the discordant pairs carry information: ``b01`` (a false, b true) and ``b10``
    (a true, b false), ``m = b01 + b10``. Under the null each discordant pair is equally
    likely either way, ``b01 ~ Binomial(m, 1/2)``.

    * ``m < 25``: exact two-sided binomial test on ``b01`` (what ``scipy.stats.binomtest`` gives);
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
        # Exact two-sided binomial test at p = 1/2: symmetric, so twice the smaller tail.
        p = 2.0 * special.bdtr(min(b01, b10), m, 0.5)
        return McNemarResult(
            b01=b01,
            b10=b10,
            statistic=float(min(b01, b10)),
            p_value=min(1.0, float(p)),
            method="exact",
            n=len(a),
        )
    chi2 = (abs(b01 - b10) - 1) ** 2 / m
    p = special.chdtrc(1, chi2)
    return McNemarResult(
        b01=b01, b10=b10, statistic=float(chi2), p_value=float(p), method="chi-square", n=len(a)
    )


def _value_step(table: np.ndarray, width: float) -> float:
    """The smallest gap between two distinct values of ``table`` (its grid step: 1 for 0/1
    outcomes, 1/k for rates of k replies), at most ``width``; ``width`` when all are equal."""
    steps = np.diff(np.unique(table))
    steps = steps[steps > 1e-9 * width]  # rounding noise between equal rates is not a step
    return min(float(steps.min()), width) if len(steps) else width


def max_pairwise_gap(
    values_by_group: Mapping[str, Mapping[Hashable, float]],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    value_range: tuple[float, float] | None = None,
    value_step: float | None = None,
) -> GapResult:
    """The largest gap between group means over shared templates, with a simultaneous interval.

    Counterfactual fairness: each group maps template id → that group's value on the
    template (e.g. mean toxicity of the completions of the template filled with the
    group's term). Only templates present for every group are used (the others are
    counted in the note). With ``m_g`` the mean of group g over the T shared templates:

    ``gap = max_g m_g − min_g m_g = m_high − m_low``

    Interval for the true largest gap ``θ = max_g μ_g − min_g μ_g`` (``method="sidak-t"``):
    for every pair of groups, ``D_gh`` is the mean over templates of the paired differences
    ``d_t = v_g,t − v_h,t`` and ``w_gh = t_{T−1}(1 − α_K/2) · sd(d) / sqrt(T)`` the half-width
    of its t interval at the Šidák level ``α_K = 1 − (1 − α)^(1/K)`` for K pairs, so that
    all K intervals hold together with probability ≥ 1 − α. Then

    ``θ ∈ [max(0, max_gh (|D_gh| − w_gh)), max_gh (|D_gh| + w_gh)]``

    because θ is the largest ``|μ_g − μ_h|`` and each of those lies within its interval. A
    lower bound above 0 is a significant gap with the family-wise error held at α (re-taking
    the max over groups in each bootstrap resample, or fixing the extreme pair and
    bootstrapping it, is biased: the extreme pair of a sample overstates its gap). With two
    groups this is the paired t interval; with more it is wider by design (Šidák is
    conservative for positively correlated pairs).

    **Bounded values** (``value_range`` given, e.g. rates): a rate that is rarely above 0 gives
    paired differences that are all 0 in a small sample, sd 0 and a zero-width interval at
    [0, 0]: with 8 templates and one group toxic on 30% of them, that happens 6% of the time,
    and a gate reading ``ci_high`` would then pass a true gap of 0.3. So each pair's variance
    gets one more squared deviation of one step ``s``, the smallest change a value can make
    (``value_step``: 1 for 0/1 outcomes, 1/k for rates of k replies; when not given, the
    smallest gap between two distinct values in the table, or the range's width when all are
    equal), as if one more template had differed from the mean by that much. It is the
    pseudo-observation idea of Agresti and Min (2005) for matched proportions, applied to the
    variance only, so the centre stays the observed mean:

    ``ṽ = (Σ(d − D)² + s²) / (T − 1)``, ``w = t_{T−1}(1 − α_K/2) · sqrt(ṽ / T)``.

    The interval is never narrower than the plain t interval, and nothing seen still leaves
    room for a gap of about one step over the templates. Without a range nothing bounds an
    unseen difference, and the plain t interval is used. Coverage and
    false-alarm rates at 4 to 100 templates, sparse 0/1 outcomes included, are measured in
    ``benchmarks/coverage.py``.

    References: Z. Šidák (1967), "Rectangular confidence regions for the means of
    multivariate normal distributions", JASA 62(318):626-633; J. W. Tukey (1953), *The
    Problem of Multiple Comparisons*; A. Agresti and Y. Min (2005), "Simple improved
    confidence intervals for comparing matched proportions", Statistics in Medicine
    24(5):729-740.

    Args:
        values_by_group: Group name → (template id → that group's value on the template).
        n_resamples: Unused (the interval is analytic); kept so callers need not change.
        seed: Unused, as ``n_resamples``.
        confidence: Nominal simultaneous coverage, in (0, 1).
        value_range: The range the values can take (e.g. ``(0, 1)`` for rates), when known:
            the intervals get the variance floor above, and the upper bound is clipped to the
            range's width, which no gap can exceed.
        value_step: With ``value_range``: the smallest change a value can make (1/k for rates
            of k replies; with unequal k, 1/max k). Default: inferred from the values, which
            cannot tell a rate of 6 replies that were all 0 from a 0/1 outcome.

    Returns:
        A :class:`GapResult`; ``gap`` has ``n`` = number of shared templates. With no
        shared template, ``gap`` is :meth:`Estimate.empty`, the group names are "" and
        ``group_means`` is empty. With one shared template there is no interval.

    Raises:
        ValueError: Fewer than two groups, a NaN or infinite value, ``confidence`` not in
            (0, 1), a value outside ``value_range``, an empty range or a step outside it.
    """
    del n_resamples, seed  # analytic interval; the arguments stay for API stability
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
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
    if value_range is not None:
        width = float(value_range[1] - value_range[0])
        if not width > 0:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        if table.min() < value_range[0] or table.max() > value_range[1]:
            raise ValueError(
                f"a value lies outside value_range {value_range}: {table.min()} .. {table.max()}"
            )
        if value_step is not None and not 0 < value_step <= width:
            raise ValueError(f"value_step must be in (0, {width}], got {value_step}")
    means = table.mean(axis=1)
    order = np.argsort(means, kind="stable")
    lo, hi = int(order[0]), int(order[-1])
    gap_value = float(means[hi] - means[lo])
    n_templates = len(shared)
    notes: list[str] = []
    if n_templates < 2:
        notes.append("interval undefined: one template")
        gap = Estimate(value=gap_value, n=n_templates, confidence=confidence)
    else:
        upper_idx = np.triu_indices(len(groups), 1)
        diffs = (table[:, None, :] - table[None, :, :])[upper_idx]  # K pairs x T templates
        k = len(diffs)
        alpha_k = 1.0 - confidence ** (1.0 / k)
        t_crit = float(special.stdtrit(n_templates - 1, 1.0 - alpha_k / 2.0))
        if value_range is None:
            half = t_crit * diffs.std(axis=1, ddof=1) / np.sqrt(n_templates)
            abs_mean = np.abs(diffs.mean(axis=1))
            adjusted = ""
        else:
            step = value_step if value_step is not None else _value_step(table, width)
            centre = diffs.mean(axis=1)
            squares = np.square(diffs - centre[:, None]).sum(axis=1)
            half = t_crit * np.sqrt((squares + step * step) / (n_templates - 1) / n_templates)
            abs_mean = np.abs(centre)
            adjusted = f", variance floored at one step ({step:.3g})"
        low = max(0.0, float(np.max(abs_mean - half)))
        high = float(np.max(abs_mean + half))
        if value_range is not None:
            high = min(high, float(value_range[1] - value_range[0]))
        notes.append(
            f"interval: largest gap over {len(groups)} groups and {n_templates} shared templates, "
            f"simultaneous (Šidák) paired t intervals for all {k} pairs{adjusted}"
        )
        gap = Estimate(
            value=gap_value,
            ci_low=min(low, gap_value),
            ci_high=max(high, gap_value),
            n=n_templates,
            method="sidak-t",
            confidence=confidence,
        )
    if missing_note:
        notes.append(missing_note)
    gap = gap.model_copy(update={"note": "; ".join(notes) or None})
    return GapResult(
        gap=gap,
        high_group=groups[hi],
        low_group=groups[lo],
        group_means={g: float(m) for g, m in zip(groups, means, strict=True)},
    )
