"""Coverage of every interval and type-I error of every test the suites use, at n = 8, 10, 30, 100.

Full-size runs of the simulations in :mod:`rai_harness.stats.coverage` (the test suite runs
the same functions at a few hundred replications). Side by side in the same process, the
plain percentile bootstrap (the method before the expanded interval) on the same data and
the same resamples, as the baseline. Writes the ``coverage`` section of RESULTS.md.

Target: coverage 93-97% (type-I error <= 6% for tests), or wider by design (exact
Clopper-Pearson, exact McNemar, simultaneous Šidák).

Run: .venv/bin/python benchmarks/coverage.py [--reps 2000] [--resamples 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rai_harness.stats import coverage as cov
from rai_harness.stats.bootstrap import mean_with_draws, resampled_means
from rai_harness.stats.paired import bootstrap_p_value

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section

SIZES = (8, 10, 30, 100)


def _percentile_baseline(dist: str, n: int, reps: int, seed: int, b: int) -> float:
    """Coverage of the plain percentile interval on the data and resamples bootstrap_mean uses."""
    draw, mu = cov.DISTRIBUTIONS[dist]
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(reps):
        x = draw(rng, n)
        means = resampled_means(x, None, n, b, np.random.default_rng(seed + i))
        low, high = np.quantile(means, [0.025, 0.975])
        hits += low <= mu <= high
    return hits / reps


def _expanded_baseline(dist: str, n: int, reps: int, seed: int, b: int) -> float:
    """Coverage of the expanded percentile interval (bootstrap_mean's method for every mean before
    the studentized interval of unbounded values) on the data and seeds bootstrap_mean_coverage uses."""
    draw, mu = cov.DISTRIBUTIONS[dist]
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(reps):
        est, _ = mean_with_draws(draw(rng, n), clusters=None, n_resamples=b, seed=seed + i, confidence=0.95)
        hits += est.ci_low is not None and est.ci_high is not None and est.ci_low <= mu <= est.ci_high
    return hits / reps


def _paired_baseline(dist: str, n: int, reps: int, seed: int, b: int) -> float:
    """Type-I error of the plain percentile-inversion p-value on paired_type1's data."""
    draw, _ = cov.DISTRIBUTIONS[dist]
    rng = np.random.default_rng(seed)
    rejections = 0
    for i in range(reps):
        base = rng.normal(0.0, 1.0, n)
        d = (base + draw(rng, n)) - (base + draw(rng, n))
        means = resampled_means(d, None, n, b, np.random.default_rng(seed + i))
        rejections += bootstrap_p_value(means) < 0.05
    return rejections / reps


