"""Confidence intervals for rates: Clopper-Pearson (exact, the default) and Wilson.

Every rate the suites report uses :func:`clopper_pearson` (through :func:`rate` or
directly). Wilson's score interval is close to 95% *on average* over the true rate but, being
discrete, dips to ~90% for some rates at n = 8-10 (``benchmarks/coverage.py``); the exact
interval covers at least 95% for every true rate and every n, and is wider by design
(mean coverage ~98% at n = 8, ~96.5% at n = 100). :func:`wilson` stays for callers that
want the narrower average-coverage interval.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from statistics import NormalDist

from scipy import special

from rai_harness.stats.estimate import Estimate

__all__ = ["clopper_pearson", "exact_bounds", "rate", "wilson", "z_value"]


def z_value(confidence: float) -> float:
    """Return the two-sided standard-normal critical value for a confidence level.

    ``z = Φ⁻¹(1 − (1 − confidence) / 2)``; 1.959964 for 95%.

    Args:
        confidence: Nominal coverage, in (0, 1).

    Returns:
        The critical value ``z``.

    Raises:
        ValueError: ``confidence`` is not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Estimate a rate ``successes / n`` with its Wilson score interval.

    With ``p̂ = successes / n`` and ``z`` the two-sided normal critical value:

    ``centre = (p̂ + z²/(2n)) / (1 + z²/n)``
    ``half   = z / (1 + z²/n) · sqrt(p̂(1 − p̂)/n + z²/(4n²))``
    ``CI     = [centre − half, centre + half]``

    Unlike the Wald interval it stays inside [0, 1], is not degenerate at 0 or n successes
    and keeps close to nominal coverage at small n. The bounds are exactly 0 at
    ``successes == 0`` and exactly 1 at ``successes == n``.

    Reference: E. B. Wilson (1927), "Probable inference, the law of succession, and
    statistical inference", JASA 22(158):209-212.

    Args:
        successes: The numerator count, ``0 <= successes <= n``.
        n: The number of trials.
        confidence: Nominal coverage, in (0, 1).

    Returns:
        An :class:`Estimate` with ``method="wilson"``; :meth:`Estimate.empty` when ``n == 0``.

    Raises:
        ValueError: Counts are negative, ``successes > n``, or ``confidence`` is not in (0, 1).
        TypeError: A count is not an integer.
    """
    successes, n = _check_counts(successes, n, confidence)
    z = z_value(confidence)
    if n == 0:
        return Estimate.empty()
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(
        value=p,
        ci_low=low,
        ci_high=high,
        n=n,
        successes=successes,
        method="wilson",
        confidence=confidence,
    )


def _check_counts(successes: int, n: int, confidence: float) -> tuple[int, int]:
    successes = operator.index(successes)
    n = operator.index(n)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    return successes, n


def exact_bounds(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """The Clopper-Pearson bounds for ``successes`` of ``n`` (see :func:`clopper_pearson`).

    Counts may be fractional (a mean of values in [0, 1] read as a rate over an effective
    number of trials): the beta quantiles are defined for any positive parameters.
    """
    half_alpha = (1.0 - confidence) / 2.0
    low = 0.0 if successes <= 0 else float(special.betaincinv(successes, n - successes + 1, half_alpha))
    high = 1.0 if successes >= n else float(special.betainccinv(successes + 1, n - successes, half_alpha))
    return low, high


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Estimate a rate ``successes / n`` with the Clopper-Pearson (exact binomial) interval.

    With ``k = successes`` and ``α = 1 − confidence`` the bounds are beta quantiles,

    ``low  = B⁻¹(α/2; k, n − k + 1)``      (0 when k = 0)
    ``high = B⁻¹(1 − α/2; k + 1, n − k)``  (1 when k = n)

    the rates at which seeing ``k`` or more (``k`` or fewer) successes has probability α/2.
    It inverts two one-sided exact binomial tests, so its coverage is at least
    ``confidence`` for every true rate and every n: conservative by design (mean coverage
    over the rate ~98% at n = 8, ~96.5% at n = 100; ``benchmarks/coverage.py``), where
    Wilson's interval is ~95% on average but dips to ~90% at some rates for n <= 10. The
    same interval as ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` and R's
    ``binom.test``.

    Reference: C. J. Clopper & E. S. Pearson (1934), "The use of confidence or fiducial
    limits illustrated in the case of the binomial", Biometrika 26(4):404-413.

    Args:
        successes: The numerator count, ``0 <= successes <= n``.
        n: The number of trials.
        confidence: Nominal (minimum) coverage, in (0, 1).

    Returns:
        An :class:`Estimate` with ``method="clopper-pearson"``; :meth:`Estimate.empty` when
        ``n == 0``.

    Raises:
        ValueError: Counts are negative, ``successes > n``, or ``confidence`` is not in (0, 1).
        TypeError: A count is not an integer.
    """
    successes, n = _check_counts(successes, n, confidence)
    if n == 0:
        return Estimate.empty()
    low, high = exact_bounds(successes, n, confidence)
    p = successes / n
    # Guard the quantile functions' last-bit rounding: the bounds must bracket the estimate.
    return Estimate(
        value=p,
        ci_low=min(low, p),
        ci_high=max(high, p),
        n=n,
        successes=successes,
        method="clopper-pearson",
        confidence=confidence,
    )


def rate(flags: Sequence[bool]) -> Estimate:
    """Estimate the share of true flags with a 95% Clopper-Pearson interval.

    Args:
        flags: One truth value per unit (item, prompt, call).

    Returns:
        ``clopper_pearson(sum(flags), len(flags))``; :meth:`Estimate.empty` when there are
        no flags.
    """
    return clopper_pearson(sum(1 for f in flags if f), len(flags))
