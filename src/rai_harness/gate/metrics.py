"""How a gate policy addresses a number in a run record.

Two kinds of metric:

* **suite metrics**, written ``"<suite>:<metric>"`` (``toxicity:expected_max_toxicity``,
  ``bias.bbq:bias_score_ambiguous``): an :class:`~rai_harness.stats.Estimate` in
  ``RunRecord.suites[suite].results[provider].metrics[metric]``, usually with a confidence
  interval; which way is better comes from the suite's
  :class:`~rai_harness.record.MetricSpec`.
* **efficiency metrics**, plain names (``latency.p95_s``, ``cost.per_1k_calls_usd``), read from
  the provider's :class:`~rai_harness.record.ProviderSummary`. Only ``error_rate`` has an
  interval (Clopper-Pearson, over calls); the others are measured values without one.
  ``guard_rail_errors`` (rail errors plus timeouts) and ``guard_slow_rails`` (checks slower
  than the policy's ``timeout_ms``) count a guarded provider's rails.

**At a rate.** Under a load profile (``load:`` of the run config) latency, TTFT, tokens/s,
``error_rate`` and ``throughput_rps`` (successful calls completed per second) can also be read
at one stage of the run, by its rate: :func:`lookup_stage_metric`. ``max_sustained_rate`` is
the highest rate of a run's load stages that the stop rule did not judge saturated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from rai_harness.errors import did_you_mean
from rai_harness.record import (
    Distribution,
    LoadStage,
    MetricSpec,
    ProviderSummary,
    RunRecord,
    SuiteResult,
    SuiteRun,
)
from rai_harness.stats import Estimate, clopper_pearson

__all__ = [
    "EFFICIENCY_METRICS",
    "EfficiencyMetric",
    "MetricRef",
    "StageMiss",
    "SuiteMetric",
    "abs_interval",
    "lookup_efficiency_metric",
    "lookup_stage_metric",
    "lookup_suite_metric",
    "parse_metric",
]


@dataclass(frozen=True)
class EfficiencyMetric:
    """A provider-level number: latency, throughput, errors, cost.

    Attributes:
        name: How a policy writes it, e.g. ``"latency.p95_s"``.
        display: Human name.
        unit: Unit for messages (``"s"``, ``"tokens/s"``, ``"USD"``, ``""``).
        direction: ``"lower"`` or ``"higher"`` is better.
        has_interval: Whether :attr:`read` returns a confidence interval.
        read: ProviderSummary -> the estimate, or a string saying why it is missing.
        read_stage: LoadStage -> the same at one stage of a load profile (``None``: the
            metric has no per-stage value, so a rule cannot give it ``at_rate``).
    """

    name: str
    display: str
    unit: str
    direction: Literal["lower", "higher"]
    has_interval: bool
    read: Callable[[ProviderSummary], Estimate | str]
    read_stage: Callable[[LoadStage], Estimate | str] | None = None


def _from_distribution(
    attr: str, stat: str, what: str
) -> Callable[[ProviderSummary | LoadStage], Estimate | str]:
    # A provider summary and a load stage name their distributions alike.
    def read(summary: ProviderSummary | LoadStage) -> Estimate | str:
        dist: Distribution = getattr(summary, attr)
        value = getattr(dist, stat)
        if value is None:
            hint = " (was the provider streaming? TTFT needs stream: true)" if attr == "ttft_s" else ""
            return f"no {what} measured: {dist.n} successful calls with a value{hint}"
        return Estimate(value=float(value), n=dist.n, method="none")

    return read


def _from_cost(attr: str) -> Callable[[ProviderSummary], Estimate | str]:
    def read(summary: ProviderSummary) -> Estimate | str:
        cost = summary.cost
        if cost.priced_by == "not priced":
            return "the provider is not priced: add `pricing` to it in the run config (or a price-table row)"
        value = getattr(cost, attr)
        if value is None:
            return f"cost.{attr} is not available ({summary.succeeded} successful calls)"
        return Estimate(value=float(value), n=summary.succeeded, method="none")

    return read


def _error_rate(summary: ProviderSummary | LoadStage) -> Estimate | str:
    if summary.calls == 0:
        return "the provider made no calls"
    # A Clopper-Pearson (exact) interval over calls, so a rule can be as conservative as a suite metric's.
    return clopper_pearson(summary.failed, summary.calls)


def _throughput(stage: LoadStage) -> Estimate | str:
    if stage.achieved_rps is None:
        return f"no throughput measured at this stage ({stage.succeeded} successful calls of {stage.calls})"
    return Estimate(value=float(stage.achieved_rps), n=stage.succeeded, method="none")


def _max_sustained_rate(summary: ProviderSummary) -> Estimate | str:
    load = summary.load
    if load is None or not load.planned_rates:
        return "the run has no rate load profile: add `load: {profile: sweep, ...}` to the run config"
    n = sum(s.calls for s in load.stages)
    if load.max_sustained_rate is None:
        # Measured, and not one stage kept up: that is a value (0), not a missing one.
        return Estimate(value=0.0, n=n, method="none", note=f"every stage was saturated ({load.stop_reason})")
    return Estimate(value=float(load.max_sustained_rate), n=n, method="none")


def _from_guard(attr: str) -> Callable[[ProviderSummary], Estimate | str]:
    def read(summary: ProviderSummary) -> Estimate | str:
        if summary.guard is None:
            return "the provider runs without a guard (no rails to count)"
        return Estimate(value=float(getattr(summary.guard, attr)), n=summary.calls, method="none")

    return read


def _efficiency_table() -> dict[str, EfficiencyMetric]:
    table: dict[str, EfficiencyMetric] = {
        "error_rate": EfficiencyMetric(
            "error_rate", "Error rate (failed calls / calls)", "", "lower", True, _error_rate, _error_rate
        )
    }
    for prefix, attr, display in (("latency", "latency_s", "latency"), ("ttft", "ttft_s", "TTFT")):
        for stat in ("mean", "p50", "p90", "p95", "p99", "max"):
            name = f"{prefix}.{stat}_s"
            read = _from_distribution(attr, stat, f"{display} {stat}")
            table[name] = EfficiencyMetric(name, f"{display} {stat}", "s", "lower", False, read, read)
    for stat in ("mean", "p50", "min"):
        name = f"tokens_per_s.{stat}"
        read = _from_distribution("output_tokens_per_s", stat, f"output tokens/s {stat}")
        table[name] = EfficiencyMetric(
            name, f"output tokens/s {stat}", "tokens/s", "higher", False, read, read
        )
    table["throughput_rps"] = EfficiencyMetric(
        "throughput_rps",
        "successful calls completed per second",
        "req/s",
        "higher",
        False,
        lambda _s: "throughput_rps is measured per load stage: give the rule `at_rate`",
        _throughput,
    )
    table["max_sustained_rate"] = EfficiencyMetric(
        "max_sustained_rate",
        "highest load-stage rate not judged saturated",
        "req/s",
        "higher",
        False,
        _max_sustained_rate,
    )
    for attr, display in (
        ("total_usd", "cost of the run"),
        ("per_call_usd", "cost per call"),
        ("per_1k_calls_usd", "cost per 1,000 calls"),
    ):
        table[f"cost.{attr}"] = EfficiencyMetric(
            f"cost.{attr}", display, "USD", "lower", False, _from_cost(attr)
        )
    # Rail checks that failed (errors + timeouts; each failed its call in the run) and checks
    # slower than the policy's timeout_ms (in production they would have applied on_error).
    table["guard_rail_errors"] = EfficiencyMetric(
        "guard_rail_errors", "guard rail errors and timeouts", "", "lower", False, _from_guard("failures")
    )
    table["guard_slow_rails"] = EfficiencyMetric(
        "guard_slow_rails",
        "guard rail checks slower than the policy timeout",
        "",
        "lower",
        False,
        _from_guard("slow_rails"),
    )
    return table


#: Efficiency metric name -> definition.
EFFICIENCY_METRICS: dict[str, EfficiencyMetric] = _efficiency_table()


@dataclass(frozen=True)
class MetricRef:
    """A parsed metric address.

    Attributes:
        text: As written in the policy.
        suite: The suite name, or ``None`` for an efficiency metric.
        name: The metric's key within the suite, or the efficiency metric name.
    """

    text: str
    suite: str | None
    name: str

    @property
    def efficiency(self) -> EfficiencyMetric | None:
        """The efficiency metric's definition, or ``None`` for a suite metric."""
        return None if self.suite is not None else EFFICIENCY_METRICS[self.name]


