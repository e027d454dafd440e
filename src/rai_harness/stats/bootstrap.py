"""Seeded bootstrap intervals, plain or clustered, for any statistic and for means.

Both functions draw their resamples the same way (``numpy.random.default_rng(seed)``,
``integers(0, units)`` row by row, one row per resample), so for the same data, clusters and
seed :func:`bootstrap_mean` returns the same interval as ``bootstrap(values, np.mean)``, only
much faster.

**Which interval.** The plain percentile interval is too narrow at the sizes evals have (8
templates, 10 items): its spread is the plug-in standard error, biased down by
``sqrt((u − 1)/u)``, and it uses normal instead of t quantiles; it covers ~88% at u = 8 for
a nominal 95%. We use the **expanded percentile interval** (Hesterberg 2015): the
percentile interval at the level ``α'`` whose normal quantile equals the small-sample t
quantile, ``Φ⁻¹(1 − α'/2) = sqrt(u/(u − 1)) · t_{u−1}(1 − α/2)``, with u the number of
resampled units (items, or clusters). It keeps the percentile interval's shape (skewness,
bounds of the statistic) and has about nominal coverage from u = 8 up (``benchmarks/coverage.py``
measures it). ``Estimate.method`` is ``"expanded-bootstrap"`` or
``"expanded-cluster-bootstrap"``.

**Unbounded means.** The expanded percentile interval keeps the bootstrap distribution's
shape, and for a right-skewed, unbounded quantity (counts, latencies, costs) that shape is
itself too short on the long side: it covers 91% at n = 8-10 and 92.7% at n = 30 on
exponential data, 85% on log-normal (σ = 1) data at n = 8. :func:`bootstrap_mean` of values
that are not all within [−1, 1] (or that the caller marks ``unbounded``, as pii.emission marks
its findings per output) therefore uses the **studentized bootstrap** (bootstrap-t; Efron &
Tibshirani 1993, §12.5; Davison & Hinkley 1997, §5.2.1), over items or over clusters
(:func:`studentized_mean`): the pivot ``t* = (θ* − θ̂)/se*`` is resampled along with the mean,
``se`` the cluster-robust standard error of the mean. At the nominal level on both ends it
still covered only 90.8% on log-normal (σ = 1) data at n = 8 and 88% on overdispersed counts
with many zeros: a small sample rarely holds the long tail, so the bootstrap underestimates
it. The end on the long side (above the mean for right-skewed data) is therefore taken at the
expanded level ``α'`` (wider, and back to ``α`` as n grows), and counts (non-negative
integers) get at least a quasi-Poisson interval, so eight zero counts give ``[0, 0.65]``
rather than ``[0, 0]``. Chosen by simulation over exponential, log-normal (σ = 0.5, 1),
Poisson, negative-binomial and zero-inflated counts, independent and clustered, at n = 6-100
(``benchmarks/coverage.py``): 93-97% or above (wider by design on the milder shapes at n ≤ 10,
up to 99% on sparse counts at n = 8); ``method`` ``"studentized-bootstrap"`` or
``"studentized-cluster-bootstrap"``. Values within [−1, 1] (scores, shares and rates in [0, 1],
and differences of two such scores: every other suite's per-item means) keep the expanded
percentile interval, which covers 93-97% there, never leaves the range of the data, and is
stable on tied values, where a studentized resample of one repeated value has ``se* = 0`` and
an infinite pivot. When that happens to unbounded values that are not counts, the expanded
percentile interval is used and the note says so.

With very few units (u ≤ 4 at B = 2000) ``α'/2`` is below the resolution ``1/(B + 1)`` of the
resamples; the interval is then the **t interval with the bootstrap standard error**,
``θ̂ ± sqrt(u/(u − 1)) · t_{u−1}(1 − α/2) · sd(θ̂*)``, which can reach beyond the resampled
range as it should (``method`` ``"bootstrap-se-t"`` or ``"cluster-bootstrap-se-t"``).

Interval ends are order statistics ``θ*_(j)`` and ``θ*_(B+1−j)`` with
``j = ⌈(B + 1) α'/2⌉ − 1`` (Davison & Hinkley 1997, §5.2.1), the convention under which
:func:`~rai_harness.stats.bootstrap_p_value` is below α exactly when the interval at level
``1 − α`` excludes 0.

References: T. C. Hesterberg (2015), "What teachers should know about the bootstrap",
The American Statistician 69(4):371-386, §4.3 (expanded percentile interval); A. C. Davison
& D. V. Hinkley (1997), *Bootstrap Methods and their Application*, §3.8, §5.2; B. Efron &
R. J. Tibshirani (1993), *An Introduction to the Bootstrap*, §12.5 (bootstrap-t); W. G.
Cochran (1977), *Sampling Techniques*, §6.4 (variance of a ratio mean over clusters);
F. Garwood (1936), Biometrika 28(3/4):437-442 (Poisson limits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from scipy import special

from rai_harness.stats.estimate import Estimate
from rai_harness.stats.intervals import clopper_pearson, exact_bounds

__all__ = ["bootstrap", "bootstrap_mean", "expanded_alpha", "studentized_mean"]

T = TypeVar("T")

# Largest number of drawn indices materialised at once (rows x units), to bound memory.
_CHUNK_ELEMENTS = 1 << 21


def _check_args(n_resamples: int, confidence: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _cluster_ids(clusters: Sequence[Hashable], n: int) -> tuple[npt.NDArray[np.intp], int]:
    """Map cluster labels to 0..k-1 in order of first appearance (deterministic across runs)."""
    if len(clusters) != n:
        raise ValueError(f"clusters has {len(clusters)} labels for {n} items")
    index: dict[Hashable, int] = {}
    ids = np.fromiter((index.setdefault(c, len(index)) for c in clusters), dtype=np.intp, count=n)
    return ids, len(index)


def _draws(rng: np.random.Generator, units: int, n_resamples: int) -> Iterator[npt.NDArray[np.int64]]:
    """Yield blocks of resampled unit indices, ``n_resamples`` rows of ``units`` in all."""
    rows = max(1, _CHUNK_ELEMENTS // max(units, 1))
    done = 0
    while done < n_resamples:
        take = min(rows, n_resamples - done)
        yield rng.integers(0, units, size=(take, units))
        done += take


def expanded_alpha(confidence: float, units: int) -> float:
    """Return the two-sided level ``α'`` of the expanded percentile interval for ``u`` units.

    ``α' = 2 · (1 − Φ(sqrt(u/(u − 1)) · t_{u−1}(1 − α/2)))`` with ``α = 1 − confidence``:
    the percentile interval at level ``1 − α'`` is as wide, on normal data, as the t interval
    at ``1 − α`` with the unbiased standard error (Hesterberg 2015, §4.3).

    Args:
        confidence: Nominal coverage ``1 − α``, in (0, 1).
        units: Number of resampled units (items, or clusters), at least 2.

    Returns:
        ``α'``, below ``α``.

    Raises:
        ValueError: ``units < 2`` or ``confidence`` not in (0, 1).
    """
    if units < 2:
        raise ValueError(f"units must be >= 2, got {units}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    factor = math.sqrt(units / (units - 1.0))
    return float(2.0 * special.ndtr(-factor * special.stdtrit(units - 1, 1.0 - alpha / 2.0)))


def _order_index(alpha_prime: float, b: int) -> int:
    """``j = ⌈(B + 1) α'/2⌉ − 1``: the interval is ``θ*_(j), θ*_(B+1−j)`` (1-based); 0 = unresolved."""
    return max(0, math.ceil((b + 1) * alpha_prime / 2.0) - 1)


