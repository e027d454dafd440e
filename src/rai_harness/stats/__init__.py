"""Statistics for eval metrics: every metric is an estimate with a 95% confidence interval.

* Rates: :func:`wilson` / :func:`rate` (Wilson score interval).
* Means, ratios, any statistic: :func:`bootstrap_mean` (vectorised) and :func:`bootstrap`
  (seeded percentile bootstrap; resample whole clusters when items share a template).
* Paired comparisons: :func:`paired_bootstrap_diff`, :func:`mcnemar`, and
  :func:`max_pairwise_gap` for counterfactual fairness across groups.
"""

from __future__ import annotations

from rai_harness.stats.bootstrap import bootstrap, bootstrap_mean
from rai_harness.stats.estimate import Estimate, EstimateMethod
from rai_harness.stats.intervals import rate, wilson, z_value
from rai_harness.stats.paired import (
    GapResult,
    McNemarResult,
    PairedResult,
    bootstrap_p_value,
    max_pairwise_gap,
    mcnemar,
    paired_bootstrap_diff,
)

__all__ = [
    "Estimate",
    "EstimateMethod",
    "GapResult",
    "McNemarResult",
    "PairedResult",
    "bootstrap",
    "bootstrap_mean",
    "bootstrap_p_value",
    "max_pairwise_gap",
    "mcnemar",
    "paired_bootstrap_diff",
    "rate",
    "wilson",
    "z_value",
]