def parse_metric(text: str) -> MetricRef:
    """Parse ``"<suite>:<metric>"`` or an efficiency metric name.

    Args:
        text: The address as written in a policy.

    Returns:
        The parsed reference. Suite and metric names are checked against a run record
        only when the gate runs (suites can come from plugins).

    Raises:
        ValueError: An empty part, or an unknown efficiency metric (with a suggestion).
    """
    text = text.strip()
    if ":" in text:
        suite, _, name = text.partition(":")
        suite, name = suite.strip(), name.strip()
        if not suite or not name or ":" in name:
            raise ValueError(
                f"write a suite metric as '<suite>:<metric>', e.g. 'toxicity:expected_max_toxicity' (got {text!r})"
            )
        return MetricRef(text=f"{suite}:{name}", suite=suite, name=name)
    if text in EFFICIENCY_METRICS:
        return MetricRef(text=text, suite=None, name=text)
    raise ValueError(
        f"unknown metric {text!r}{did_you_mean(text, EFFICIENCY_METRICS)}: suite metrics are written "
        f"'<suite>:<metric>'; efficiency metrics are {', '.join(EFFICIENCY_METRICS)}"
    )


def _listed(names: Iterable[str]) -> str:
    shown = sorted(names)
    return ", ".join(shown) if shown else "none"


