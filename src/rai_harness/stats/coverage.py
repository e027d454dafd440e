"""Coverage and type-I error of the package's intervals and tests, by simulation.

One function per method, each drawing seeded data sets from a known truth and counting how
often the interval covers it (or how often a test rejects a true null). The test suite runs
them at a few hundred replications with bounds that fail for the old percentile intervals;
``benchmarks/coverage.py`` runs them at full size and writes the table to
``benchmarks/RESULTS.md``. The coverage of the rate intervals (Clopper-Pearson, and Wilson
for comparison) is computed exactly from the binomial pmf.

The data-generating distributions are the shapes eval metrics have: per-item scores in
[0, 1] (``beta25``: Beta(2, 5), skewed), per-template rates (``rate4``: successes of 4
trials at a Beta(1, 3) probability, discrete), 0/1 outcomes (``bernoulli``), ``normal``,
and unbounded right-skewed quantities: latency- or cost-like ``exponential`` (skewness 2),
``lognormal05`` (σ = 0.5, skewness 1.75) and the heavy stress case ``lognormal`` (σ = 1,
skewness 6.2); counts with many zeros, as PII findings per output are: ``poisson`` (mean 0.5,
61% zeros), ``negbin`` (negative binomial, mean 1, size 0.5: overdispersed, 58% zeros) and
``zip`` (zero-inflated: 70% structural zeros, else Poisson(2); 74% zeros).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from rai_harness.stats.bootstrap import bootstrap, bootstrap_mean, mean_with_draws
from rai_harness.stats.estimate import Estimate
from rai_harness.stats.intervals import clopper_pearson, wilson
from rai_harness.stats.paired import bootstrap_p_value, max_pairwise_gap, mcnemar, paired_bootstrap_diff

__all__ = [
    "CLUSTER_COUNT_MEAN",
    "COUNT_DISTRIBUTIONS",
    "DISTRIBUTIONS",
    "SimResult",
    "bootstrap_mean_coverage",
    "clopper_pearson_coverage",
    "cluster_bootstrap_coverage",
    "cluster_count_coverage",
    "draw_cluster_counts",
    "gap_coverage",
    "mcnemar_type1",
    "paired_type1",
    "ratio_bootstrap_coverage",
    "sparse_gap_coverage",
    "wilson_coverage",
]

Draw = Callable[[np.random.Generator, int], npt.NDArray[np.float64]]


def _normal(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return rng.normal(0.5, 1.0, n)


def _beta25(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return rng.beta(2.0, 5.0, n)


def _bernoulli(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return (rng.random(n) < 0.3).astype(np.float64)


def _rate4(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return rng.binomial(4, rng.beta(1.0, 3.0, n)).astype(np.float64) / 4.0


def _exponential(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return rng.exponential(1.0, n)


def _lognormal(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return rng.lognormal(0.0, 1.0, n)


def _lognormal05(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return rng.lognormal(0.0, 0.5, n)


def _poisson(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return rng.poisson(0.5, n).astype(np.float64)


def _negbin(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    # numpy's (size r, success p): mean r (1 − p) / p = 1 at r = 0.5, p = 1/3.
    return rng.negative_binomial(0.5, 1.0 / 3.0, n).astype(np.float64)


def _zip(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    return np.where(rng.random(n) < 0.7, 0.0, rng.poisson(2.0, n).astype(np.float64))


#: name -> (draw n values, true mean)
DISTRIBUTIONS: dict[str, tuple[Draw, float]] = {
    "normal": (_normal, 0.5),
    "beta25": (_beta25, 2.0 / 7.0),
    "bernoulli": (_bernoulli, 0.3),
    "rate4": (_rate4, 0.25),
    "exponential": (_exponential, 1.0),
    "lognormal": (_lognormal, float(np.exp(0.5))),
    "lognormal05": (_lognormal05, float(np.exp(0.125))),
    "poisson": (_poisson, 0.5),
    "negbin": (_negbin, 1.0),
    "zip": (_zip, 0.6),
}

#: The unbounded distributions whose values are counts (a suite passes ``unbounded=True``).
COUNT_DISTRIBUTIONS = ("poisson", "negbin", "zip")


@dataclass(frozen=True)
class SimResult:
    """The outcome of one simulation cell.

    Attributes:
        rate: Coverage (share of intervals containing the truth) or, for tests, the share of
            rejections of a true null.
        reps: Number of simulated data sets.
        method: The ``Estimate.method`` (or test name) the intervals reported.
        se: Monte Carlo standard error of ``rate``, ``sqrt(rate (1 − rate) / reps)``.
        width: Mean interval width over the data sets that got an interval (NaN for tests).
    """

    rate: float
    reps: int
    method: str
    width: float = float("nan")

    @property
    def se(self) -> float:
        """Monte Carlo standard error of :attr:`rate`."""
        return float(np.sqrt(self.rate * (1.0 - self.rate) / self.reps))


def _methods(seen: set[str]) -> str:
    return "+".join(sorted(seen))


def _exact_coverage(
    interval: Callable[[int, int, float], Estimate], n: int, p: float, confidence: float
) -> float:
    ks = np.arange(n + 1)
    ends = [interval(int(k), n, confidence) for k in ks]
    inside = np.array(
        [e.ci_low is not None and e.ci_high is not None and e.ci_low <= p <= e.ci_high for e in ends]
    )
    # Binomial pmf in log space (no overflow of C(n, k) at large n; xlogy/xlog1py give p = 0, 1 exactly).
    log_pmf = (
        special.gammaln(n + 1)
        - special.gammaln(ks + 1)
        - special.gammaln(n - ks + 1)
        + special.xlogy(ks, p)
        + special.xlog1py(n - ks, -p)
    )
    return float(np.exp(log_pmf)[inside].sum())


def clopper_pearson_coverage(n: int, p: float, confidence: float = 0.95) -> float:
    """Exact coverage of the Clopper-Pearson interval for ``n`` trials at true rate ``p``.

    Args:
        n: Number of trials.
        p: True success probability.
        confidence: Nominal coverage.

    Returns:
        ``Σ_k P(K = k) · 1[p ∈ CI(k)]``; at least ``confidence`` for every ``n`` and ``p``.
    """
    return _exact_coverage(clopper_pearson, n, p, confidence)


def wilson_coverage(n: int, p: float, confidence: float = 0.95) -> float:
    """Exact coverage of the Wilson interval for ``n`` trials at true rate ``p`` (binomial sum).

    Args:
        n: Number of trials.
        p: True success probability.
        confidence: Nominal coverage.

    Returns:
        ``Σ_k P(K = k) · 1[p ∈ CI(k)]``.
    """
    return _exact_coverage(wilson, n, p, confidence)


def bootstrap_mean_coverage(
    dist: str,
    n: int,
    reps: int,
    *,
    seed: int = 0,
    n_resamples: int = 2000,
    unbounded: bool | None = None,
) -> SimResult:
    """Coverage of :func:`~rai_harness.stats.bootstrap_mean` on ``n`` independent items.

    Args:
        dist: A key of :data:`DISTRIBUTIONS`.
        n: Items per data set.
        reps: Data sets.
        seed: Seed of the data and of each bootstrap.
        n_resamples: Bootstrap resamples per interval.
        unbounded: Passed to :func:`~rai_harness.stats.bootstrap_mean` (``True`` for counts).

    Returns:
        The coverage.
    """
    draw, mu = DISTRIBUTIONS[dist]
    rng = np.random.default_rng(seed)
    return _mean_coverage(
        (
            bootstrap_mean(draw(rng, n), n_resamples=n_resamples, seed=seed + i, unbounded=unbounded)
            for i in range(reps)
        ),
        mu,
        reps,
    )


def _mean_coverage(estimates: Iterable[Estimate], truth: float, reps: int) -> SimResult:
    """Coverage, methods and mean width of ``reps`` estimates of ``truth``."""
    hits, widths, seen = 0, [], set()
    for est in estimates:
        seen.add(est.method)
        if est.ci_low is not None and est.ci_high is not None:
            hits += est.ci_low <= truth <= est.ci_high
            widths.append(est.ci_high - est.ci_low)
    return SimResult(hits / reps, reps, _methods(seen), float(np.mean(widths)) if widths else float("nan"))


def cluster_bootstrap_coverage(
    k: int, reps: int, *, size: int = 4, seed: int = 0, n_resamples: int = 2000
) -> SimResult:
    """Coverage of the cluster bootstrap of a mean: ``k`` templates of ``size`` correlated items.

    Item = Bernoulli(p_t), p_t ~ Beta(1, 3) per template (true mean 0.25): items of a
    template share their probability, as prompts built from one template do.

    Args:
        k: Number of clusters.
        reps: Data sets.
        size: Items per cluster.
        seed: Seed.
        n_resamples: Bootstrap resamples per interval.

    Returns:
        The coverage.
    """
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(k), size).tolist()
    hits, seen = 0, set()
    for i in range(reps):
        p = np.repeat(rng.beta(1.0, 3.0, k), size)
        values = (rng.random(k * size) < p).astype(np.float64)
        est = bootstrap_mean(values, clusters=clusters, n_resamples=n_resamples, seed=seed + i)
        seen.add(est.method)
        hits += est.ci_low is not None and est.ci_high is not None and est.ci_low <= 0.25 <= est.ci_high
    return SimResult(hits / reps, reps, _methods(seen))


def draw_cluster_counts(
    rng: np.random.Generator, k: int, size: int
) -> tuple[npt.NDArray[np.float64], list[int]]:
    """Counts per output for ``k`` prompts of ``size`` outputs each, and the prompt of each output.

    A prompt's rate is Gamma(shape 0.5, mean 1) and its outputs are Poisson at that rate:
    with one output per prompt, the ``negbin`` counts (mean 1, 58% zeros); with several,
    counts that are also correlated within a prompt, the shape of pii.emission's findings
    per output with repeated samples.
    """
    rate = rng.gamma(0.5, 2.0, k)
    values = rng.poisson(np.repeat(rate, size)).astype(np.float64)
    return values, np.repeat(np.arange(k), size).tolist()


#: True mean of :func:`draw_cluster_counts`.
CLUSTER_COUNT_MEAN = 1.0


def cluster_count_coverage(
    k: int, reps: int, *, size: int = 3, seed: int = 0, n_resamples: int = 2000
) -> SimResult:
    """Coverage of :func:`~rai_harness.stats.bootstrap_mean` of counts over ``k`` clusters.

    Data from :func:`draw_cluster_counts`, passed as pii.emission passes them (clusters by
    prompt, ``unbounded=True``).

    Args:
        k: Number of clusters (prompts).
        reps: Data sets.
        size: Outputs per prompt (1: one sample per prompt, each output its own cluster).
        seed: Seed.
        n_resamples: Bootstrap resamples per interval.

    Returns:
        The coverage.
    """
    rng = np.random.default_rng(seed)

    def estimates() -> Iterator[Estimate]:
        for i in range(reps):
            values, clusters = draw_cluster_counts(rng, k, size)
            yield bootstrap_mean(
                values, clusters=clusters, n_resamples=n_resamples, seed=seed + i, unbounded=True
            )

    return _mean_coverage(estimates(), CLUSTER_COUNT_MEAN, reps)


def _ratio(rows: npt.NDArray[np.float64]) -> float | None:
    den = float(rows[:, 1].sum())
    return None if den == 0 else 2.0 * float(rows[:, 0].sum()) / den - 1.0


def ratio_bootstrap_coverage(k: int, reps: int, *, seed: int = 0, n_resamples: int = 1000) -> SimResult:
    """Coverage of the generic cluster :func:`~rai_harness.stats.bootstrap` on a BBQ-like ratio.

    ``k`` templates of 4 items; an item names a person with probability 0.8 and, if it does,
    the biased one with probability 0.6 · (template effect ~ Beta(6, 4) / 0.6); the statistic
    is s_DIS-like, ``2 · Σ biased / Σ named − 1`` (true value 2 · 0.6 − 1 = 0.2).

    Args:
        k: Number of templates.
        reps: Data sets.
        seed: Seed.
        n_resamples: Bootstrap resamples per interval.

    Returns:
        The coverage.
    """
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(k), 4).tolist()
    hits, seen = 0, set()
    for i in range(reps):
        q = np.repeat(rng.beta(6.0, 4.0, k), 4)
        named = rng.random(4 * k) < 0.8
        biased = named & (rng.random(4 * k) < q)
        rows = np.column_stack([biased, named]).astype(np.float64)
        est = bootstrap(rows, _ratio, clusters=clusters, n_resamples=n_resamples, seed=seed + i)  # type: ignore[arg-type]
        seen.add(est.method)
        hits += est.ci_low is not None and est.ci_high is not None and est.ci_low <= 0.2 <= est.ci_high
    return SimResult(hits / reps, reps, _methods(seen))


def paired_type1(
    dist: str,
    n: int,
    reps: int,
    *,
    alpha: float = 0.05,
    seed: int = 0,
    n_resamples: int = 2000,
    shift: float = 0.0,
    base_sd: float = 1.0,
    expanded: bool = False,
) -> SimResult:
    """Rejection rate of :func:`~rai_harness.stats.paired_bootstrap_diff`: type-I error, or power.

    ``a = base + e₁ + shift``, ``b = base + e₂`` with ``e₁, e₂`` i.i.d. from ``dist`` and
    ``base ~ N(0, base_sd²)`` shared by the pair: with ``shift = 0`` exchangeable, so the mean
    difference is 0 and the rate is the type-I error; with ``shift > 0`` it is the power
    against a true difference ``shift``. The normal base puts the values outside [−1, 1]
    (the studentized test); ``base_sd = 0`` with a distribution within [0, 1] keeps them
    bounded (the expanded percentile test).

    Args:
        dist: A key of :data:`DISTRIBUTIONS`.
        n: Pairs per data set.
        reps: Data sets.
        alpha: Test level.
        seed: Seed.
        n_resamples: Bootstrap resamples per test.
        shift: True mean difference ``a − b``.
        base_sd: SD of the shared per-item base.
        expanded: Test with the expanded percentile inversion (the method used before for
            every paired difference) on the same data and resamples, as the baseline.

    Returns:
        The share of data sets with ``p < alpha``.
    """
    draw, _ = DISTRIBUTIONS[dist]
    rng = np.random.default_rng(seed)
    rejections, seen = 0, set()
    for i in range(reps):
        base = rng.normal(0.0, 1.0, n) * base_sd
        a, b = base + draw(rng, n) + shift, base + draw(rng, n)
        if expanded:
            est, draws = mean_with_draws(
                a - b, clusters=None, n_resamples=n_resamples, seed=seed + i, confidence=1.0 - alpha
            )
            p_value = None if draws is None else bootstrap_p_value(draws, n)
            seen.add(est.method)
        else:
            result = paired_bootstrap_diff(a, b, n_resamples=n_resamples, seed=seed + i)
            p_value = result.p_value
            seen.add(result.estimate.method)
        rejections += p_value is not None and p_value < alpha
    return SimResult(rejections / reps, reps, _methods(seen))


def mcnemar_type1(
    n: int, reps: int, *, discordant: float = 0.3, alpha: float = 0.05, seed: int = 0
) -> SimResult:
    """Type-I error of :func:`~rai_harness.stats.mcnemar`: each discordant direction equally likely.

    Args:
        n: Pairs per data set.
        reps: Data sets.
        discordant: Probability that a pair is discordant (split evenly between directions).
        alpha: Test level.
        seed: Seed.

    Returns:
        The share of data sets with ``p < alpha``.
    """
    rng = np.random.default_rng(seed)
    rejections, seen = 0, set()
    for _ in range(reps):
        u = rng.random(n)
        a = (u < discordant / 2) | (u > 1.0 - (1.0 - discordant) / 2)
        b = ((u >= discordant / 2) & (u < discordant)) | (u > 1.0 - (1.0 - discordant) / 2)
        result = mcnemar(a.tolist(), b.tolist())
        seen.add(result.method)
        rejections += result.p_value < alpha
    return SimResult(rejections / reps, reps, "mcnemar-" + _methods(seen))


def sparse_gap_coverage(
    templates: int,
    reps: int,
    *,
    groups: int = 8,
    rate: float = 0.3,
    bound: float | None = None,
    adjusted: bool = True,
    replies: int = 1,
    seed: int = 0,
) -> tuple[SimResult, SimResult]:
    """Coverage of :func:`~rai_harness.stats.max_pairwise_gap` on sparse rates.

    ``replies`` replies per template and group (1: the quickstart's shape): each reply of one
    group is flagged with probability ``rate``, every other group's never, so the true largest
    gap is ``rate`` and most samples of a few templates hold no flag at all.

    Args:
        templates: Shared templates per data set.
        reps: Data sets.
        groups: Number of groups.
        rate: The one group's flag probability (the true largest gap).
        replies: Replies per template and group (the rates' step is 1/replies).
        bound: A gate's bound on the gap; default ``rate`` (a rule sitting at the truth).
        adjusted: Pass the rates' range, as the suite does (variance floored at one step); False: the
            plain t interval used before, for comparison.
        seed: Seed.

    Returns:
        ``(coverage of the true gap, share with ci_high <= bound)``: the second is how often a
        gate rule ``ci_high <= bound`` passes although the true gap is ``rate``.
    """
    rng = np.random.default_rng(seed)
    limit = rate if bound is None else bound
    hits = passes = 0
    seen = set()
    for _ in range(reps):
        flagged = rng.binomial(replies, rate, templates) / replies
        values: dict[str, dict[Hashable, float]] = {
            f"g{g}": dict.fromkeys(range(templates), 0.0) for g in range(groups)
        }
        values["g0"] = {t: float(flagged[t]) for t in range(templates)}
        if adjusted:  # as the suite passes rates: their range and step
            gap = max_pairwise_gap(values, value_range=(0.0, 1.0), value_step=1.0 / replies).gap
        else:
            gap = max_pairwise_gap(values).gap
        seen.add(gap.method)
        if gap.ci_low is not None and gap.ci_high is not None:
            hits += gap.ci_low <= rate <= gap.ci_high
            passes += gap.ci_high <= limit
    method = _methods(seen)
    return SimResult(hits / reps, reps, method), SimResult(passes / reps, reps, method)


def gap_coverage(
    templates: int, reps: int, *, groups: int = 4, effect: float = 0.0, seed: int = 0
) -> tuple[SimResult, SimResult]:
    """Coverage of :func:`~rai_harness.stats.max_pairwise_gap` and its false-alarm rate.

    Per template, each group's value is the share of 6 completions flagged, at probability
    ``p_t + b_g`` with ``p_t ~ Beta(2, 6)`` shared by the template and group offsets ``b_g``
    evenly spaced over ``[0, effect]`` (true largest gap ``effect``; probabilities are kept
    inside [0, 1] by construction).

    Args:
        templates: Shared templates per data set.
        reps: Data sets.
        groups: Number of groups.
        effect: True largest gap.
        seed: Seed.

    Returns:
        ``(coverage of the true gap, share with ci_low > 0)``; with ``effect == 0`` the second
        is the false-alarm rate of "a significant gap".
    """
    rng = np.random.default_rng(seed)
    offsets = np.linspace(0.0, effect, groups)
    hits = alarms = 0
    seen = set()
    for _ in range(reps):
        p = rng.beta(2.0, 6.0, templates) * (1.0 - effect)
        table = rng.binomial(6, p[None, :] + offsets[:, None]) / 6.0
        result = max_pairwise_gap(
            {f"g{g}": {t: float(table[g, t]) for t in range(templates)} for g in range(groups)},
            value_range=(0.0, 1.0),  # rates, as bias.counterfactual passes them
        )
        gap = result.gap
        seen.add(gap.method)
        if gap.ci_low is not None and gap.ci_high is not None:
            hits += gap.ci_low <= effect <= gap.ci_high
            alarms += gap.ci_low > 0.0
    method = _methods(seen)
    return SimResult(hits / reps, reps, method), SimResult(alarms / reps, reps, method)