def _t_factor(confidence: float, units: int) -> float:
    """``sqrt(u/(u − 1)) · t_{u−1}(1 − α/2)``: half-width of the t interval in bootstrap SEs."""
    return math.sqrt(units / (units - 1.0)) * float(
        special.stdtrit(units - 1, 1.0 - (1.0 - confidence) / 2.0)
    )


def interval_from_draws(
    draws: npt.NDArray[np.float64], value: float, units: int, confidence: float
) -> tuple[float, float, bool]:
    """The interval of a bootstrap distribution: expanded percentile, or t with the bootstrap SE.

    Args:
        draws: The resampled statistics (finite).
        value: The statistic on the full data.
        units: Number of resampled units (items, or clusters), at least 2.
        confidence: Nominal coverage.

    Returns:
        ``(low, high, expanded)``: ``expanded`` is False when the level needed more resamples
        and the t interval with the bootstrap standard error was used instead. The interval
        always holds ``value``: a percentile interval of a biased statistic (``|mean|`` near
        0) can miss it, and a record whose value lies outside its own interval is refused as
        corrupt when read back (:meth:`~rai_harness.stats.Estimate`).
    """
    b = len(draws)
    j = _order_index(expanded_alpha(confidence, units), b)
    if j >= 1:
        ordered = np.sort(draws)
        return min(float(ordered[j - 1]), value), max(float(ordered[b - j]), value), True
    half = _t_factor(confidence, units) * float(np.std(draws, ddof=1)) if b > 1 else 0.0
    return value - half, value + half, False