@dataclass(frozen=True)
class SuiteMetric:
    """A suite metric found in a run record for one provider.

    Attributes:
        estimate: The metric's estimate (its ``value`` is not ``None``).
        spec: The suite's metadata for the metric (direction, unit), if it declares one.
        suite: The suite's record.
        result: The provider's results for the suite.
    """

    estimate: Estimate
    spec: MetricSpec | None
    suite: SuiteRun
    result: SuiteResult


def lookup_suite_metric(record: RunRecord, ref: MetricRef, provider: str) -> SuiteMetric | str:
    """Find ``ref`` (a suite metric) for ``provider`` in ``record``.

    Args:
        record: The run record.
        ref: A suite metric reference.
        provider: The provider id.

    Returns:
        The metric, or a sentence saying why it is missing (no suite, scoring error, unknown
        metric, no results for the provider, value not computed).
    """
    assert ref.suite is not None, "lookup_suite_metric needs a suite metric"
    suite = record.suites.get(ref.suite)
    if suite is None:
        return (
            f"suite {ref.suite!r} is not in this run{did_you_mean(ref.suite, record.suites)}; "
            f"suites run: {_listed(record.suites)}"
        )
    if suite.error:
        return f"suite {ref.suite!r} could not be scored ({suite.error}); its metrics are missing"
    spec = next((m for m in suite.metrics if m.name == ref.name), None)
    known = {m.name for m in suite.metrics}
    for res in suite.results.values():
        known.update(res.metrics)
    if ref.name not in known:
        return f"suite {ref.suite!r} has no metric {ref.name!r}{did_you_mean(ref.name, known)}; its metrics: {_listed(known)}"
    result = suite.results.get(provider)
    if result is None:
        return f"provider {provider!r} has no results for suite {ref.suite!r} (results for: {_listed(suite.results)})"
    est = result.metrics.get(ref.name)
    # NaN is "not computed" too: the record reader refuses it, but a record built in memory
    # (or by another tool) could carry one, and every comparison with NaN is False, i.e. a pass.
    if est is None or est.value is None or math.isnan(est.value):
        why = est.note if est is not None and est.note else "no value"
        return f"{ref.text} was not computed for {provider!r} ({why})"
    return SuiteMetric(estimate=est, spec=spec, suite=suite, result=result)


