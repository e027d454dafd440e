"""Gate policy files: pydantic models, validation, and expansion into checks.

The format is documented in :mod:`rai_harness.gate` and ``evals/policies/README.md``. Every
section is ``extra="forbid"``: an unknown key is a :class:`~rai_harness.errors.ConfigError`
that names the file, the key path and the allowed keys (with a "did you mean").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from rai_harness.errors import ConfigError
from rai_harness.gate.metrics import EFFICIENCY_METRICS, MetricRef, parse_metric
from rai_harness.markdown import require_printable
from rai_harness.stats.estimate import strict_number, strict_whole_number
from rai_harness.validation import format_validation_error, read_yaml_file

__all__ = [
    "Bound",
    "Budgets",
    "Check",
    "ExpandedPolicy",
    "GatePolicy",
    "MetricRule",
    "RegressionCheck",
    "RegressionRule",
    "load_gate_policy",
    "parse_gate_policy",
]

Bound = Literal["value", "ci_low", "ci_high"]
Side = Literal["max", "min"]
# Strict: `max: true` or `max: "1.0"` is a typo or a quoting mistake, not the number pydantic
# would coerce it to (a bool threshold once passed every run at 1.0).
FiniteFloat = Annotated[float, BeforeValidator(strict_number), Field(allow_inf_nan=False)]
StrictFloat = Annotated[float, BeforeValidator(strict_number)]
StrictInt = Annotated[int, BeforeValidator(strict_whole_number)]
#: A policy or rule name: shown in CI logs, JUnit and Markdown, so no control characters.
Name = Annotated[str, AfterValidator(require_printable), Field(min_length=1)]
ProviderIds = Annotated[list[str], Field(min_length=1)]

#: Budget key -> (efficiency metric, which side of it the budget limits).
BUDGET_METRICS: dict[str, tuple[str, Side]] = {
    "latency_p50_s": ("latency.p50_s", "max"),
    "latency_p95_s": ("latency.p95_s", "max"),
    "latency_p99_s": ("latency.p99_s", "max"),
    "ttft_p50_s": ("ttft.p50_s", "max"),
    "ttft_p95_s": ("ttft.p95_s", "max"),
    "ttft_p99_s": ("ttft.p99_s", "max"),
    "min_tokens_per_s_p50": ("tokens_per_s.p50", "min"),
    "cost_per_call_usd": ("cost.per_call_usd", "max"),
    "cost_per_1k_calls_usd": ("cost.per_1k_calls_usd", "max"),
    "cost_total_usd": ("cost.total_usd", "max"),
}


class MetricRule(BaseModel):
    """A threshold on one metric, checked for each provider.

    Attributes:
        id: Name in verdicts and JUnit (default: ``"<metric> <= <max>"``).
        description: Why the rule exists, shown next to its result.
        metric: ``"<suite>:<metric>"`` or an efficiency metric name.
        max: Pass when the compared number is ``<= max``.
        min: Pass when the compared number is ``>= min``.
        abs: Compare the magnitude (for signed scores such as bias scores).
        bound: Which number to compare; default: the conservative interval bound.
        providers: Provider ids to check; default: every provider of the run.
        at_rate: Read the metric at the run's load stage of this many requests per second
            (a ``constant``/``poisson`` profile or a ``sweep`` rate), e.g. "p95 TTFT <= 0.8 s
            at 10 req/s". A sweep that stopped saturated below the rate fails the rule; a run
            without that rate is an error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Name | None = None
    description: str = ""
    metric: str
    max: FiniteFloat | None = None
    min: FiniteFloat | None = None
    abs: bool = False
    bound: Bound | None = None
    providers: ProviderIds | None = None
    at_rate: FiniteFloat | None = Field(None, gt=0)

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return parse_metric(value).text

    @model_validator(mode="after")
    def _check(self) -> MetricRule:
        if self.max is None and self.min is None:
            raise ValueError("a rule needs `max` and/or `min`")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is above `max` ({self.max}): no value can pass")
        eff = parse_metric(self.metric).efficiency
        if self.at_rate is not None and (eff is None or eff.read_stage is None):
            staged = sorted(name for name, m in EFFICIENCY_METRICS.items() if m.read_stage is not None)
            raise ValueError(
                f"{self.metric} has no value per load stage, so `at_rate` does not apply; metrics "
                f"with one: {', '.join(staged)}"
            )
        if eff is not None and not eff.has_interval and self.bound not in (None, "value"):
            raise ValueError(
                f"{self.metric} is a measured value without a confidence interval; "
                "use `bound: value` (the default for it) or leave `bound` out"
            )
        return self