def interval_method(clustered: bool, expanded: bool) -> str:
    """The :attr:`Estimate.method` name of a bootstrap interval."""
    if expanded:
        return "expanded-cluster-bootstrap" if clustered else "expanded-bootstrap"
    return "cluster-bootstrap-se-t" if clustered else "bootstrap-se-t"


def _se_t_note(units: int, b: int) -> str:
    return (
        f"{units} resampled units are too few for the expanded percentile interval with {b} "
        "resamples: t interval with the bootstrap standard error"
    )


def _as_finite_floats(
    values: Sequence[float] | npt.NDArray[np.float64], name: str
) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _one_unit_note(clustered: bool) -> str:
    return "interval undefined: one cluster" if clustered else "interval undefined: one item"


def resampled_means(
    values: npt.NDArray[np.float64],
    cluster_ids: npt.NDArray[np.intp] | None,
    n_clusters: int,
    n_resamples: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Return the bootstrap distribution of the mean, vectorised.

    Each unit (item, or cluster) is reduced to its sum and its count; a resample draws units
    with replacement and its mean is ``Σ sums[drawn] / Σ counts[drawn]``: the mean over all
    items of the drawn clusters (a ratio estimator when clusters differ in size).

    Args:
        values: Finite item values.
        cluster_ids: Cluster index (0..n_clusters-1) per item, or ``None`` for independent items.
        n_clusters: Number of clusters (ignored without ``cluster_ids``).
        n_resamples: Number of resamples.
        rng: The random generator (consumed exactly as :func:`bootstrap` consumes it).

    Returns:
        An array of ``n_resamples`` resampled means.
    """
    sums: npt.NDArray[np.float64]
    if cluster_ids is None:
        sums = values
        counts = np.ones_like(values)
    else:
        sums = np.bincount(cluster_ids, weights=values, minlength=n_clusters).astype(np.float64)
        counts = np.bincount(cluster_ids, minlength=n_clusters).astype(np.float64)
    out = np.empty(n_resamples, dtype=np.float64)
    done = 0
    for block in _draws(rng, len(sums), n_resamples):
        out[done : done + len(block)] = sums[block].sum(axis=1) / counts[block].sum(axis=1)
        done += len(block)
    return out


def mean_with_draws(
    values: Sequence[float] | npt.NDArray[np.float64],
    *,
    clusters: Sequence[Hashable] | None,
    n_resamples: int,
    seed: int,
    confidence: float,
    name: str = "values",
) -> tuple[Estimate, npt.NDArray[np.float64] | None]:
    """Compute :func:`bootstrap_mean` and also return the resampled means (``None`` if no interval).

    Shared by :func:`bootstrap_mean` and the paired tests, which need the resampled
    distribution for a p-value.

    Args:
        values: Item values.
        clusters: Cluster label per item, or ``None``.
        n_resamples: Number of resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Nominal coverage.
        name: Name of ``values`` in error messages.

    Returns:
        The estimate and the resampled means.
    """
    _check_args(n_resamples, confidence)
    arr = _as_finite_floats(values, name)
    n = len(arr)
    if n == 0:
        return Estimate.empty(), None
    value = float(arr.mean())
    ids: npt.NDArray[np.intp] | None = None
    k: int | None = None
    if clusters is not None:
        ids, k = _cluster_ids(clusters, n)
    units = n if k is None else k
    if units < 2:
        est = Estimate(
            value=value, n=n, n_clusters=k, confidence=confidence, note=_one_unit_note(k is not None)
        )
        return est, None
    means = resampled_means(arr, ids, units, n_resamples, np.random.default_rng(seed))
    low, high, expanded = interval_from_draws(means, value, units, confidence)
    est = Estimate(
        value=value,
        ci_low=low,
        ci_high=high,
        n=n,
        n_clusters=k,
        method=interval_method(k is not None, expanded),
        confidence=confidence,
        note=None if expanded else _se_t_note(units, n_resamples),
    )
    return est, means


def _unit_totals(
    values: npt.NDArray[np.float64], cluster_ids: npt.NDArray[np.intp] | None, n_clusters: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per resampled unit, the sum of its values and its number of items (1 each without clusters)."""
    if cluster_ids is None:
        return values, np.ones_like(values)
    sums = np.bincount(cluster_ids, weights=values, minlength=n_clusters).astype(np.float64)
    return sums, np.bincount(cluster_ids, minlength=n_clusters).astype(np.float64)


def _ratio_se(
    sums: npt.NDArray[np.float64], counts: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean ``Σ S / Σ N`` and its cluster-robust standard error, per row of unit totals.

    ``se² = k/(k − 1) · Σ_c (S_c − θ N_c)² / (Σ N)²`` (the linearised variance of a ratio
    mean, Cochran 1977 §6.4, with the small-sample factor); with one item per unit it is
    ``s²/n`` exactly. Works on 1-D (the data) and 2-D (one resample per row) arrays.
    """
    k = sums.shape[-1]
    total = counts.sum(axis=-1)
    theta = sums.sum(axis=-1) / total
    resid = sums - np.expand_dims(theta, -1) * counts
    se = np.sqrt(k / (k - 1.0) * np.square(resid).sum(axis=-1)) / total
    return theta, se


@dataclass(frozen=True)
class StudentizedPivots:
    """The bootstrap-t distribution of a mean, and the order statistics its interval uses.

    Shared by :func:`studentized_mean` and the paired test
    (:func:`~rai_harness.stats.paired_bootstrap_diff`), which inverts the same interval.

    Attributes:
        mean: ``θ̂``, the mean over all items.
        se: Its cluster-robust standard error (``s/√n`` for independent items).
        ordered: The ``B`` pivots ``t*_b = (θ*_b − θ̂) / se*_b``, sorted (``±inf`` for a
            resample of one repeated value that differs from the mean).
        right_skewed: Whether the units' residuals are right-skewed (``Σ r³ ≥ 0``): the end
            above the mean (low pivots) is then the long-tail end, at ``α'``.
        units: Number of resampled units (items, or clusters).
        j: Order index at the nominal level ``α`` (``⌈(B + 1) α/2⌉ − 1``, at least 1).
        j_long: Order index at the expanded level ``α'`` (at least 1), for the long-tail end.
    """

    mean: float
    se: float
    ordered: npt.NDArray[np.float64]
    right_skewed: bool
    units: int
    j: int
    j_long: int

    def interval(self) -> tuple[float, float]:
        """``[θ̂ − t*_(B+1−j) · se, θ̂ − t*_(j) · se]``, the long-tail end at ``j_long`` (may be infinite)."""
        b = len(self.ordered)
        if self.right_skewed:  # the upper end (low pivots) goes further
            t_low, t_high = float(self.ordered[self.j_long - 1]), float(self.ordered[b - self.j])
        else:
            t_low, t_high = float(self.ordered[self.j - 1]), float(self.ordered[b - self.j_long])
        # se = 0 (all values equal): every pivot is 0 and the interval is the point.
        return self.mean - t_high * self.se, self.mean - t_low * self.se


def studentized_pivots(
    values: npt.NDArray[np.float64],
    cluster_ids: npt.NDArray[np.intp] | None,
    n_clusters: int,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> StudentizedPivots | None:
    """Draw the bootstrap-t pivots of a mean (the resamples of :func:`bootstrap_mean`).

    Args:
        values: Finite item values.
        cluster_ids: Cluster index (0..n_clusters-1) per item, or ``None`` for independent items.
        n_clusters: Number of clusters (ignored without ``cluster_ids``).
        n_resamples: Number of resamples B.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Nominal coverage (sets the order indices).

    Returns:
        The pivots, or ``None`` with fewer than 2 units or B too small for the level ``α'``.
    """
    units = len(values) if cluster_ids is None else n_clusters
    sums, counts = _unit_totals(values, cluster_ids, n_clusters)
    b = n_resamples
    j = _order_index(1.0 - confidence, b)
    j_long = _order_index(expanded_alpha(confidence, units), b) if units >= 2 else 0
    if units < 2 or j_long < 1:
        return None
    mean, se = (float(v) for v in _ratio_se(sums, counts))
    pivots = np.empty(b, dtype=np.float64)
    done = 0
    for block in _draws(np.random.default_rng(seed), units, b):
        theta, spread = _ratio_se(sums[block], counts[block])
        diff = theta - mean
        with np.errstate(divide="ignore", invalid="ignore"):
            # A resample of one repeated value has no spread: its pivot is ±inf (0 when it
            # equals the mean, as every resample of constant data does).
            pivots[done : done + len(block)] = np.where(diff == 0.0, 0.0, diff / spread)
        done += len(block)
    resid = sums - mean * counts
    return StudentizedPivots(
        mean=mean,
        se=se,
        ordered=np.sort(pivots),
        right_skewed=float(np.sum(resid**3)) >= 0.0,
        units=units,
        j=j,
        j_long=j_long,
    )


def studentized_mean(
    values: npt.NDArray[np.float64],
    cluster_ids: npt.NDArray[np.intp] | None,
    n_clusters: int,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> Estimate | None:
    """The studentized bootstrap (bootstrap-t) interval of a mean, over items or clusters.

    Draws the same resamples as :func:`bootstrap_mean` (``default_rng(seed)``, one row of
    ``u`` unit indices per resample) and studentizes each: ``t*_b = (θ*_b − θ̂) / se*_b``,
    with ``θ`` the mean over all items of the drawn units and ``se`` its cluster-robust
    standard error (:func:`_ratio_se`; ``s/√n`` for independent items). The interval is
    ``[θ̂ − t*_(B+1−j) · se, θ̂ − t*_(j') · se]`` with ``j = ⌈(B + 1) α/2⌉ − 1`` and ``j'`` the
    same at the expanded level ``α'`` (:func:`expanded_alpha`): the end on the side of the
    long tail (above the mean when the units' residuals are right-skewed, as counts, costs
    and latencies are; mirrored otherwise) is taken further out. A small sample rarely holds
    the values of the long tail, so its bootstrap-t distribution is too short on that side:
    at the nominal level the interval covered 91% on log-normal (σ = 1) data at n = 8 and
    87% on overdispersed counts; ``α' → α`` as u grows (``benchmarks/coverage.py``).

    Non-negative integer values (counts) also get at least the quasi-Poisson interval
    (:func:`_count_interval`). A sample of counts that holds few non-zero values has
    resamples of one repeated value, whose pivot is infinite; there the bootstrap-t cannot
    bound the mean and the count interval does (eight zeros: [0, 0.65]).

    Args:
        values: Finite item values.
        cluster_ids: Cluster index (0..n_clusters-1) per item, or ``None`` for independent items.
        n_clusters: Number of clusters (ignored without ``cluster_ids``).
        n_resamples: Number of resamples B.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Nominal coverage.

    Returns:
        The estimate (``method`` ``"studentized-bootstrap"`` or
        ``"studentized-cluster-bootstrap"``), or ``None`` when the interval is not defined:
        fewer than 2 units or B too small for the level ``α'``, or, for values that are not
        counts, an infinite end (resamples of one repeated value, ``se* = 0``, in the tails).
    """
    pivots = studentized_pivots(values, cluster_ids, n_clusters, n_resamples, seed, confidence)
    if pivots is None:
        return None
    low, high = pivots.interval()
    mean, se, units = pivots.mean, pivots.se, pivots.units
    method = "studentized-bootstrap" if cluster_ids is None else "studentized-cluster-bootstrap"
    finite = math.isfinite(low) and math.isfinite(high)
    count_ci = _count_interval(values, mean, se, confidence, units)
    if count_ci is None:
        if not finite:
            return None
        note = None
    elif not finite:
        low, high = count_ci
        note = (
            "studentized interval unbounded (resamples of one repeated value): quasi-Poisson count interval"
        )
    else:
        note = (
            "widened to the quasi-Poisson count interval" if count_ci[0] < low or count_ci[1] > high else None
        )
        low, high = min(low, count_ci[0]), max(high, count_ci[1])
    return Estimate(
        value=mean,
        ci_low=low,
        ci_high=high,
        n=len(values),
        n_clusters=None if cluster_ids is None else n_clusters,
        method=method,
        confidence=confidence,
        note=note,
    )


def _count_interval(
    values: npt.NDArray[np.float64], mean: float, se: float, confidence: float, units: int
) -> tuple[float, float] | None:
    """The quasi-Poisson interval of a mean count, or ``None`` when the values are not counts.

    With ``N`` items, total ``S`` and dispersion ``φ = max(1, N · se² / θ̂)`` (1 for
    Poisson data, more for overdispersed or clustered counts), ``S/φ`` is treated as a
    Poisson count: ``[χ²_{α/2}(2S/φ) / 2, χ²_{1−α'/2}(2S/φ + 2) / 2] · φ / N`` (Garwood 1936;
    the lower end is 0 when ``S = 0``; the upper end, on the long tail, at the expanded level
    ``α'`` of ``units`` as the bootstrap-t's is). Reference: F. Garwood (1936), "Fiducial limits for
    the Poisson distribution", Biometrika 28(3/4):437-442.
    """
    if not (np.all(values >= 0.0) and np.all(values == np.floor(values))):
        return None
    n_items = len(values)
    phi = max(1.0, n_items * se * se / mean) if mean > 0.0 else 1.0
    total = float(values.sum()) / phi
    alpha = 1.0 - confidence
    low = 0.0 if total == 0.0 else float(special.gammaincinv(total, alpha / 2.0)) * phi / n_items
    # The upper end, on the long tail, at the expanded level as for the bootstrap-t above.
    tail = expanded_alpha(confidence, units) / 2.0
    high = float(special.gammaincinv(total + 1.0, 1.0 - tail)) * phi / n_items
    return low, high


def bootstrap_mean(
    values: Sequence[float] | npt.NDArray[np.float64],
    *,
    clusters: Sequence[Hashable] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    unbounded: bool | None = None,
    rate_like: bool = False,
) -> Estimate:
    """Estimate a mean with a seeded (cluster) bootstrap interval, vectorised.

    Point: ``x̄ = Σ xᵢ / n``. Interval: the expanded percentile interval of the means of
    ``B = n_resamples`` resamples (see the module docstring: order statistics at the level
    ``α'`` of :func:`expanded_alpha` for u units; the t interval with the bootstrap standard
    error when u is too small for B). Without ``clusters`` a resample
    draws n items with replacement. With ``clusters`` it draws the k clusters with
    replacement and takes the mean over all items of the drawn clusters,
    ``Σ_c S_c / Σ_c n_c`` (cluster sums over cluster sizes), so items that share a template
    stay together and within-template correlation widens the interval as it should.

    Independent 0/1 values (no ``clusters``) are a binomial proportion and get the exact
    :func:`~rai_harness.stats.clopper_pearson` interval instead: a bootstrap of 0 successes
    has zero width. Clustered 0/1 values keep the cluster bootstrap, widened where it is
    narrower to the Clopper-Pearson interval at Korn and Graubard's effective sample size
    (:func:`_effective_n`). Values of an unbounded quantity (counts, latencies, costs: ``unbounded``,
    or by default values not all within [−1, 1]) get the studentized bootstrap over items or
    clusters (:func:`studentized_mean`; see the module docstring: the percentile shape
    under-covers a skewed mean there), with at least the quasi-Poisson interval for counts.
    Otherwise the same draws as :func:`bootstrap`:
    ``bootstrap(values, np.mean, ...)`` with the same seed gives the same interval up to
    floating-point rounding.

    References: T. C. Hesterberg (2015), The American Statistician 69(4):371-386, §4.3
    (expanded percentile interval); A. C. Davison & D. V. Hinkley (1997), *Bootstrap Methods
    and their Application*, §3.8 (resampling clusters); C. A. Field & A. H. Welsh (2007),
    "Bootstrapping clustered data", JRSS B 69(3):369-390.

    Args:
        values: Finite item values (NaN or infinity raise).
        clusters: Optional cluster label (e.g. template id) per item.
        n_resamples: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Nominal coverage, in (0, 1).
        unbounded: Whether the values are an unbounded quantity (a count or cost per item).
            ``None`` decides from the data: values outside [−1, 1]. A metric that is a count
            says ``True``, so a sample whose counts happen to be all 0 or 1 keeps the count
            interval instead of becoming a proportion.
        rate_like: The values are probabilities or shares in [0, 1] (a prompt's maximum
            toxicity, its toxic share): the interval is at least the Clopper-Pearson one of
            the mean read as a rate (:func:`_at_least_exact`). Clustered 0/1 values always
            get it.

    Returns:
        An :class:`Estimate` with ``method`` ``"expanded-bootstrap"`` or
        ``"expanded-cluster-bootstrap"`` (``"bootstrap-se-t"`` / ``"cluster-bootstrap-se-t"``
        for very few units; ``"clopper-pearson"`` for independent 0/1 values;
        ``"studentized-bootstrap"`` / ``"studentized-cluster-bootstrap"`` for unbounded
        values); no interval
        and a note with one item or one cluster; :meth:`Estimate.empty` when there are no
        values.

    Raises:
        ValueError: Non-finite values, clusters of the wrong length, ``n_resamples < 1`` or
            ``confidence`` not in (0, 1).
    """
    arr = _as_finite_floats(values, "values")
    if unbounded is None:
        unbounded = not bool(np.all(np.abs(arr) <= 1.0))
    if clusters is None and not unbounded and len(arr) and np.all((arr == 0.0) | (arr == 1.0)):
        # A mean of independent 0/1 outcomes is a binomial proportion: its bootstrap
        # degenerates to [0, 0] at 0 successes (5.8% of data sets at n = 8, p = 0.3), the
        # exact interval does not.
        return clopper_pearson(int(arr.sum()), len(arr), confidence)
    if unbounded and len(arr) >= 2:
        _check_args(n_resamples, confidence)
        ids: npt.NDArray[np.intp] | None = None
        k = len(arr)
        if clusters is not None:
            ids, k = _cluster_ids(clusters, len(arr))
        if k >= 2:
            studentized = studentized_mean(arr, ids, k, n_resamples, seed, confidence)
            if studentized is not None:
                return studentized
            est, _ = mean_with_draws(
                arr, clusters=clusters, n_resamples=n_resamples, seed=seed, confidence=confidence
            )
            fallback = "studentized interval unbounded (resamples of one repeated value): percentile"
            return est.model_copy(update={"note": "; ".join(x for x in (fallback, est.note) if x)})
    est, _ = mean_with_draws(
        arr, clusters=clusters, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    binary = bool(np.all((arr == 0.0) | (arr == 1.0)))
    if (
        not unbounded
        and len(arr) >= 2
        and ((binary and clusters is not None) or (rate_like and np.all(arr >= 0.0)))
    ):
        est = _at_least_exact(est, arr, clusters, confidence)
    if not unbounded and est.ci_low is not None and est.ci_high is not None:
        # The t interval of 2-4 units can pass the values' range ([-3.8, 4.9] for a
        # probability); a mean of values in [0, 1] (or [-1, 1]) lies within it.
        floor = 0.0 if bool(np.all(arr >= 0.0)) else -1.0
        if est.ci_low < floor or est.ci_high > 1.0:
            est = est.model_copy(update={"ci_low": max(est.ci_low, floor), "ci_high": min(est.ci_high, 1.0)})
    return est


def _effective_n(arr: npt.NDArray[np.float64], clusters: Sequence[Hashable] | None) -> float:
    """Effective number of independent trials behind the mean of ``arr`` (values in [0, 1]).

    Items without clusters: n. With clusters, Korn & Graubard's effective sample size
    ``p(1 − p) / Var(p̂)``, the variance the cluster-robust (ratio-estimator) one, kept between
    the number of clusters and n; with no variation (every value 0, or every value 1) the
    number of clusters, since nothing then says how alike a cluster's items are.

    Reference: E. L. Korn & B. I. Graubard (1998), "Confidence intervals for proportions with
    small expected number of positive counts estimated from survey data", Survey
    Methodology 24(2):193-201.
    """
    n = len(arr)
    if clusters is None:
        return float(n)
    ids, k = _cluster_ids(clusters, n)
    p = float(arr.mean())
    sums = np.bincount(ids, weights=arr, minlength=k)
    sizes = np.bincount(ids, minlength=k).astype(np.float64)
    variance = k / max(k - 1, 1) * float(np.sum((sums - p * sizes) ** 2)) / n**2
    if not 0.0 < p < 1.0 or variance <= 0.0:
        return float(k)
    return min(max(p * (1.0 - p) / variance, float(k)), float(n))


def _at_least_exact(
    est: Estimate, arr: npt.NDArray[np.float64], clusters: Sequence[Hashable] | None, confidence: float
) -> Estimate:
    """``est`` widened, where it is narrower, to the Clopper-Pearson bounds of its mean read as a
    rate over the effective number of trials (a fractional count: ``k = x̄ · n_eff``).

    A mean of values in [0, 1] is never more spread than a rate with the same mean (the 0/1
    variable has the largest variance), and a percentile bootstrap of a skewed small mean
    is far too short: the expected maximum toxicity of 12 prompts whose rare toxic tail no
    sample held covered 70 %, and a clustered rate with no success had the interval [0, 0]
    (a gate on its upper bound passed on 12 prompts). The exact bounds do not depend on
    which tail the sample happened to hold.
    """
    if est.value is None or est.ci_low is None or est.ci_high is None:
        return est
    n_eff = _effective_n(arr, clusters)
    mean = min(max(float(arr.mean()), 0.0), 1.0)
    low, high = exact_bounds(mean * n_eff, n_eff, confidence)
    if low >= est.ci_low and high <= est.ci_high:
        return est
    note = f"widened to the Clopper-Pearson bounds at an effective n of {n_eff:.1f}"
    return est.model_copy(
        update={
            "ci_low": min(est.ci_low, low, est.value),
            "ci_high": max(est.ci_high, high, est.value),
            "note": "; ".join(x for x in (est.note, note) if x),
        }
    )


def _clean(stat: float | None) -> float | None:
    """Return the statistic as a float, or None when it is undefined (None, NaN or infinite)."""
    if stat is None:
        return None
    result = float(stat)
    return result if math.isfinite(result) else None


def bootstrap(
    items: Sequence[T],
    statistic: Callable[[Sequence[T]], float | None],
    *,
    clusters: Sequence[Hashable] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Estimate any statistic with a seeded (cluster) bootstrap interval.

    Point: ``θ̂ = statistic(items)``. Interval: the expanded percentile interval of
    ``θ̂*_b = statistic(resample_b)``, b = 1..B (see the module docstring; the t interval with
    the bootstrap standard error when there are too few units for B). Without
    ``clusters`` each resample draws n items with replacement; with ``clusters`` it draws the
    k clusters with replacement and keeps every item of each drawn cluster (so a resample
    can have a different size than the data).

    Resamples where the statistic is undefined (returns ``None``, NaN or ±infinity, e.g. a
    ratio with an empty denominator) are dropped and counted in the note; if fewer than
    half of them remain the interval is not reported. Index arrays are drawn with numpy;
    the statistic is called once per resample, with a list (or, when ``items`` is a numpy
    array, with ``items[indices]``).

    References: T. C. Hesterberg (2015), The American Statistician 69(4):371-386, §4.3
    (expanded percentile interval); A. C. Davison & D. V. Hinkley (1997), *Bootstrap Methods
    and their Application*, §3.8 (resampling clusters); C. A. Field & A. H. Welsh (2007),
    "Bootstrapping clustered data", JRSS B 69(3):369-390.

    Args:
        items: The data units (items, or per-item records the statistic understands).
        statistic: Maps a sequence of items to a number, or ``None`` when undefined.
        clusters: Optional cluster label (e.g. template id) per item.
        n_resamples: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Nominal coverage, in (0, 1).

    Returns:
        An :class:`Estimate` with ``value = statistic(items)`` and ``method`` as for
        :func:`bootstrap_mean`; no interval (``method="none"``) and a note when there is
        one item or cluster, when the statistic is undefined on the full data, or when it is
        undefined on more than half of the resamples; :meth:`Estimate.empty` for no items.

    Raises:
        ValueError: ``clusters`` of the wrong length, ``n_resamples < 1`` or ``confidence``
            not in (0, 1).
    """
    _check_args(n_resamples, confidence)
    n = len(items)
    if n == 0:
        return Estimate.empty()
    is_array = isinstance(items, np.ndarray)
    data: Sequence[T] = items if is_array else list(items)
    ids: npt.NDArray[np.intp] | None = None
    k: int | None = None
    if clusters is not None:
        ids, k = _cluster_ids(clusters, n)
    value = _clean(statistic(data))
    if value is None:
        return Estimate(
            value=None, n=n, n_clusters=k, confidence=confidence, note="statistic undefined on the full data"
        )
    units = n if k is None else k
    if units < 2:
        return Estimate(
            value=value, n=n, n_clusters=k, confidence=confidence, note=_one_unit_note(k is not None)
        )

    # Items ordered by cluster, so a drawn cluster is one contiguous slice [start, start + size).
    if ids is not None:
        order = np.argsort(ids, kind="stable")
        sizes = np.bincount(ids, minlength=units)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))

    def take(idx: npt.NDArray[np.int64]) -> Sequence[T]:
        if is_array:
            return data[idx]  # type: ignore[call-overload]
        return [data[i] for i in idx.tolist()]

    stats = np.empty(n_resamples, dtype=np.float64)
    b = 0
    for block in _draws(np.random.default_rng(seed), units, n_resamples):
        for row in block:
            if ids is None:
                idx = row
            else:
                lengths = sizes[row]
                # Positions 0..total-1 shifted, per drawn cluster, to that cluster's slice.
                shift = np.repeat(starts[row] - (np.cumsum(lengths) - lengths), lengths)
                idx = order[np.arange(int(lengths.sum())) + shift]
            stat = _clean(statistic(take(idx)))
            stats[b] = np.nan if stat is None else stat
            b += 1

    valid = stats[~np.isnan(stats)]
    dropped = n_resamples - len(valid)
    if 2 * len(valid) < n_resamples:
        return Estimate(
            value=value,
            n=n,
            n_clusters=k,
            confidence=confidence,
            note=f"interval undefined: statistic undefined on {dropped} of {n_resamples} resamples",
        )
    low, high, expanded = interval_from_draws(valid, value, units, confidence)
    notes = [f"{dropped} of {n_resamples} resamples dropped: statistic undefined"] if dropped else []
    if not expanded:
        notes.append(_se_t_note(units, len(valid)))
    method = interval_method(k is not None, expanded)
    note = "; ".join(notes) or None
    return Estimate(
        value=value,
        ci_low=low,
        ci_high=high,
        n=n,
        n_clusters=k,
        method=method,
        confidence=confidence,
        note=note,
    )