def lookup_efficiency_metric(record: RunRecord, ref: MetricRef, provider: str) -> Estimate | str:
    """Read an efficiency metric of ``provider`` from ``record``.

    Args:
        record: The run record.
        ref: An efficiency metric reference.
        provider: The provider id.

    Returns:
        The estimate (an interval only for ``error_rate``), or why it is missing.
    """
    eff = ref.efficiency
    assert eff is not None, "lookup_efficiency_metric needs an efficiency metric"
    summary = record.providers.get(provider)
    if summary is None:
        return (
            f"provider {provider!r} is not in this run{did_you_mean(provider, record.providers)}; "
            f"providers: {_listed(record.providers)}"
        )
    return eff.read(summary)


def abs_interval(low: float, high: float) -> tuple[float, float]:
    """The interval of ``|x|`` for ``x`` in ``[low, high]``: ``[0, …]`` when it straddles 0."""
    far = max(abs(low), abs(high))
    near = 0.0 if low <= 0.0 <= high else min(abs(low), abs(high))
    return near, far


@dataclass(frozen=True)
class StageMiss:
    """Why a metric has no value at a rate: ``fail`` when the run could not sustain the rate.

    Attributes:
        message: One sentence for the verdict.
        fail: ``True``: a sweep stopped (saturated) below the rate, so the provider does not
            meet any condition at it (a failed check); ``False``: the run never planned the
            rate, so nothing can be decided (an error).
    """

    message: str
    fail: bool


def _rates(rates: Iterable[float | None]) -> str:
    shown = [f"{r:g}" for r in rates if r is not None]
    return ", ".join(shown) if shown else "none"


def lookup_stage_metric(
    record: RunRecord, ref: MetricRef, provider: str, rate: float
) -> Estimate | StageMiss | str:
    """Read an efficiency metric of ``provider`` at the load stage of ``rate`` requests/s.

    Returns:
        The estimate; a :class:`StageMiss` when the run has no stage at that rate; or a
        sentence saying why the value is missing at a stage that exists.
    """
    eff = ref.efficiency
    assert eff is not None and eff.read_stage is not None, "lookup_stage_metric needs a per-stage metric"
    summary = record.providers.get(provider)
    if summary is None:
        return (
            f"provider {provider!r} is not in this run{did_you_mean(provider, record.providers)}; "
            f"providers: {_listed(record.providers)}"
        )
    load = summary.load
    if load is None or not load.planned_rates:
        profile = f"a {load.profile!r} load profile" if load is not None else "no load profile"
        return StageMiss(
            f"the run has {profile}, so no stage at {rate:g} req/s: run it with `load:` "
            f"`constant`/`poisson` at rate {rate:g}, or a `sweep` whose rates include {rate:g}",
            fail=False,
        )
    stage = load.stage_at(rate)
    if stage is not None:
        return eff.read_stage(stage)
    unreached = any(math.isclose(r, rate, rel_tol=1e-6) for r in load.unreached_rates)
    if unreached and load.stopped_at_rate is not None:
        return StageMiss(
            f"the sweep stopped at {load.stopped_at_rate:g} req/s ({load.stop_reason}) before reaching "
            f"{rate:g} req/s: the provider does not sustain that rate",
            fail=True,
        )
    return StageMiss(
        f"the run has no load stage at {rate:g} req/s; its rates: {_rates(s.rate for s in load.stages)} "
        f"(planned: {_rates(load.planned_rates)}); put {rate:g} in the sweep's `rates`",
        fail=False,
    )