class RegressionRule(BaseModel):
    """A paired comparison of one suite metric against a baseline run, per provider.

    Attributes:
        id: Name in verdicts and JUnit (default: ``"<metric> regression"``).
        description: Why the rule exists.
        metric: ``"<suite>:<metric>"``; "worse" follows the metric's direction.
        margin: Tolerated worsening, absolute, in the metric's units (``>= 0``).
        alpha: One-sided significance level of "worse by more than the margin".
        providers: Provider ids to compare; default: every provider of the run.
        n_resamples: Bootstrap resamples of the paired difference.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Name | None = None
    description: str = ""
    metric: str
    margin: FiniteFloat = Field(..., ge=0.0)
    alpha: StrictFloat = Field(0.05, gt=0.0, lt=0.5)
    providers: ProviderIds | None = None
    n_resamples: StrictInt = Field(2000, ge=100, le=100_000)

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        ref = parse_metric(value)
        if ref.suite is None:
            raise ValueError(
                f"{value!r} is an efficiency metric; regressions compare suite metrics "
                "('<suite>:<metric>'): put latency and cost limits under `budgets` or `rules`"
            )
        return ref.text


class Budgets(BaseModel):
    """Latency, throughput and cost limits per provider (shorthand for efficiency rules).

    Each limit is checked on the measured value; ``providers`` scopes all of them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: ProviderIds | None = None
    latency_p50_s: FiniteFloat | None = Field(None, gt=0)
    latency_p95_s: FiniteFloat | None = Field(None, gt=0)
    latency_p99_s: FiniteFloat | None = Field(None, gt=0)
    ttft_p50_s: FiniteFloat | None = Field(None, gt=0)
    ttft_p95_s: FiniteFloat | None = Field(None, gt=0)
    ttft_p99_s: FiniteFloat | None = Field(None, gt=0)
    min_tokens_per_s_p50: FiniteFloat | None = Field(None, gt=0)
    cost_per_call_usd: FiniteFloat | None = Field(None, ge=0)
    cost_per_1k_calls_usd: FiniteFloat | None = Field(None, ge=0)
    cost_total_usd: FiniteFloat | None = Field(None, ge=0)

    def limits(self) -> Iterator[tuple[str, float]]:
        """Yield ``(budget key, limit)`` for every limit that is set, in declaration order."""
        for key in BUDGET_METRICS:
            limit = getattr(self, key)
            if limit is not None:
                yield key, float(limit)


@dataclass(frozen=True)
class Check:
    """One threshold comparison, expanded from a rule, a budget or ``max_error_rate``.

    Attributes:
        id: Unique within the policy.
        description: Why the check exists.
        metric: The parsed metric address.
        side: ``"max"`` (pass when ``<=``) or ``"min"`` (pass when ``>=``).
        threshold: The limit.
        bound: What to compare, resolved (see :meth:`GatePolicy.checks`).
        abs: Compare magnitudes.
        providers: Provider ids, or ``None`` for every provider of the run.
        source: Key path of the check in the policy file (``rules[2]``, ``budgets.ttft_p95_s``).
        at_rate: Read the metric at this load-stage rate (requests/s), or ``None``: the run.
    """

    id: str
    description: str
    metric: MetricRef
    side: Side
    threshold: float
    bound: Bound
    abs: bool
    providers: tuple[str, ...] | None
    source: str
    at_rate: float | None = None

    @property
    def op(self) -> Literal["<=", ">="]:
        """The pass condition's operator."""
        return "<=" if self.side == "max" else ">="


