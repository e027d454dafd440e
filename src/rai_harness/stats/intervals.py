"""Confidence intervals for rates: the Wilson score interval."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from statistics import NormalDist

from rai_harness.stats.estimate import Estimate

__all__ = ["rate", "wilson", "z_value"]


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
    successes = operator.index(successes)
    n = operator.index(n)
    z = z_value(confidence)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
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


def rate(flags: Sequence[bool]) -> Estimate:
    """Estimate the share of true flags with a 95% Wilson interval (see :func:`wilson`).

    Args:
        flags: One truth value per unit (item, prompt, call).

    Returns:
        ``wilson(sum(flags), len(flags))``; :meth:`Estimate.empty` when there are no flags.
    """
    return wilson(sum(1 for f in flags if f), len(flags))
