"""Coverage of every interval and type-I error of every test the suites use, at n = 8, 10, 30, 100.

Full-size runs of the simulations in :mod:`rai_harness.stats.coverage` (the test suite runs
the same functions at a few hundred replications). Side by side in the same process, the
plain percentile bootstrap (the method before the expanded interval) on the same data and
the same resamples, as the baseline. Writes the ``coverage`` section of RESULTS.md.

Target: coverage 93-97% (type-I error <= 6% for tests), or wider by design (exact
Clopper-Pearson, exact McNemar, simultaneous Šidák).

Means of unbounded values (counts, latencies, costs) get their own table over a family of
skewed distributions (exponential, log-normal σ = 0.5 and 1, Poisson, negative-binomial and
zero-inflated counts) with the two methods used before side by side: the studentized
bootstrap at the nominal level and the expanded percentile interval. Clustered counts (pii.emission's
findings per output) get a table over the cluster counts the datasets ship (6-100). The paired test
gets type-I error and power tables over the same family, the symmetric bootstrap-t beside the
expanded percentile test used before, on the same data and resamples.

Run: nice -n 10 .venv/bin/python benchmarks/coverage.py [--reps 1000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rai_harness.stats import Estimate, clopper_pearson
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


def _nominal_studentized(x: np.ndarray, b: int, seed: int) -> Estimate:
    """bootstrap_mean before the long-tail widening and the count interval (same draws).

    Values within [-1, 1]: exact interval for 0/1, expanded percentile otherwise; other values:
    bootstrap-t with both ends at the nominal level, the expanded percentile where an end is
    infinite.
    """
    if np.all(np.abs(x) <= 1.0):
        if np.all((x == 0.0) | (x == 1.0)):
            return clopper_pearson(int(x.sum()), len(x))
        return mean_with_draws(x, clusters=None, n_resamples=b, seed=seed, confidence=0.95)[0]
    n = len(x)
    drawn = x[np.random.default_rng(seed).integers(0, n, size=(b, n))]
    diff = drawn.mean(axis=1) - x.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        pivots = np.sort(np.where(diff == 0.0, 0.0, diff / (drawn.std(axis=1, ddof=1) / math.sqrt(n))))
    j = math.ceil((b + 1) * 0.025) - 1
    se = x.std(ddof=1) / math.sqrt(n)
    low, high = x.mean() - pivots[b - j] * se, x.mean() - pivots[j - 1] * se
    if not (np.isfinite(low) and np.isfinite(high)):
        return mean_with_draws(x, clusters=None, n_resamples=b, seed=seed, confidence=0.95)[0]
    return Estimate(value=float(x.mean()), ci_low=float(low), ci_high=float(high), n=n)


def _unbounded_cell(dist: str, n: int, reps: int, b: int, method: str) -> cov.SimResult:
    """Coverage and mean width of one method on the data bootstrap_mean_coverage draws."""
    counts = dist in cov.COUNT_DISTRIBUTIONS
    if method == "new":
        return cov.bootstrap_mean_coverage(dist, n, reps, seed=n, n_resamples=b, unbounded=counts or None)
    draw, mu = cov.DISTRIBUTIONS[dist]
    rng = np.random.default_rng(n)
    hits, widths = 0, []
    for i in range(reps):
        x = draw(rng, n)
        est = (
            _nominal_studentized(x, b, n + i)
            if method == "nominal"
            else mean_with_draws(x, clusters=None, n_resamples=b, seed=n + i, confidence=0.95)[0]
        )
        if est.ci_low is not None and est.ci_high is not None:
            hits += est.ci_low <= mu <= est.ci_high
            widths.append(est.ci_high - est.ci_low)
    return cov.SimResult(hits / reps, reps, method, float(np.mean(widths)))


def _cluster_count_cell(k: int, size: int, reps: int, b: int, new: bool) -> cov.SimResult:
    """Clustered counts: bootstrap_mean as pii.emission calls it, or the expanded cluster percentile."""
    if new:
        return cov.cluster_count_coverage(k, reps, size=size, seed=k, n_resamples=b)
    rng = np.random.default_rng(k)
    hits, widths = 0, []
    for i in range(reps):
        values, clusters = cov.draw_cluster_counts(rng, k, size)
        est, _ = mean_with_draws(values, clusters=clusters, n_resamples=b, seed=k + i, confidence=0.95)
        if est.ci_low is not None and est.ci_high is not None:
            hits += est.ci_low <= cov.CLUSTER_COUNT_MEAN <= est.ci_high
            widths.append(est.ci_high - est.ci_low)
    return cov.SimResult(hits / reps, reps, "expanded-cluster-bootstrap", float(np.mean(widths)))


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


def _diff_sd(dist: str) -> float:
    """SD of the difference of two independent draws of ``dist`` (seeded, 400 000 draws)."""
    draw, _ = cov.DISTRIBUTIONS[dist]
    rng = np.random.default_rng(0)
    return float(np.std(draw(rng, 400_000) - draw(rng, 400_000)))


def _cell(value: float, reps: int | None) -> str:
    if reps is None:
        return f"{value:.1%}"
    se = np.sqrt(value * (1 - value) / reps)
    return f"{value:.1%} ±{se:.1%}"


def _width_cell(r: cov.SimResult) -> str:
    """Coverage ± its Monte Carlo SE and the mean interval width."""
    return f"{_cell(r.rate, r.reps)}, w {r.width:.2f}"


UNBOUNDED = ("exponential", "lognormal05", "lognormal", "poisson", "negbin", "zip", "normal")
UNBOUNDED_METHODS = (
    ("new", "studentized(-cluster)-bootstrap: long-tail end at α', count interval"),
    ("nominal", "before: studentized at the nominal level"),
    ("expanded", "before that: expanded percentile"),
)
CLUSTER_COUNTS = (6, 8, 10, 30, 100)
#: Paired differences of unbounded values (a shared N(0, 1) base per pair puts them outside [-1, 1]).
PAIRED = ("normal", "exponential", "lognormal05", "lognormal", "poisson", "negbin", "zip")
PAIRED_POWER = ("normal", "lognormal", "negbin", "poisson")
#: The moderate alternative: a true shift of this many SDs of the differences.
EFFECT = 0.5


def _table(
    header: str, columns: list[str], rows: list[tuple[str, str, Callable[[], list[str]]]]
) -> list[str]:
    lines = [f"| {header} | method | " + " | ".join(columns) + " |"]
    lines.append("| --- | --- | " + " | ".join("---:" for _ in columns) + " |")
    for label, method, fn in rows:
        line = f"| {label} | {method} | " + " | ".join(fn()) + " |"
        print(line, flush=True)
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=1000, help="simulated data sets per cell")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval")
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
        "beta25": "expanded-bootstrap",
        "bernoulli": "clopper-pearson",
        "rate4": "expanded-bootstrap",
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
            "max_pairwise_gap, 4 equal groups (rates of 6 replies): P(ci_low > 0) (false alarm)",
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

    sparse = (
        ("sparse 0/1 (8 groups, one flagged on 30% of templates)", 8, 1),
        ("sparse rates of 6 replies (2 groups, 30% of one group's flagged)", 2, 6),
    )

    @functools.cache
    def sparse_run(n: int, adjusted: bool, groups: int, replies: int) -> tuple[cov.SimResult, cov.SimResult]:
        # One simulation gives both rows (coverage, gate passes): run it once per cell.
        return cov.sparse_gap_coverage(n, reps, adjusted=adjusted, groups=groups, replies=replies, seed=n)

    for label, groups, replies in sparse:
        for adjusted, method in ((True, "sidak-t, variance floored at one step"), (False, "sidak-t (old)")):
            prefix = "" if adjusted else "baseline: "
            for which, title in (
                (0, f"{prefix}max_pairwise_gap, {label}: coverage"),
                (1, f"{prefix}same: a gate rule ci_high <= 0.3 (the true gap) passes"),
            ):
                rows.append(
                    (
                        title,
                        method,
                        lambda n, a=adjusted, g=groups, k=replies, i=which: _cell(
                            sparse_run(n, a, g, k)[i].rate, reps
                        ),
                    )
                )

    load_before = os.getloadavg()[0]
    print(f"load average (1 min) before: {load_before:.2f}", flush=True)
    started = time.perf_counter()
    lines = _table(
        "interval / test",
        [f"n = {n}" for n in SIZES],
        [(lbl, m, lambda f=fn: [f(n) for n in SIZES]) for lbl, m, fn in rows],
    )
    unbounded_rows: list[tuple[str, str, Callable[[], list[str]]]] = [
        (
            dist,
            label,
            lambda d=dist, m=method: [_width_cell(_unbounded_cell(d, n, reps, b, m)) for n in SIZES],
        )
        for dist in UNBOUNDED
        for method, label in UNBOUNDED_METHODS
    ]
    unbounded_lines = _table("distribution", [f"n = {n}" for n in SIZES], unbounded_rows)
    cluster_rows: list[tuple[str, str, Callable[[], list[str]]]] = [
        (
            f"{size} output{'s' if size > 1 else ''} per prompt",
            "studentized-cluster-bootstrap" if new else "before: expanded-cluster-bootstrap",
            lambda size=size, new=new: [
                _width_cell(_cluster_count_cell(k, size, reps, b, new)) for k in CLUSTER_COUNTS
            ],
        )
        for size in (1, 3)
        for new in (True, False)
    ]
    cluster_lines = _table("counts over k prompts", [f"k = {k}" for k in CLUSTER_COUNTS], cluster_rows)

    def paired_cell(dist: str, n: int, expanded: bool, shift: float = 0.0, base_sd: float = 1.0) -> str:
        r = cov.paired_type1(
            dist, n, reps, seed=n, n_resamples=b, shift=shift, base_sd=base_sd, expanded=expanded
        )
        return _cell(r.rate, reps)

    sizes = [f"n = {n}" for n in SIZES]
    paired_rows: list[tuple[str, str, Callable[[], list[str]]]] = [
        (
            dist,
            label,
            lambda d=dist, e=expanded: [paired_cell(d, n, e) for n in SIZES],
        )
        for dist in PAIRED
        for expanded, label in (
            (False, "symmetric-studentized-bootstrap"),
            (True, "before: expanded-bootstrap"),
        )
    ]
    paired_rows.append(
        (
            "beta25, no shared base (scores in [0, 1])",
            "expanded-bootstrap (unchanged)",
            lambda: [paired_cell("beta25", n, False, base_sd=0.0) for n in SIZES],
        )
    )
    paired_rows.append(
        (
            "normal",
            "plain percentile (before the expanded one)",
            lambda: [_cell(_paired_baseline("normal", n, reps, n, b), reps) for n in SIZES],
        )
    )
    paired_lines = _table("differences of", sizes, paired_rows)
    power_rows: list[tuple[str, str, Callable[[], list[str]]]] = [
        (
            f"{dist}, shift {EFFECT * _diff_sd(dist):.2f}",
            label,
            lambda d=dist, e=expanded: [paired_cell(d, n, e, shift=EFFECT * _diff_sd(d)) for n in SIZES],
        )
        for dist in PAIRED_POWER
        for expanded, label in (
            (False, "symmetric-studentized-bootstrap"),
            (True, "before: expanded-bootstrap"),
        )
    ]
    power_lines = _table("power: differences of", sizes, power_rows)
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) after: {load_after:.2f}; {elapsed:.0f} s", flush=True)
    body = "\n".join(
        [
            f"{reps} simulated data sets per cell ({slow_reps} for the generic bootstrap), {b} bootstrap "
            f"resamples per interval (1000 for the generic one); ± is the Monte Carlo standard error. "
            f"n is items, clusters, templates or pairs. Nominal 95% (tests at 5%); target 93-97% "
            f"(type-I error <= 6%), or wider by design. {elapsed:.0f} s, load average {load_before:.1f} "
            f"before, {load_after:.1f} after.",
            "",
            *lines,
            "",
            "Distributions (rai_harness.stats.coverage): normal; beta25 = Beta(2, 5) scores; bernoulli(0.3); "
            "rate4 = successes of 4 trials at Beta(1, 3) / 4 (per-template rates). Rates are computed exactly "
            "(binomial sums): their coverage oscillates with p, so both the mean and the worst case are shown. "
            "Clopper-Pearson never covers less than 95% (wider by design: ~98% on average at n = 8); Wilson, "
            "used before, averages 95% but dips to ~90% at n <= 10. bootstrap_mean of independent 0/1 values "
            "is a proportion and gets Clopper-Pearson (the bootstrap of 0 of 8 is [0, 0]); data sets of rate4 "
            "that happen to be all 0/1 do too. McNemar is exact below 25 discordant pairs (conservative by "
            "design). The gap interval is simultaneous over all pairs (Šidák), so it is wider than 95% by "
            "design with more than two groups. For rates each pair's variance gets one more squared "
            "deviation of one step of the data (1 for 0/1 outcomes, 1/6 for rates of 6 replies): on sparse 0/1 outcomes the "
            "unadjusted interval collapses to [0, 0] whenever no flag is seen, so it under-covers at few "
            "templates and a gate bound at the true gap passes far more often than 2.5%.",
            "",
            "**Means of unbounded values** (counts, latencies, costs; the suites' only one is pii.emission's "
            "findings per output, a count). Cells: coverage, and w = mean interval width (true mean 1.0 for "
            "exponential and negbin, 1.13 lognormal05, 1.65 lognormal, 0.5 poisson, 0.6 zip, 0.5 normal). "
            "exponential (skewness 2), lognormal05 (σ = 0.5, skewness 1.75), lognormal (σ = 1, skewness 6.2: "
            "a stress case), poisson (mean 0.5, 61% zeros), negbin (mean 1, size 0.5, 58% zeros), zip (70% "
            "structural zeros, else Poisson(2); 74% zeros), normal (mean 0.5, SD 1). The counts are passed "
            "with unbounded=True, as pii.emission does; the continuous ones are classified by the data "
            "(values outside [-1, 1]), so a data set that happens to lie within [-1, 1] keeps the expanded "
            "percentile interval.",
            "",
            *unbounded_lines,
            "",
            "Before, counts with many zeros covered 82-88% at n = 8-10 (a sample of zeros gave [0, 0], and "
            "resamples of one repeated value left the bootstrap-t without an end), and log-normal (σ = 1) "
            "data 91%. Now the end on the long tail is taken at the expanded level α' (0.0115 at n = 8, "
            "0.017 at 10, 0.0375 at 30, 0.046 at 100) and counts get at least the quasi-Poisson interval "
            "(eight zeros: [0, 0.65]). Chosen over the nominal-level bootstrap-t, a symmetric bootstrap-t, "
            "a bootstrap-t on the log scale, the expanded level on both ends and the quasi-Poisson interval "
            "alone (side runs, 1000 data sets): the symmetric and log-scale ones covered 89% and 91% on "
            "log-normal data at n = 8, the log scale with intervals thousands wide; both ends expanded "
            "covered about the same on skewed data with 5-7% more width and 98.7% on normal data at n = 8; "
            "without the count interval sparse counts stayed at 81-89%, and the count interval alone gave "
            "89-90% on negbin and zip at n = 8. The price "
            "is width at n <= 10 (about 1.2-1.8x the interval used before) and coverage above 97% there on "
            "the milder shapes, by design: zip at n = 8 is 99.9% because its samples of eight zeros (9%) "
            "are covered only by an interval that reaches 0.6 after eight zeros. The log-normal stress "
            "case at n = 30 stays at about 92% (α' is close to α there); no suite reports a mean of that "
            "shape. Values within [-1, 1] (every other suite mean) keep the expanded percentile interval "
            "(rows above), so bounded rates and scores are not widened. Paired differences: own table below.",
            "",
            "**Clustered counts** (pii.emission's findings per output, resampled by prompt): k prompts of 1 or 3 "
            "outputs, each prompt's rate Gamma(shape 0.5, mean 1), outputs Poisson at that rate (with one "
            "output per prompt the negbin counts above; with three, correlated within a prompt). Before: the "
            "expanded cluster percentile interval pii.emission used.",
            "",
            *cluster_lines,
            "",
            "**Paired differences** (paired_bootstrap_diff: the regression gate and run comparisons). "
            "Type-I error at 5%: a = base + e1, b = base + e2, e1 and e2 i.i.d. from the distribution, "
            "base ~ N(0, 1) shared by the pair (so the values are outside [-1, 1] and count as unbounded); "
            "before: the expanded percentile test on the same data and resamples. Differences of scores "
            "within [-1, 1] keep the expanded percentile test (beta25 row: no shared base, values in [0, 1]; "
            "identical to before by construction).",
            "",
            *paired_lines,
            "",
            f"Power at 5% against a moderate alternative, a shifted by {EFFECT} SD of the differences "
            "(same data for both methods):",
            "",
            *power_lines,
            "",
            "Unbounded differences now get the symmetric studentized bootstrap (bootstrap-t; Hall 1988): "
            "the pivots of studentized_mean drawn from the differences, interval d ± h se with h the "
            "(B + 1 - j)-th smallest |t*|, j = ceil((B + 1) alpha) - 1, and p = (1 + #{|t*| >= |t0|}) / "
            "(B + 1), so p < alpha exactly when the interval excludes 0. Symmetric because differences of "
            "exchangeable pairs are: the equal-tailed bootstrap-t of studentized_mean (long-tail end at "
            "alpha') follows the sample's skewness, which for a difference is noise that goes with the "
            "sign of the mean, and rejected a true null 9-10% of the time on negbin and log-normal "
            "differences at n = 30 in a side run (600 data sets); the symmetric one at the expanded level "
            "alpha' was conservative (0-1% at n <= 10). It is conservative on skewed shapes at n <= 10 (1-4%), "
            "which costs power there (power table; part of the old test's power at n <= 10 is its excess "
            "type-I error); at n >= 30 the power is about the old test's. A cell where both methods are "
            "high is the Monte Carlo noise of that cell's data sets (both test the same ones): at n = 30, "
            "two other seeds with 1000 data sets each gave 5.4% and 4.1% on normal differences (before: "
            "5.2%, 4.2%) and 4.6% and 4.1% on lognormal05 (before: 5.6%, 4.5%); at n = 100 the discrete poisson and zip "
            "differences are at 6.1-6.3% (before 5.7-5.9%), within 2 Monte Carlo SE of 5%. Where resamples of one "
            "repeated difference make |t*| infinite at the order statistic (mostly tied differences, e.g. "
            "sparse counts at n = 8), the expanded percentile test is used and the note says so.",
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
            "studentized-cluster-bootstrap with the count interval (findings per output) |",
            "| factuality.* | clopper-pearson; expanded-cluster-bootstrap with repeats | expanded-bootstrap "
            "(similarity, F1, F-score; generic bootstrap) |",
            "| run comparisons, regression gate | mcnemar (0/1 items) | paired_bootstrap_diff "
            "(expanded-bootstrap for scores in [-1, 1]; symmetric-studentized-bootstrap for unbounded "
            "values) |",
            "| gate error_rate | clopper-pearson over calls | - |",
            "",
            "With 2-4 units the bootstrap falls back to bootstrap-se-t (t with the bootstrap SE). Latency, "
            "tokens and cost are reported as percentiles and totals, without an interval of a mean.",
        ]
    )
    if not args.no_write:
        write_section("coverage", body)


if __name__ == "__main__":
    main()