def _cell(value: float, reps: int | None) -> str:
    if reps is None:
        return f"{value:.1%}"
    se = np.sqrt(value * (1 - value) / reps)
    return f"{value:.1%} ±{se:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2000, help="simulated data sets per cell")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    reps, b = args.reps, args.resamples
    slow_reps = max(100, reps // 2)  # the generic (Python-statistic) bootstrap is ~20x slower
    rows: list[tuple[str, str, Callable[[int], str]]] = []
    grid = np.linspace(0.01, 0.99, 99)
    inner = grid[(grid >= 0.05) & (grid <= 0.95)]

    def exact_avg(n: int, fn: Callable[[int, float], float]) -> str:
        return _cell(float(np.mean([fn(n, float(p)) for p in grid])), None)

    def exact_min(n: int, fn: Callable[[int, float], float]) -> str:
        return _cell(float(np.min([fn(n, float(p)) for p in inner])), None)

    cp, wi = cov.clopper_pearson_coverage, cov.wilson_coverage
    rows.append(
        (
            "Clopper-Pearson (rates), mean over p in [0.01, 0.99], exact",
            "clopper-pearson",
            lambda n: exact_avg(n, cp),
        )
    )
    rows.append(
        (
            "Clopper-Pearson (rates), worst p in [0.05, 0.95], exact",
            "clopper-pearson",
            lambda n: exact_min(n, cp),
        )
    )
    rows.append(("baseline: Wilson (before), mean over p, exact", "wilson (old)", lambda n: exact_avg(n, wi)))
    rows.append(
        (
            "baseline: Wilson (before), worst p in [0.05, 0.95], exact",
            "wilson (old)",
            lambda n: exact_min(n, wi),
        )
    )
    # What bootstrap_mean picks: independent 0/1 values are proportions (exact interval);
    # values within [-1, 1] the expanded percentile; unbounded values the studentized bootstrap
    # (an unbounded data set whose values all happen to fall within [-1, 1] gets the former).
    mean_methods = {
        "normal": "studentized-bootstrap",
        "beta25": "expanded-bootstrap",
        "bernoulli": "clopper-pearson",
        "rate4": "expanded-bootstrap",
        "exponential": "studentized-bootstrap",
        "lognormal": "studentized-bootstrap",
    }
    for dist, method in mean_methods.items():
        rows.append(
            (
                f"bootstrap_mean, {dist}",
                method,
                lambda n, d=dist: _cell(
                    cov.bootstrap_mean_coverage(d, n, reps, seed=n, n_resamples=b).rate, reps
                ),
            )
        )
    for dist in ("normal", "exponential", "lognormal"):
        rows.append(
            (
                f"baseline: expanded percentile (before), {dist}",
                "expanded-bootstrap (old)",
                lambda n, d=dist: _cell(_expanded_baseline(d, n, reps, n, b), reps),
            )
        )
    for dist in ("normal", "beta25"):
        rows.append(
            (
                f"baseline: plain percentile bootstrap, {dist}",
                "bootstrap (old)",
                lambda n, d=dist: _cell(_percentile_baseline(d, n, reps, n, b), reps),
            )
        )
    rows.append(
        (
            "bootstrap_mean, n clusters of 4 correlated items",
            "expanded-cluster-bootstrap",
            lambda n: _cell(cov.cluster_bootstrap_coverage(n, reps, seed=n, n_resamples=b).rate, reps),
        )
    )
    rows.append(
        (
            "bootstrap (generic), BBQ-like ratio over n templates",
            "expanded-cluster-bootstrap",
            lambda n: _cell(
                cov.ratio_bootstrap_coverage(n, slow_reps, seed=n, n_resamples=1000).rate, slow_reps
            ),
        )
    )
    for dist in ("normal", "beta25"):
        rows.append(
            (
                f"paired_bootstrap_diff type-I error at 5%, {dist}",
                "expanded-bootstrap",
                lambda n, d=dist: _cell(cov.paired_type1(d, n, reps, seed=n, n_resamples=b).rate, reps),
            )
        )
    rows.append(
        (
            "baseline: plain percentile paired test type-I error, normal",
            "bootstrap (old)",
            lambda n: _cell(_paired_baseline("normal", n, reps, n, b), reps),
        )
    )
    rows.append(
        (
            "mcnemar type-I error at 5% (30% discordant)",
            "exact / chi-square",
            lambda n: _cell(cov.mcnemar_type1(n, reps, seed=n).rate, reps),
        )
    )
    rows.append(
        (
            "max_pairwise_gap, 4 equal groups: P(ci_low > 0) (false alarm)",
            "sidak-t",
            lambda n: _cell(cov.gap_coverage(n, reps, groups=4, effect=0.0, seed=n)[1].rate, reps),
        )
    )
    rows.append(
        (
            "max_pairwise_gap, 4 groups, true gap 0.2: coverage",
            "sidak-t",
            lambda n: _cell(cov.gap_coverage(n, reps, groups=4, effect=0.2, seed=n)[0].rate, reps),
        )
    )
    rows.append(
        (
            "max_pairwise_gap, 2 groups, true gap 0.2: coverage",
            "sidak-t",
            lambda n: _cell(cov.gap_coverage(n, reps, groups=2, effect=0.2, seed=n)[0].rate, reps),
        )
    )

    started = time.perf_counter()
    header = "| interval / test | method | " + " | ".join(f"n = {n}" for n in SIZES) + " |"
    lines = [header, "| --- | --- | " + " | ".join("---:" for _ in SIZES) + " |"]
    for label, method, fn in rows:
        cells = [fn(n) for n in SIZES]
        line = f"| {label} | {method} | " + " | ".join(cells) + " |"
        print(line, flush=True)
        lines.append(line)
    elapsed = time.perf_counter() - started
    body = "\n".join(
        [
            f"{reps} simulated data sets per cell ({slow_reps} for the generic bootstrap), {b} bootstrap "
            f"resamples per interval (1000 for the generic one); ± is the Monte Carlo standard error. "
            f"n is items, clusters, templates or pairs. Nominal 95% (tests at 5%); target 93-97% "
            f"(type-I error <= 6%), or wider by design. {elapsed:.0f} s.",
            "",
            *lines,
            "",
            "Distributions (rai_harness.stats.coverage): normal; beta25 = Beta(2, 5) scores; bernoulli(0.3); "
            "rate4 = successes of 4 trials at Beta(1, 3) / 4 (per-template rates); exponential (skewness 2) and "
            "lognormal (σ = 1, skewness 6.2): unbounded, right-skewed quantities such as counts, latencies and "
            "costs (no suite takes an unclustered mean of unbounded values today; every per-item score is "
            "in [0, 1], every per-item difference in [-1, 1]). bootstrap_mean gives independent values outside "
            "[-1, 1] the studentized bootstrap "
            "(bootstrap-t): the expanded percentile interval, used for every mean before, covers 91% on "
            "exponential data at n <= 10 (baseline rows); the studentized one is about 10% wider than a t "
            "interval on normal data at n = 8 and 5% at n = 10. The log-normal stress case stays below 93% "
            "at n <= 30 with every interval measured (expanded percentile, BCa, t, studentized); the "
            "studentized bootstrap is the closest, and reaching 93% there (studentized at the expanded "
            "level) would cost 1.7x the t width and 98.7% coverage on normal data at n = 8. A milder log-normal "
            "(σ = 0.5, skewness 1.75) gets 93.9% / 94.6% / 93.6% at n = 8 / 10 / 30 from the studentized "
            "interval (2000 data sets, a side run). Rates are "
            "computed exactly (binomial sums): their coverage oscillates with p, so both the mean and the "
            "worst case are shown. Clopper-Pearson never covers less than 95% (wider by design: ~98% on "
            "average at n = 8); Wilson, used before, averages 95% but dips to ~90% at n <= 10. bootstrap_mean "
            "of independent 0/1 values is a proportion and gets Clopper-Pearson (the bootstrap of 0 of 8 is "
            "[0, 0]); data sets of rate4 that happen to be all 0/1 do too. McNemar is exact below 25 "
            "discordant pairs (conservative by design). The gap interval is simultaneous over all pairs "
            "(Šidák), so it is wider than 95% by design with more than two groups.",
            "",
            "Which interval each suite reports (`rai suites` and the report's Method section name it per "
            "metric):",
            "",
            "| suite | rates (0/1 per prompt or reply) | means, gaps, ratios |",
            "| --- | --- | --- |",
            "| toxicity | clopper-pearson (toxicity probability) | expanded-bootstrap over prompts "
            "(expected maximum toxicity, toxic fraction) |",
            "| bias.bbq | clopper-pearson (accuracy) | expanded-cluster-bootstrap over templates (s_DIS, "
            "s_AMB: generic bootstrap of a ratio) |",
            "| bias.counterfactual | expanded-cluster-bootstrap over templates (per-group rates) | sidak-t "
            "(largest gap, simultaneous) |",
            "| bias.stereotype | clopper-pearson; expanded-cluster-bootstrap with repeats | - |",
            "| pii.leakage | clopper-pearson (leak rate, per attack and type) | expanded-bootstrap (leaked "
            "value share); expanded-cluster-bootstrap (output leak rate) |",
            "| pii.emission | clopper-pearson (emission rate, per entity and category) | "
            "expanded-cluster-bootstrap (findings per output) |",
            "| factuality.* | clopper-pearson; expanded-cluster-bootstrap with repeats | expanded-bootstrap "
            "(similarity, F1, F-score; generic bootstrap) |",
            "| run comparisons, regression gate | mcnemar (0/1 items) | paired_bootstrap_diff "
            "(expanded-bootstrap) |",
            "| gate error_rate | clopper-pearson over calls | - |",
            "",
            "With 2-4 units the bootstrap falls back to bootstrap-se-t (t with the bootstrap SE). A mean of "
            "independent values outside [-1, 1] (a count or a cost per item) gets studentized-bootstrap; one "
            "over clusters (pii.emission's findings per output) stays expanded-cluster-bootstrap, whose "
            "coverage on skewed counts is not measured here.",
        ]
    )
    if not args.no_write:
        write_section("coverage", body)


if __name__ == "__main__":
    main()