def default_bound(metric: MetricRef, side: Side) -> Bound:
    """The conservative bound: the upper end for a ``max``, the lower for a ``min``.

    Efficiency metrics without an interval (latency, cost) compare their measured value.
    """
    eff = metric.efficiency
    if eff is not None and not eff.has_interval:
        return "value"
    return "ci_high" if side == "max" else "ci_low"


def _fmt_limit(value: float) -> str:
    return f"{value:g}"


class GatePolicy(BaseModel):
    """A whole gate policy file. See :mod:`rai_harness.gate` for the format.

    Attributes:
        name: Shown in verdicts, JUnit and Markdown (default: the file's stem).
        description: What the policy is for.
        max_error_rate: Shorthand: each provider's point error rate must be ``<=`` this.
        budgets: Latency, throughput and cost limits.
        rules: Thresholds on suite or efficiency metrics.
        regressions: Paired comparisons against a baseline run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = "policy"
    description: str = ""
    max_error_rate: FiniteFloat | None = Field(None, ge=0.0, le=1.0)
    budgets: Budgets | None = None
    rules: list[MetricRule] = Field(default_factory=list)
    regressions: list[RegressionRule] = Field(default_factory=list)

    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file this policy was loaded from, if any."""
        return self._source

    @model_validator(mode="after")
    def _check(self) -> GatePolicy:
        has_budget = self.budgets is not None and any(True for _ in self.budgets.limits())
        if not (self.rules or self.regressions or has_budget or self.max_error_rate is not None):
            # An empty policy would pass every run: never let a gate pass by accident.
            raise ValueError(
                "the policy checks nothing: add `rules`, `regressions`, `budgets` or `max_error_rate`"
            )
        seen: dict[str, str] = {}
        named = [(f"rules[{i}].id", r.id) for i, r in enumerate(self.rules)]
        named += [(f"regressions[{i}].id", r.id) for i, r in enumerate(self.regressions)]
        for where, rid in named:
            if rid is None:
                continue
            if rid in seen:
                raise ValueError(f"{where} {rid!r} is already used by {seen[rid]}; ids must be unique")
            seen[rid] = where
        return self

    def expand(self) -> ExpandedPolicy:
        """Expand the policy into the checks and regression comparisons the gate runs.

        ``max_error_rate``, each budget and each side of each rule become one
        :class:`Check` (a rule with both ``max`` and ``min`` becomes two). Rules without an
        ``id`` get one generated from the metric and limit; a generated id that collides
        gets a ``" #2"``-style suffix, so every id in a verdict is unique.

        Returns:
            Checks in policy order (``max_error_rate``, budgets, rules), then regressions.
        """
        used = {r.id for r in self.rules if r.id is not None}
        used |= {r.id for r in self.regressions if r.id is not None}

        def unique(candidate: str) -> str:
            rid, k = candidate, 2
            while rid in used:
                rid, k = f"{candidate} #{k}", k + 1
            used.add(rid)
            return rid

        checks: list[Check] = []
        if self.max_error_rate is not None:
            checks.append(
                Check(
                    id=unique("max_error_rate"),
                    description="Share of failed calls (the point rate, like the runner's max_error_rate).",
                    metric=parse_metric("error_rate"),
                    side="max",
                    threshold=float(self.max_error_rate),
                    # The runner's error budget uses the point rate; matching it keeps one meaning.
                    bound="value",
                    abs=False,
                    providers=None,
                    source="max_error_rate",
                )
            )
        if self.budgets is not None:
            providers = tuple(self.budgets.providers) if self.budgets.providers else None
            for key, limit in self.budgets.limits():
                metric_name, side = BUDGET_METRICS[key]
                metric = parse_metric(metric_name)
                display = metric.efficiency.display if metric.efficiency else key
                checks.append(
                    Check(
                        id=unique(f"budgets.{key}"),
                        description=f"Budget: {display}.",
                        metric=metric,
                        side=side,
                        threshold=limit,
                        bound="value",
                        abs=False,
                        providers=providers,
                        source=f"budgets.{key}",
                    )
                )
        for i, rule in enumerate(self.rules):
            checks.extend(self._rule_checks(rule, f"rules[{i}]", unique))
        regressions = [
            RegressionCheck(
                id=rule.id or unique(f"{rule.metric} regression (margin {_fmt_limit(rule.margin)})"),
                rule=rule,
                metric=parse_metric(rule.metric),
                providers=tuple(rule.providers) if rule.providers else None,
                source=f"regressions[{i}]",
            )
            for i, rule in enumerate(self.regressions)
        ]
        return ExpandedPolicy(checks=tuple(checks), regressions=tuple(regressions))

    @staticmethod
    def _rule_checks(rule: MetricRule, source: str, unique: Callable[[str], str]) -> list[Check]:
        metric = parse_metric(rule.metric)
        sides: list[tuple[Side, float]] = []
        if rule.max is not None:
            sides.append(("max", float(rule.max)))
        if rule.min is not None:
            sides.append(("min", float(rule.min)))
        out = []
        for side, limit in sides:
            op = "<=" if side == "max" else ">="
            if rule.id is not None:
                # Explicit ids are reserved already; a two-sided rule needs two distinct names.
                rid = rule.id if len(sides) == 1 else unique(f"{rule.id} ({op})")
            else:
                shown = f"|{metric.text}|" if rule.abs else metric.text
                at = f" at {_fmt_limit(rule.at_rate)} req/s" if rule.at_rate is not None else ""
                rid = unique(f"{shown} {op} {_fmt_limit(limit)}{at}")
            out.append(
                Check(
                    id=rid,
                    description=rule.description,
                    metric=metric,
                    side=side,
                    threshold=limit,
                    bound=rule.bound or default_bound(metric, side),
                    abs=rule.abs,
                    providers=tuple(rule.providers) if rule.providers else None,
                    source=source,
                    at_rate=float(rule.at_rate) if rule.at_rate is not None else None,
                )
            )
        return out


