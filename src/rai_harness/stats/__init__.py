"""Statistics for eval metrics: every metric is an estimate with a 95% confidence interval.

* Rates: :func:`clopper_pearson` / :func:`rate` (exact binomial interval: at least 95% for
  every true rate and n, wider by design) and :func:`wilson` (Wilson score).
* Means, ratios, any statistic: :func:`bootstrap_mean` (vectorised) and :func:`bootstrap`
  (seeded expanded-percentile bootstrap, which keeps about nominal coverage from 8 units;
  resample whole clusters when items share a template).
* Agreement of a judge with gold labels: :func:`agreement` (accuracy, Cohen's kappa,
  confusion matrix, each with an interval).
* Paired comparisons: :func:`paired_bootstrap_diff` (expanded percentile for scores, symmetric
  bootstrap-t for unbounded values; its p-value inverts its interval),
  :func:`mcnemar`, and :func:`max_pairwise_gap` (simultaneous Šidák t intervals) for
  counterfactual fairness across groups.

Every :class:`Estimate` names its interval method, so a report can say which. Coverage and
type-I error of each at n = 8, 10, 30 and 100: ``benchmarks/coverage.py`` and
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from rai_harness.stats import coverage
from rai_harness.stats.agreement import UNPARSED, Agreement, agreement, cohen_kappa
from rai_harness.stats.bootstrap import bootstrap, bootstrap_mean, expanded_alpha
from rai_harness.stats.estimate import Estimate, EstimateMethod
from rai_harness.stats.intervals import clopper_pearson, rate, wilson, z_value
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
    "UNPARSED",
    "Agreement",
    "Estimate",
    "EstimateMethod",
    "GapResult",
    "McNemarResult",
    "PairedResult",
    "agreement",
    "bootstrap",
    "bootstrap_mean",
    "bootstrap_p_value",
    "clopper_pearson",
    "cohen_kappa",
    "coverage",
    "expanded_alpha",
    "max_pairwise_gap",
    "mcnemar",
    "paired_bootstrap_diff",
    "rate",
    "wilson",
    "z_value",
]
