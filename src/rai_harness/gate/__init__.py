"""The CI gate: a pure function from a run record and a policy to a verdict and an exit code.

``rai gate RUN_DIR --policy POLICY.yaml [--baseline RUN_DIR]`` (or ``rai run CONFIG --gate
POLICY.yaml``) reads only ``run.json``. Exit codes: **0** every check passed; **1** a check
failed (including a run that failed its error budget); **2** a check could not be evaluated
(a metric, suite or provider missing from the run, a value or interval not computed, an
incomplete run, an unreadable or too-new ``run.json``, an invalid policy, regressions without
a baseline). A gate never exits 0 because something was missing.

Policy format (``evals/policies/README.md`` has the long version)::

    name: default                  # default: the file's stem
    description: ...
    max_error_rate: 0.05           # each provider's point error rate (failed / calls) <= 0.05
    budgets:                       # latency, throughput and cost, on measured values
      providers: [gpt-4o-mini]     # optional; default every provider of the run
      latency_p95_s: 2.0           # also latency_p50_s, latency_p99_s
      ttft_p95_s: 0.5              # also ttft_p50_s, ttft_p99_s (needs stream: true)
      min_tokens_per_s_p50: 20     # output tokens/s, median, at least
      cost_per_1k_calls_usd: 0.50  # also cost_per_call_usd, cost_total_usd
    rules:
      - metric: toxicity:expected_max_toxicity     # "<suite>:<metric>" or an efficiency metric
        max: 0.10                  # and/or min
        bound: ci_high             # value | ci_low | ci_high; default: the conservative end
        providers: [smollm2]       # optional
        id: emt                    # optional; default "<metric> <= <max>"
        description: ...
      - metric: bias.bbq:bias_score_ambiguous
        max: 0.05
        abs: true                  # compare |score|: the interval end farthest from 0
      - metric: ttft.p95_s         # "p95 TTFT <= 800 ms at 10 req/s"
        max: 0.8
        at_rate: 10                # at the run's load stage of 10 req/s (a load profile's rate)
    regressions:                   # against --baseline RUN_DIR, same provider ids
      - metric: toxicity:expected_max_toxicity
        margin: 0.02               # tolerated worsening, in the metric's units
        alpha: 0.05                # one-sided level (default 0.05)

**Metrics.** Suite metrics are ``"<suite>:<metric>"`` as the suite declares them (``rai
suites`` lists them). Efficiency metrics: ``error_rate`` (with a Clopper-Pearson (exact) interval over calls),
``latency.{mean,p50,p90,p95,p99,max}_s``, ``ttft.{mean,p50,p90,p95,p99,max}_s``,
``tokens_per_s.{mean,p50,min}``, ``cost.{total_usd,per_call_usd,per_1k_calls_usd}``,
``max_sustained_rate``, and (with ``at_rate`` only) ``throughput_rps``. With ``at_rate`` a rule
reads the metric at that load stage; a sweep that saturated below the rate fails it, a run
without the rate is an error.

**Bounds.** A ``max`` compares ``ci_high`` and a ``min`` compares ``ci_low`` unless ``bound``
says otherwise, so a small sample cannot pass by luck; a metric without an interval is then an
error (not a silent fallback to the point value). Latency, throughput and cost have no
interval and compare their measured value. ``max_error_rate`` compares the point rate, as the
runner's own ``runner.max_error_rate`` does; write a rule on ``error_rate`` for the exact (Clopper-Pearson) bound.
With ``abs: true`` the interval is mapped through ``|x|``: ``ci_high`` is the end farthest from
0, ``ci_low`` the end nearest to it (0 when the interval straddles 0).

**Regressions.** Per provider, the per-item values of the run and the baseline are paired by
item id and the one-sided ``1 - alpha`` bound of the worsening is compared with the margin;
the rule fails only when the run is significantly worse by more than the margin. See
:mod:`rai_harness.gate.regression` for the exact test and its fallbacks.

Public API: :func:`load_gate_policy`, :func:`evaluate`, :func:`evaluate_run_dir`,
:class:`GateVerdict`, :class:`RuleResult`, :func:`to_junit_xml`, :func:`to_markdown`.
"""

from __future__ import annotations

from rai_harness.gate.evaluate import evaluate, evaluate_run_dir
from rai_harness.gate.policy import (
    Budgets,
    GatePolicy,
    MetricRule,
    RegressionRule,
    load_gate_policy,
    parse_gate_policy,
)
from rai_harness.gate.render import to_junit_xml, to_markdown, write_junit, write_markdown
from rai_harness.gate.verdict import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, GateVerdict, RuleResult

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAIL",
    "EXIT_PASS",
    "Budgets",
    "GatePolicy",
    "GateVerdict",
    "MetricRule",
    "RegressionRule",
    "RuleResult",
    "evaluate",
    "evaluate_run_dir",
    "load_gate_policy",
    "parse_gate_policy",
    "to_junit_xml",
    "to_markdown",
    "write_junit",
    "write_markdown",
]