@dataclass(frozen=True)
class RegressionCheck:
    """One regression rule with its resolved id.

    Attributes:
        id: Unique within the policy.
        rule: The rule as written.
        metric: The parsed suite metric.
        providers: Provider ids, or ``None`` for every provider of the run.
        source: Key path in the policy file (``regressions[0]``).
    """

    id: str
    rule: RegressionRule
    metric: MetricRef
    providers: tuple[str, ...] | None
    source: str


@dataclass(frozen=True)
class ExpandedPolicy:
    """What :meth:`GatePolicy.expand` returns: the threshold checks and the regressions."""

    checks: tuple[Check, ...]
    regressions: tuple[RegressionCheck, ...]


def parse_gate_policy(data: Any, *, file: str | None = None) -> GatePolicy:
    """Validate an already-parsed YAML document as a :class:`GatePolicy`.

    Args:
        data: The parsed document.
        file: The file it came from (for messages; its stem is the default ``name``).

    Returns:
        The policy, with :attr:`GatePolicy.source` set.

    Raises:
        ConfigError: naming the file, the key path and the fix.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            "a gate policy must be a mapping with `rules`, `regressions`, `budgets` or `max_error_rate`",
            file=file,
        )
    if {"classifiers", "input", "output"} & data.keys() and not {
        "rules",
        "regressions",
        "budgets",
    } & data.keys():
        # The likely mistake: the two kinds of policy share a word and a file format.
        raise ConfigError(
            "this is a guard policy (classifiers, input and output rails), not a gate policy: "
            "`rai gate` and `rai run --gate` take a gate policy such as evals/policies/default.yaml",
            file=file,
        )
    if "name" not in data and file is not None:
        data = {"name": Path(file).stem, **data}
    try:
        policy = GatePolicy.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, file, "", GatePolicy) from exc
    policy._source = file
    return policy


def load_gate_policy(path: str | Path) -> GatePolicy:
    """Read and validate a gate policy YAML file.

    Args:
        path: The policy file.

    Returns:
        The validated policy.

    Raises:
        ConfigError: The file is missing, unreadable, not YAML, or invalid (naming the
            file, the key path and the fix).
    """
    return parse_gate_policy(read_yaml_file(path, what="gate policy file"), file=str(path))
