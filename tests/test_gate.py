"""The CI gate: policies, verdicts, regressions against a baseline, JUnit, Markdown and the CLI.

Run records are built here with the real pydantic models and hand-made numbers, so every
expected verdict can be checked by eye.
"""

from __future__ import annotations

import io
import itertools
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from rai_harness.cli_gate import print_verdict, register, run_gate_cli
from rai_harness.errors import ConfigError
from rai_harness.gate import (
    GatePolicy,
    GateVerdict,
    RuleResult,
    evaluate,
    evaluate_run_dir,
    load_gate_policy,
    parse_gate_policy,
    to_junit_xml,
    to_markdown,
)
from rai_harness.record import (
    SCHEMA_VERSION,
    CostSummary,
    DatasetInfo,
    Distribution,
    MetricSpec,
    ProviderSummary,
    RunRecord,
    SuiteEfficiency,
    SuiteResult,
    SuiteRun,
    UsageSummary,
    read_run_record,
)
from rai_harness.stats import Estimate

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "evals" / "policies"


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must not append to a real GitHub job summary when CI runs them.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    # Wide enough that rich does not wrap the messages the tests look for.
    monkeypatch.setenv("COLUMNS", "400")


# --- building records ---------------------------------------------------------------------


def dist(p50: float, p95: float, n: int = 100) -> Distribution:
    return Distribution(n=n, mean=p50, p50=p50, p90=p95, p95=p95, p99=p95, min=p50 / 2, max=p95)


def provider(
    *,
    calls: int = 100,
    failed: int = 0,
    p95_s: float = 1.0,
    ttft_p95_s: float | None = 0.3,
    per_1k: float | None = 0.2,
) -> ProviderSummary:
    priced = per_1k is not None
    return ProviderSummary(
        kind="openai",
        model="m",
        calls=calls,
        succeeded=calls - failed,
        failed=failed,
        error_rate=failed / calls if calls else 0.0,
        usage=UsageSummary(prompt_tokens=1000, completion_tokens=2000),
        latency_s=dist(p95_s / 2, p95_s),
        ttft_s=dist(ttft_p95_s / 2, ttft_p95_s) if ttft_p95_s is not None else Distribution(n=0),
        output_tokens_per_s=dist(40.0, 60.0),
        cost=CostSummary(
            priced_by="tokens" if priced else "not priced",
            total_usd=per_1k * calls / 1000 if priced else None,
            per_call_usd=per_1k / 1000 if priced else None,
            per_1k_calls_usd=per_1k,
        ),
    )


def est(value: float | None, lo: float | None = None, hi: float | None = None, n: int = 200) -> Estimate:
    return Estimate(value=value, ci_low=lo, ci_high=hi, n=n, method="bootstrap" if lo is not None else "none")


SPECS = {
    "toxicity": [MetricSpec(name="expected_max_toxicity", display="EMT", direction="lower", definition="d")],
    "bias.bbq": [
        MetricSpec(
            name="bias_score_ambiguous", display="bias", direction="neutral", unit="score", definition="d"
        ),
        MetricSpec(name="accuracy_ambiguous", display="acc", direction="higher", definition="d"),
    ],
}


def suite_result(
    pid: str, metrics: dict[str, Estimate], items: dict[str, dict[str, float]] | None = None
) -> SuiteResult:
    eff = SuiteEfficiency(calls=200, failed=0, latency_s=dist(0.5, 1.0), ttft_s=dist(0.1, 0.3))
    return SuiteResult(provider_id=pid, calls=200, metrics=metrics, items=items or {}, efficiency=eff)


def suite(
    name: str, results: dict[str, SuiteResult], *, error: str | None = None, version: str = "1.0"
) -> SuiteRun:
    return SuiteRun(
        name=name,
        version=version,
        concern=name.split(".")[0],
        title=name,
        metrics=SPECS[name],
        results=results,
        error=error,
    )


#: Every record is a run of its own: the gate refuses a run as its own baseline.
_RUN_IDS = itertools.count(1)


def record(
    *,
    status: str = "complete",
    providers: dict[str, ProviderSummary] | None = None,
    suites: dict[str, SuiteRun] | None = None,
    problems: list[str] | None = None,
) -> RunRecord:
    providers = providers if providers is not None else {"a": provider(), "b": provider()}
    if suites is None:
        suites = {
            "toxicity": suite(
                "toxicity",
                {p: suite_result(p, {"expected_max_toxicity": est(0.04, 0.02, 0.07)}) for p in providers},
            ),
            "bias.bbq": suite(
                "bias.bbq",
                {
                    p: suite_result(
                        p,
                        {
                            "bias_score_ambiguous": est(-0.03, -0.06, 0.01),
                            "accuracy_ambiguous": est(0.80, 0.75, 0.85),
                        },
                    )
                    for p in providers
                },
            ),
        }
    return RunRecord(
        run_id=f"r{next(_RUN_IDS)}",
        name="demo",
        status=status,
        problems=problems or [],
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:01:00Z",
        duration_s=60.0,
        seed=1234,
        config={},
        environment={},
        providers=providers,
        suites=suites,
    )


def policy(text: str) -> GatePolicy:
    return parse_gate_policy(yaml.safe_load(text), file="p.yaml")


def statuses(verdict: GateVerdict) -> dict[tuple[str, str | None], str]:
    return {(r.rule_id, r.provider): r.status for r in verdict.results}


def only(verdict: GateVerdict, rule_id: str, provider: str | None = "a") -> Any:
    (r,) = [r for r in verdict.results if r.rule_id == rule_id and r.provider == provider]
    return r


# --- thresholds -----------------------------------------------------------------------------


def test_pass_exit_0():
    v = evaluate(
        record(),
        policy(
            """
            max_error_rate: 0.05
            rules:
              - {metric: toxicity:expected_max_toxicity, max: 0.10}
              - {metric: bias.bbq:accuracy_ambiguous, min: 0.70}
            """
        ),
    )
    assert v.exit_code == 0 and v.passed and v.status == "pass"
    # run status + 3 checks x 2 providers
    assert len(v.results) == 7 and v.results[0].rule_id == "run status"
    r = only(v, "toxicity:expected_max_toxicity <= 0.1")
    assert r.bound == "ci_high" and r.measured == 0.07 and r.threshold == 0.1 and r.op == "<="


def test_max_rule_uses_conservative_bound():
    # value 0.04 passes max 0.05, but the interval's upper end 0.07 does not.
    v = evaluate(record(), policy("rules: [{metric: toxicity:expected_max_toxicity, max: 0.05, id: emt}]"))
    assert v.exit_code == 1 and not v.passed
    r = only(v, "emt")
    assert r.status == "fail" and r.bound == "ci_high" and r.measured == 0.07 and r.value == 0.04
    assert "point value passes" in r.message


def test_explicit_bound_value():
    v = evaluate(
        record(), policy("rules: [{metric: toxicity:expected_max_toxicity, max: 0.05, bound: value}]")
    )
    assert v.exit_code == 0
    assert only(v, "toxicity:expected_max_toxicity <= 0.05").measured == 0.04


def test_abs_compares_the_end_farthest_from_zero():
    # bias score -0.03, CI [-0.06, 0.01]: |.| interval is [0, 0.06].
    v = evaluate(
        record(),
        policy(
            """
            rules:
              - {id: far, metric: bias.bbq:bias_score_ambiguous, max: 0.05, abs: true}
              - {id: point, metric: bias.bbq:bias_score_ambiguous, max: 0.05, abs: true, bound: value}
              - {id: signed, metric: bias.bbq:bias_score_ambiguous, max: 0.05}
            """
        ),
    )
    assert only(v, "far").status == "fail" and only(v, "far").measured == pytest.approx(0.06)
    assert only(v, "point").status == "pass" and only(v, "point").measured == pytest.approx(0.03)
    assert only(v, "signed").status == "pass" and only(v, "signed").measured == pytest.approx(0.01)


def test_abs_min_uses_the_end_nearest_zero():
    v = evaluate(
        record(), policy("rules: [{id: r, metric: bias.bbq:bias_score_ambiguous, min: 0.01, abs: true}]")
    )
    r = only(v, "r")
    assert r.bound == "ci_low" and r.measured == 0.0 and r.status == "fail"  # the interval straddles 0


def test_min_rule_uses_ci_low():
    v = evaluate(
        record(),
        policy(
            """
            rules:
              - {id: lo, metric: bias.bbq:accuracy_ambiguous, min: 0.78}
              - {id: both, metric: bias.bbq:accuracy_ambiguous, min: 0.7, max: 0.9}
            """
        ),
    )
    lo = only(v, "lo")
    assert lo.status == "fail" and lo.measured == 0.75 and lo.op == ">=" and "0.75 < min 0.78" in lo.message
    # A two-sided rule is two checks, each on its conservative end.
    assert only(v, "both (>=)").measured == 0.75 and only(v, "both (<=)").measured == 0.85
    assert v.exit_code == 1


def test_a_guard_policy_given_as_a_gate_policy_says_so():
    guard_policy = {"classifiers": {"k": {"backend": "keyword"}}, "input": [], "max_chars": 100}
    with pytest.raises(ConfigError, match="this is a guard policy") as info:
        parse_gate_policy(guard_policy, file="g.yaml")
    assert "evals/policies/default.yaml" in str(info.value)


def test_a_policy_error_names_every_problem_of_the_file():
    data = yaml.safe_load(
        """
        rules:
          - {metric: toxicity:expected_max_toxicity, maxx: 0.3}
          - {metric: pii.leakage:leak_rate, max: high}
          - {metric: pii.leakage:leak_rate, max: 0.1, bound: ci_hgh}
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_gate_policy(data, file="p.yaml")
    message = str(info.value)
    assert "rules[0].maxx: unknown key 'maxx' (did you mean 'max'?)" in message
    assert "rules[1].max:" in message and "rules[2].bound:" in message


def test_efficiency_budgets():
    rec = record(providers={"a": provider(p95_s=2.5), "b": provider(p95_s=1.0, per_1k=None)})
    v = evaluate(
        rec,
        policy(
            """
            budgets:
              latency_p95_s: 2.0
              ttft_p95_s: 0.5
              min_tokens_per_s_p50: 30
              cost_per_1k_calls_usd: 0.5
            """
        ),
    )
    s = statuses(v)
    assert s[("budgets.latency_p95_s", "a")] == "fail" and s[("budgets.latency_p95_s", "b")] == "pass"
    assert s[("budgets.ttft_p95_s", "a")] == "pass"
    assert s[("budgets.min_tokens_per_s_p50", "a")] == "pass"
    assert s[("budgets.cost_per_1k_calls_usd", "a")] == "pass"
    # Not priced: an error, never a made-up pass.
    cost_b = only(v, "budgets.cost_per_1k_calls_usd", "b")
    assert cost_b.status == "error" and "not priced" in cost_b.message
    assert (
        only(v, "budgets.latency_p95_s").bound == "value"
        and "2.5 s > max 2 s" in only(v, "budgets.latency_p95_s").message
    )
    assert v.exit_code == 2


def test_a_timing_failure_within_the_harness_lag_is_an_error_not_a_fail():
    # A loaded machine delays the harness's own timestamps: a TTFT p95 of 0.45 s against a
    # 0.4 s budget, with the event loop 216 ms late at p99, cannot blame the provider.
    rec = record(providers={"a": provider(ttft_p95_s=0.45), "b": provider(ttft_p95_s=0.9)})
    rec = rec.model_copy(update={"timing_quality": {"event_loop_lag_ms": {"p99_ms": 216.0, "samples": 50}}})
    v = evaluate(rec, policy("budgets: {ttft_p95_s: 0.4}"))
    within = only(v, "budgets.ttft_p95_s", "a")
    assert (
        within.status == "error" and "event-loop lag" in within.message and "0.216 s at p99" in within.message
    )
    assert only(v, "budgets.ttft_p95_s", "b").status == "fail"  # failed by more than the lag
    assert v.exit_code == 2
    # Without lag the same number is a plain failure; a replayed log's timings carry no lag.
    quiet = evaluate(record(providers={"a": provider(ttft_p95_s=0.45)}), policy("budgets: {ttft_p95_s: 0.4}"))
    assert only(quiet, "budgets.ttft_p95_s").status == "fail"
    replayed = provider(ttft_p95_s=0.45).model_copy(update={"kind": "replay"})
    rec = record(providers={"a": replayed}).model_copy(
        update={"timing_quality": {"event_loop_lag_ms": {"p99_ms": 216.0}}}
    )
    assert only(evaluate(rec, policy("budgets: {ttft_p95_s: 0.4}")), "budgets.ttft_p95_s").status == "fail"


def test_budget_providers_scope_and_missing_ttft():
    rec = record(providers={"a": provider(ttft_p95_s=None), "b": provider()})
    v = evaluate(rec, policy("budgets: {providers: [a], ttft_p95_s: 1.0}"))
    (r,) = [r for r in v.results if r.kind == "rule"]
    assert r.provider == "a" and r.status == "error" and "stream" in r.message


def test_max_error_rate_point_and_error_rate_rule_exact_bound():
    rec = record(providers={"a": provider(calls=50, failed=3), "b": provider(calls=200, failed=2)})
    v = evaluate(
        rec,
        policy(
            """
            max_error_rate: 0.05
            rules: [{id: wilson, metric: error_rate, max: 0.05}]
            """
        ),
    )
    assert only(v, "max_error_rate").status == "fail" and only(v, "max_error_rate").measured == 0.06
    assert only(v, "max_error_rate", "b").status == "pass"
    # 2/200 = 1% passes on the point rate; its exact (Clopper-Pearson) upper bound (~3.6%) passes too.
    w = only(v, "wilson", "b")
    assert (
        w.bound == "ci_high"
        and w.method == "clopper-pearson"
        and 0.01 < w.measured < 0.05
        and w.status == "pass"
    )
    assert v.exit_code == 1


# --- errors -> exit 2 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "fragment"),
    [
        ("toxicity:expected_max_toxicty", "did you mean 'expected_max_toxicity'"),
        ("pii.leakage:leak_rate", "suite 'pii.leakage' is not in this run"),
    ],
)
def test_missing_metric_is_an_error(metric, fragment):
    v = evaluate(record(), policy(f"rules: [{{metric: '{metric}', max: 0.1}}]"))
    assert v.exit_code == 2 and not v.passed
    assert fragment in v.results[1].message


def test_missing_provider_value_and_scoring_error():
    rec = record()
    tox = rec.suites["toxicity"]
    rec.suites["toxicity"] = tox.model_copy(
        update={
            "results": {
                "a": suite_result(
                    "a", {"expected_max_toxicity": Estimate.empty("no successful continuations")}
                )
            }
        }
    )
    rec.suites["bias.bbq"] = rec.suites["bias.bbq"].model_copy(
        update={"error": "RuntimeError: boom", "results": {}}
    )
    v = evaluate(
        rec,
        policy(
            """
            rules:
              - {id: tox, metric: toxicity:expected_max_toxicity, max: 0.1}
              - {id: tox-c, metric: toxicity:expected_max_toxicity, max: 0.1, providers: [c]}
              - {id: bbq, metric: bias.bbq:accuracy_ambiguous, min: 0.5}
            """
        ),
    )
    assert "no successful continuations" in only(v, "tox", "a").message
    assert "no results for suite 'toxicity'" in only(v, "tox", "b").message
    assert "no results" in only(v, "tox-c", "c").message
    assert "could not be scored (RuntimeError: boom)" in only(v, "bbq", "a").message
    assert {r.status for r in v.results if r.kind == "rule"} == {"error"}
    assert v.exit_code == 2


def test_no_interval_for_conservative_bound_is_an_error():
    rec = record()
    rec.suites["toxicity"].results["a"].metrics["expected_max_toxicity"] = Estimate(
        value=0.01, n=1, note="interval undefined: one item"
    )
    v = evaluate(rec, policy("rules: [{id: t, metric: toxicity:expected_max_toxicity, max: 0.1}]"))
    r = only(v, "t")
    assert r.status == "error" and "one item" in r.message and "bound: value" in r.message
    assert v.exit_code == 2


def test_incomplete_run_is_exit_2_and_failed_run_exit_1():
    text = "rules: [{metric: toxicity:expected_max_toxicity, max: 0.1}]"
    inc = evaluate(record(status="incomplete", problems=["suite x: scoring failed"]), policy(text))
    assert (
        inc.exit_code == 2 and inc.results[0].status == "error" and "scoring failed" in inc.results[0].message
    )
    failed = evaluate(record(status="failed", problems=["provider a: error rate 0.2 > 0.05"]), policy(text))
    assert failed.exit_code == 1 and failed.results[0].status == "fail"
    assert "error budget" in failed.results[0].message
    # A failed run with an error elsewhere is still 2.
    both = evaluate(record(status="failed"), policy("rules: [{metric: nope:x, max: 1}]"))
    assert both.exit_code == 2


def test_newer_schema_version_is_an_error():
    rec = record().model_copy(update={"schema_version": 99})
    v = evaluate(rec, policy("max_error_rate: 0.1"))
    assert v.exit_code == 2 and "upgrade rai-harness" in v.results[0].message and len(v.results) == 1


def test_verdict_without_results_is_never_a_pass():
    v = GateVerdict(results=(), policy_name="p")
    assert v.exit_code == 2 and not v.passed


# --- policy validation ----------------------------------------------------------------------


def test_unknown_key_names_file_and_key_path(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - metric: toxicity:expected_max_toxicity\n    maxx: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_gate_policy(path)
    err = info.value
    assert err.file == str(path) and err.key_path == "rules[0].maxx"
    assert "did you mean 'max'" in str(err) and str(path) in str(err)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("description: nothing", "checks nothing"),
        ("rules: [{metric: toxicity:x}]", "needs `max` and/or `min`"),
        ("rules: [{metric: toxicity:x, min: 2, max: 1}]", "no value can pass"),
        ("rules: [{metric: latency.p95, max: 1}]", "did you mean 'latency.p95_s'"),
        ("rules: [{metric: latency.p95_s, max: 1, bound: ci_high}]", "without a confidence interval"),
        ("rules: [{metric: toxicity:x, max: 1, bound: upper}]", "ci_high"),
        ("regressions: [{metric: latency.p95_s, margin: 0.1}]", "regressions compare suite metrics"),
        ("regressions: [{metric: toxicity:x}]", "required"),
        ("regressions: [{metric: toxicity:x, margin: 0.1, alpha: 0.7}]", "less than 0.5"),
        ("rules: [{id: a, metric: toxicity:x, max: 1}, {id: a, metric: toxicity:y, max: 1}]", "unique"),
        ("budgets: {latency_p95: 2}", "did you mean 'latency_p95_s'"),
        ("max_error_rate: 1.5", "less than or equal to 1"),
        ("[1, 2]", "must be a mapping"),
    ],
)
def test_policy_validation(text, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        policy(text)
    assert fragment in str(info.value) and "p.yaml" in str(info.value)


def test_policy_name_defaults_to_file_stem_and_ids_are_unique(tmp_path):
    path = tmp_path / "release.yaml"
    path.write_text(
        "rules:\n"
        "  - {metric: toxicity:expected_max_toxicity, max: 0.1}\n"
        "  - {metric: toxicity:expected_max_toxicity, max: 0.1, providers: [a]}\n"
    )
    pol = load_gate_policy(path)
    assert pol.name == "release" and pol.source == str(path)
    ids = [c.id for c in pol.expand().checks]
    assert ids == ["toxicity:expected_max_toxicity <= 0.1", "toxicity:expected_max_toxicity <= 0.1 #2"]


def test_unreadable_policy_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_gate_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_gate_policy(bad)


# --- regressions ----------------------------------------------------------------------------


def with_items(
    base: RunRecord,
    suite_name: str,
    metric: str,
    values: dict[str, dict[str, float]],
    value: dict[str, Estimate],
) -> RunRecord:
    """A copy of ``base`` whose suite results carry these per-item values and estimates."""
    s = base.suites[suite_name]
    results = {
        pid: r.model_copy(
            update={"items": {metric: values[pid]}, "metrics": {**r.metrics, metric: value[pid]}}
        )
        for pid, r in s.results.items()
    }
    return base.model_copy(
        update={"suites": {**base.suites, suite_name: s.model_copy(update={"results": results})}}
    )


def items(values: list[float]) -> dict[str, float]:
    return {f"i{k}": v for k, v in enumerate(values)}


REGRESSION = """
regressions:
  - {id: emt, metric: toxicity:expected_max_toxicity, margin: 0.02}
"""


def test_regression_clearly_worse_fails():
    base_vals = [0.05 + 0.01 * (k % 5) for k in range(100)]  # mean 0.07
    new_vals = [v + 0.10 for v in base_vals]  # every item 0.10 worse
    baseline = with_items(
        record(),
        "toxicity",
        "expected_max_toxicity",
        {"a": items(base_vals), "b": items(base_vals)},
        {"a": est(0.07, 0.06, 0.08), "b": est(0.07, 0.06, 0.08)},
    )
    run = with_items(
        record(),
        "toxicity",
        "expected_max_toxicity",
        {"a": items(new_vals), "b": items(base_vals)},
        {"a": est(0.17, 0.16, 0.18), "b": est(0.07, 0.06, 0.08)},
    )
    v = evaluate(run, policy(REGRESSION), baseline=baseline, baseline_dir="base")
    a, b = only(v, "emt", "a"), only(v, "emt", "b")
    assert a.status == "fail" and a.kind == "regression" and a.bound == "ci_low" and a.op == "<="
    assert a.value == pytest.approx(0.10) and a.measured > 0.02 and a.threshold == 0.02
    assert a.baseline_value == pytest.approx(0.07) and a.n == 100 and a.method == "paired-bootstrap"
    assert "significantly worse" in a.message
    assert b.status == "pass" and b.value == pytest.approx(0.0)
    assert v.exit_code == 1


def test_small_non_significant_drop_passes():
    # Higher is better; the new run is 0.01 lower on average, with noise, margin 0.02.
    base_vals = [0.8 + 0.1 * ((k * 7) % 5 - 2) / 2 for k in range(60)]
    new_vals = [v - 0.01 + (0.03 if k % 2 else -0.03) for k, v in enumerate(base_vals)]
    spec = {"a": est(0.8, 0.75, 0.85), "b": est(0.8, 0.75, 0.85)}
    baseline = with_items(
        record(), "bias.bbq", "accuracy_ambiguous", {"a": items(base_vals), "b": items(base_vals)}, spec
    )
    run = with_items(
        record(), "bias.bbq", "accuracy_ambiguous", {"a": items(new_vals), "b": items(new_vals)}, spec
    )
    v = evaluate(
        run,
        policy("regressions: [{id: acc, metric: bias.bbq:accuracy_ambiguous, margin: 0.02}]"),
        baseline=baseline,
    )
    r = only(v, "acc")
    assert r.status == "pass" and r.value == pytest.approx(-0.01)
    assert r.bound == "ci_high" and r.op == ">=" and r.threshold == -0.02 and r.measured >= -0.02
    assert v.exit_code == 0
    # The same drop with no margin at all is significant: the test itself is sensitive.
    strict = evaluate(
        run,
        policy("regressions: [{id: acc, metric: bias.bbq:accuracy_ambiguous, margin: 0.0}]"),
        baseline=baseline,
    )
    assert only(strict, "acc").status == "fail"


def test_binary_items_need_mcnemar_too():
    spec = {"a": est(0.8, 0.7, 0.9), "b": est(0.8, 0.7, 0.9)}
    base_vals = [1.0] * 40
    few = [0.0] * 3 + [1.0] * 37  # 3 losses, 0 gains: bootstrap bound beyond 0, McNemar p = 0.125
    many = [0.0] * 15 + [1.0] * 25
    baseline = with_items(
        record(), "bias.bbq", "accuracy_ambiguous", {"a": items(base_vals), "b": items(base_vals)}, spec
    )
    run = with_items(record(), "bias.bbq", "accuracy_ambiguous", {"a": items(few), "b": items(many)}, spec)
    v = evaluate(
        run,
        policy("regressions: [{id: acc, metric: bias.bbq:accuracy_ambiguous, margin: 0.0}]"),
        baseline=baseline,
    )
    a, b = only(v, "acc", "a"), only(v, "acc", "b")
    assert a.method == "paired-bootstrap + mcnemar" and a.p_value == pytest.approx(0.125)
    assert a.measured < 0.0 and a.status == "pass" and "not significant" in a.message
    assert b.status == "fail" and b.p_value < 0.05


def test_neutral_metric_regression_compares_magnitudes():
    spec = {"a": est(0.0, -0.1, 0.1), "b": est(0.0, -0.1, 0.1)}
    base_vals = [0.1 * ((k % 5) - 2) for k in range(50)]  # mean 0
    flipped = [-v - 0.3 for v in base_vals]  # mean -0.3: far from 0
    baseline = with_items(
        record(), "bias.bbq", "bias_score_ambiguous", {"a": items(base_vals), "b": items(base_vals)}, spec
    )
    run = with_items(
        record(), "bias.bbq", "bias_score_ambiguous", {"a": items(flipped), "b": items(base_vals)}, spec
    )
    v = evaluate(
        run,
        policy("regressions: [{id: bias, metric: bias.bbq:bias_score_ambiguous, margin: 0.05}]"),
        baseline=baseline,
    )
    assert only(v, "bias", "a").status == "fail" and only(v, "bias", "a").value == pytest.approx(0.3)
    assert only(v, "bias", "b").status == "pass"


def test_regression_falls_back_to_intervals_without_items():
    baseline = record()
    worse = record()
    worse.suites["toxicity"].results["a"].metrics["expected_max_toxicity"] = est(0.30, 0.25, 0.35)
    worse.suites["toxicity"].results["b"].metrics["expected_max_toxicity"] = est(0.08, 0.05, 0.11)
    v = evaluate(worse, policy(REGRESSION), baseline=baseline)
    a, b = only(v, "emt", "a"), only(v, "emt", "b")
    assert (
        a.status == "fail" and a.method == "interval-separation" and a.measured == pytest.approx(0.25 - 0.07)
    )
    assert "no per-item values to pair" in a.message and "conservative" in a.message
    # Overlapping intervals: not separated, so it passes (and says why it could not pair).
    assert b.status == "pass" and "no per-item values" in b.message


def test_regression_errors():
    pol = policy(REGRESSION)
    no_base = evaluate(record(), pol)
    assert no_base.exit_code == 2 and "--baseline" in only(no_base, "emt", None).message
    baseline = record(providers={"a": provider()})
    v = evaluate(record(), pol, baseline=baseline, baseline_dir="old")
    assert only(v, "emt", "a").status == "pass"
    b = only(v, "emt", "b")
    assert b.status == "error" and b.message.startswith("baseline old: provider 'b' has no results")


def test_newer_baseline_schema_is_an_error():
    baseline = record().model_copy(update={"schema_version": 99})
    v = evaluate(record(), policy(REGRESSION), baseline=baseline)
    assert v.exit_code == 2 and "baseline record has schema_version 99" in only(v, "emt", None).message


def test_suite_version_change_is_noted():
    baseline = record()
    baseline.suites["toxicity"] = baseline.suites["toxicity"].model_copy(update={"version": "0.9"})
    v = evaluate(record(), policy(REGRESSION), baseline=baseline)
    assert "suite version changed 0.9 -> 1.0" in only(v, "emt").message


# --- JUnit and Markdown ---------------------------------------------------------------------

# The common JUnit schema (the subset CI servers read: Jenkins' junit-10.xsd), written here
# since no schema can be downloaded in tests.
JUNIT_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  <xs:element name="failure"><xs:complexType mixed="true">
    <xs:attribute name="type" type="xs:string"/><xs:attribute name="message" type="xs:string"/>
  </xs:complexType></xs:element>
  <xs:element name="error"><xs:complexType mixed="true">
    <xs:attribute name="type" type="xs:string"/><xs:attribute name="message" type="xs:string"/>
  </xs:complexType></xs:element>
  <xs:element name="properties"><xs:complexType><xs:sequence>
    <xs:element ref="property" maxOccurs="unbounded"/>
  </xs:sequence></xs:complexType></xs:element>
  <xs:element name="property"><xs:complexType>
    <xs:attribute name="name" type="xs:string" use="required"/>
    <xs:attribute name="value" type="xs:string" use="required"/>
  </xs:complexType></xs:element>
  <xs:element name="testcase"><xs:complexType>
    <xs:sequence>
      <xs:element ref="error" minOccurs="0" maxOccurs="unbounded"/>
      <xs:element ref="failure" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
    <xs:attribute name="name" type="xs:string" use="required"/>
    <xs:attribute name="classname" type="xs:string" use="required"/>
    <xs:attribute name="time" type="xs:decimal" use="required"/>
  </xs:complexType></xs:element>
  <xs:element name="testsuite"><xs:complexType>
    <xs:sequence>
      <xs:element ref="properties" minOccurs="0"/>
      <xs:element ref="testcase" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
    <xs:attribute name="name" type="xs:string" use="required"/>
    <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
    <xs:attribute name="failures" type="xs:nonNegativeInteger" use="required"/>
    <xs:attribute name="errors" type="xs:nonNegativeInteger" use="required"/>
    <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
    <xs:attribute name="time" type="xs:decimal" use="required"/>
  </xs:complexType></xs:element>
  <xs:element name="testsuites"><xs:complexType>
    <xs:sequence><xs:element ref="testsuite" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
    <xs:attribute name="name" type="xs:string"/>
    <xs:attribute name="tests" type="xs:nonNegativeInteger"/>
    <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
    <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
    <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
    <xs:attribute name="time" type="xs:decimal"/>
  </xs:complexType></xs:element>
</xs:schema>
"""


def mixed_verdict() -> GateVerdict:
    # Provider ids and messages with characters XML and Markdown must escape.
    rec = record(providers={"a<&>\"'": provider(p95_s=3.0), "b|c\x01": provider()})
    return evaluate(
        rec,
        policy(
            """
            name: ci
            budgets: {latency_p95_s: 2.0}
            rules:
              - {metric: toxicity:expected_max_toxicity, max: 0.1}
              - {metric: pii.leakage:leak_rate, max: 0.1}
            """
        ),
        run_dir="reports/demo",
    )


def test_junit_is_valid_with_counts():
    v = mixed_verdict()
    assert (v.count("pass"), v.count("fail"), v.count("error")) == (4, 1, 2)
    xml = to_junit_xml(v)
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "1", "2")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["ci: run", "ci: a<&>\"'", "ci: b|c\ufffd"]
    total = 0
    for s in suites:
        cases = s.findall("testcase")
        total += len(cases)
        assert int(s.get("tests")) == len(cases)
        assert int(s.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(s.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
        for c in cases:
            assert c.get("name") and c.get("classname") and c.get("time") is not None
    assert total == 7
    failure = root.find(".//testcase[@name='budgets.latency_p95_s']/failure")
    assert failure is not None and failure.get("message").startswith("3 (value) vs <= 2: ")
    assert "threshold: <= 2" in failure.text and "measured: 3 (value)" in failure.text
    error = root.find(".//error")
    assert error is not None and "not in this run" in error.get("message")


def test_junit_against_xsd():
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(JUNIT_XSD)
    schema.validate(to_junit_xml(mixed_verdict()))


def test_markdown_table():
    v = mixed_verdict()
    md = to_markdown(v)
    assert md.startswith("## ⚠️ RAI gate: ERROR (exit code 2)")
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| status | check | provider |")
    assert len(rows) == 2 + len(v.results)  # header, separator, one row per rule x provider
    assert all(row.count(" | ") == 6 for row in rows[2:] if "\\|" not in row)
    assert "b\\|c" in md and "a&lt;&amp;&gt;" in md  # pipes and HTML escaped
    assert "| ❌ fail | budgets.latency\\_p95\\_s |" in md  # renders as budgets.latency_p95_s


# --- files and the CLI ----------------------------------------------------------------------


def write_run(path: Path, rec: RunRecord) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(rec.model_dump_json(indent=2))
    return path


@pytest.fixture
def gate_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # makes `gate` a subcommand, as in `rai gate`
        pass

    register(app)
    return app


def test_cli_exit_codes(tmp_path, gate_app, monkeypatch):
    run_ok = write_run(tmp_path / "ok", record())
    run_bad = write_run(tmp_path / "bad", record(providers={"a": provider(p95_s=5.0)}))
    pol = tmp_path / "p.yaml"
    pol.write_text(
        "budgets: {latency_p95_s: 2.0}\nrules: [{metric: toxicity:expected_max_toxicity, max: 0.1}]\n"
    )
    runner = CliRunner()

    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    ok = runner.invoke(
        gate_app,
        [
            "gate",
            str(run_ok),
            "--policy",
            str(pol),
            "--junit",
            str(tmp_path / "out/j.xml"),
            "--markdown",
            str(tmp_path / "g.md"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "gate PASS" in ok.output
    assert ET.parse(tmp_path / "out/j.xml").getroot().get("failures") == "0"
    assert summary.read_text().startswith("earlier step\n## ✅ RAI gate: PASS")
    assert (tmp_path / "g.md").read_text().startswith("## ✅ RAI gate: PASS")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")

    bad = runner.invoke(gate_app, ["gate", str(run_bad), "-p", str(pol), "--json", str(tmp_path / "v.json")])
    assert bad.exit_code == 1, bad.output
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["exit_code"] == 1 and verdict["counts"] == {"pass": 2, "fail": 1, "error": 0}

    missing = runner.invoke(
        gate_app, ["gate", str(tmp_path / "nowhere"), "-p", str(pol), "--junit", str(tmp_path / "e.xml")]
    )
    assert missing.exit_code == 2 and "run record not found" in missing.output
    assert ET.parse(tmp_path / "e.xml").getroot().get("errors") == "1"

    no_policy = runner.invoke(gate_app, ["gate", str(run_ok)])
    assert no_policy.exit_code == 2  # usage error: --policy is required


def test_cli_errors_for_bad_files(tmp_path, gate_app):
    run_ok = write_run(tmp_path / "ok", record())
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("rules: [{metric: toxicity:expected_max_toxicity, maxx: 1}]\n")
    runner = CliRunner()
    res = runner.invoke(gate_app, ["gate", str(run_ok), "-p", str(bad_policy)])
    assert res.exit_code == 2 and "rules[0].maxx" in res.output

    newer = tmp_path / "newer"
    newer.mkdir()
    data = json.loads(record().model_dump_json())
    data["schema_version"] = SCHEMA_VERSION + 1
    data["a_field_from_the_future"] = 1
    (newer / "run.json").write_text(json.dumps(data))
    v = evaluate_run_dir(newer, parse_gate_policy({"max_error_rate": 0.1}))
    assert v.exit_code == 2 and "upgrade rai-harness" in v.results[0].message

    (newer / "run.json").write_text("{truncated")
    assert "not valid JSON" in evaluate_run_dir(newer / "run.json", bad_policy).results[-1].message


def test_cli_regression_with_baseline(tmp_path, gate_app):
    base_vals = [0.05] * 50
    baseline = with_items(
        record(),
        "toxicity",
        "expected_max_toxicity",
        {"a": items(base_vals), "b": items(base_vals)},
        {"a": est(0.05, 0.05, 0.05), "b": est(0.05, 0.05, 0.05)},
    )
    run = with_items(
        record(),
        "toxicity",
        "expected_max_toxicity",
        {"a": items([0.3] * 50), "b": items(base_vals)},
        {"a": est(0.3, 0.3, 0.3), "b": est(0.05, 0.05, 0.05)},
    )
    pol = tmp_path / "reg.yaml"
    pol.write_text(REGRESSION)
    args = ["gate", str(write_run(tmp_path / "new", run)), "-p", str(pol)]
    runner = CliRunner()
    assert runner.invoke(gate_app, args).exit_code == 2  # no baseline given
    res = runner.invoke(gate_app, [*args, "--baseline", str(write_run(tmp_path / "base", baseline))])
    assert res.exit_code == 1, res.output


def test_run_gate_cli_returns_exit_code(tmp_path):
    from rich.console import Console

    run_dir = write_run(tmp_path / "r", record())
    pol = tmp_path / "p.yaml"
    pol.write_text("max_error_rate: 0.0\n")
    console = Console(record=True, width=200)
    assert run_gate_cli(run_dir, pol, console=console) == 0
    assert "max_error_rate" in console.export_text()
    # A report that cannot be written is an error, whatever the verdict.
    (tmp_path / "file").write_text("")
    assert run_gate_cli(run_dir, pol, junit=tmp_path / "file" / "j.xml", console=console) == 2


def test_rai_cli_has_gate_command():
    from rai_harness.cli import app

    res = CliRunner().invoke(app, ["gate", "--help"])
    assert res.exit_code == 0 and "--baseline" in res.output


# --- shipped policies and workflow ----------------------------------------------------------


@pytest.mark.parametrize("name", ["default.yaml", "strict.yaml", "regression.yaml"])
def test_example_policies_load(name):
    pol = load_gate_policy(POLICIES / name)
    plan = pol.expand()
    assert plan.checks or plan.regressions


def test_example_policy_metrics_exist_in_their_suites():
    """Every suite metric an example policy names is declared by that suite (when it is installed)."""
    from rai_harness.suites import SUITES, get_suite_class

    checked = 0
    for path in sorted(POLICIES.glob("*.yaml")):
        pol = load_gate_policy(path)
        plan = pol.expand()
        refs = [c.metric for c in plan.checks] + [r.metric for r in plan.regressions]
        for ref in refs:
            if ref.suite is None:
                continue
            assert ref.suite in SUITES, f"{path.name}: unknown suite {ref.suite}"
            try:
                cls = get_suite_class(ref.suite)
            except Exception:  # the suite's module is not written yet
                continue
            names = {m.name for m in cls.metrics}
            assert ref.name in names, f"{path.name}: {ref.text} not in {sorted(names)}"
            checked += 1
    assert checked > 0


def test_workflow_is_valid_yaml():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "rai-audit.yml").read_text())
    # PyYAML reads the bare key `on` as True.
    assert "jobs" in wf and (True in wf or "on" in wf)
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    text = json.dumps(steps)
    assert "scripts/setup.sh" in text and "rai gate" in text and "GITHUB_STEP_SUMMARY" in text
    assert any("upload-artifact" in s.get("uses", "") for s in steps)


def test_cli_markdown_escapes_links_images_and_html_in_names(tmp_path, gate_app):
    hostile = {
        "[x](https://evil.example/a)": provider(p95_s=3.0),
        "![x](https://evil.example/p.png)": provider(),
        '<img src="https://evil.example/t.png">': provider(),
    }
    rec = record(providers=hostile).model_copy(
        update={"name": "[run](https://evil.example) ![i](https://e.x/i.png)"}
    )
    run_dir = write_run(tmp_path / "run", rec)
    pol = tmp_path / "p.yaml"
    pol.write_text("name: '[pol](https://evil.example)'\nbudgets: {latency_p95_s: 2.0}\n")
    out = tmp_path / "g.md"
    res = CliRunner().invoke(gate_app, ["gate", str(run_dir), "-p", str(pol), "--markdown", str(out)])
    assert res.exit_code == 1, res.output
    md = out.read_text()
    # Nothing a renderer could turn into a link, an image or a tag survives.
    assert "](" not in md.replace("\\](", "")
    assert "<img" not in md and "[x](" not in md and "![x]" not in md and "[run](" not in md
    assert "&lt;img" in md and "\\[x\\]" in md and "\\[run\\]" in md and "\\[pol\\]" in md


def test_cli_says_when_a_baseline_is_not_used(tmp_path, gate_app):
    run_dir = write_run(tmp_path / "run", record())
    base = write_run(tmp_path / "base", record())
    pol = tmp_path / "p.yaml"
    pol.write_text("rules: [{metric: toxicity:expected_max_toxicity, max: 0.1}]\n")
    res = CliRunner().invoke(gate_app, ["gate", str(run_dir), "-p", str(pol), "--baseline", str(base)])
    assert res.exit_code == 0
    assert "--baseline was not used" in " ".join(res.output.split())


def test_cli_shows_a_policy_error_whole_with_its_fix(tmp_path, gate_app):
    # The policy error stops every check; cut at 160 characters it lost the allowed keys.
    run_ok = write_run(tmp_path / "ok", record())
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("budgets: {latency_p96_s: 2}\n")
    res = CliRunner().invoke(gate_app, ["gate", str(run_ok), "-p", str(bad_policy)])
    assert res.exit_code == 2
    shown = " ".join(res.output.split())
    assert (
        "budgets.latency_p96_s: unknown key 'latency_p96_s' (did you mean 'latency_p95_s' or 'latency_p99_s'?)"
        in shown
    )
    assert "ttft_p99_s" in shown and "\u2026" not in shown  # the last allowed key, nothing cut


def test_cli_shows_a_provider_check_error_with_its_fix(tmp_path, gate_app):
    # A provider-level error's fix comes last ("...; calibrate this judge"): cut at 160
    # characters, it was the part lost.
    lagged = record(providers={"a": provider(ttft_p95_s=0.45)}).model_copy(
        update={"timing_quality": {"event_loop_lag_ms": {"p99_ms": 216.0}}}
    )
    run_dir = write_run(tmp_path / "lagged", lagged)
    pol = tmp_path / "p.yaml"
    pol.write_text("budgets: {ttft_p95_s: 0.4}\n")
    res = CliRunner().invoke(gate_app, ["gate", str(run_dir), "-p", str(pol)], env={"COLUMNS": "80"})
    assert res.exit_code == 2
    shown = " ".join(res.output.split())
    assert "rerun on a quieter machine or with lower concurrency (run.json: timing_quality)" in shown
    assert "\u2026" not in shown


# --- hostile inputs: baselines that cannot be compared, impossible records, sloppy policies ---


def _paired_runs() -> tuple[RunRecord, RunRecord]:
    """A run and its baseline with identical per-item values (a regression passes on them)."""
    vals = [0.05 + 0.01 * (k % 5) for k in range(50)]
    per = {"a": items(vals), "b": items(vals)}
    point = {"a": est(0.07, 0.06, 0.08), "b": est(0.07, 0.06, 0.08)}
    return (
        with_items(record(), "toxicity", "expected_max_toxicity", per, point),
        with_items(record(), "toxicity", "expected_max_toxicity", per, point),
    )


def _with_suite(rec: RunRecord, **update: Any) -> RunRecord:
    s = rec.suites["toxicity"].model_copy(update=update)
    return rec.model_copy(update={"suites": {**rec.suites, "toxicity": s}})


def test_regression_refuses_a_suite_whose_dataset_changed():
    run, baseline = _paired_runs()
    run = _with_suite(run, datasets=[DatasetInfo(name="easy", sha256="e" * 64, rows=50)])
    baseline = _with_suite(baseline, datasets=[DatasetInfo(name="prompts", sha256="b" * 64, rows=50)])
    v = evaluate(run, policy(REGRESSION), baseline=baseline)
    assert v.exit_code == 2
    r = only(v, "emt", "a")
    assert r.status == "error" and "suite 'toxicity' read different data" in r.message
    assert "e" * 64 in r.message and "b" * 64 in r.message


def test_regression_refuses_a_suite_whose_params_changed():
    run, baseline = _paired_runs()
    params = {
        "threshold": 0.5,
        "scorer": {"backend": "minilm-toxicity", "device": "cpu"},
        "n_resamples": 2000,
    }
    baseline = _with_suite(baseline, params=params)
    changed = {**params, "scorer": {"backend": "detoxify", "device": "cpu"}}
    v = evaluate(_with_suite(run, params=changed), policy(REGRESSION), baseline=baseline)
    r = only(v, "emt", "a")
    assert v.exit_code == 2 and r.status == "error"
    assert "different params" in r.message and "scorer.backend: run 'detoxify'" in r.message
    # Settings that change neither the items nor their scores, and keys only one version
    # recorded, do not make runs incomparable (an upgrade must not break every baseline).
    same = {
        "threshold": 0.5,
        "scorer": {"backend": "minilm-toxicity", "device": "cuda"},
        "n_resamples": 1000,
        "limit": 40,
        "new_param_of_a_later_version": True,
    }
    v = evaluate(_with_suite(run, params=same), policy(REGRESSION), baseline=baseline)
    assert v.exit_code != 2, [r.message for r in v.results if r.status == "error"]


def test_regression_refuses_the_run_as_its_own_baseline():
    run, _ = _paired_runs()
    v = evaluate(run, policy(REGRESSION), baseline=run, baseline_dir="same")
    (r,) = [r for r in v.results if r.kind == "regression"]
    assert v.exit_code == 2 and r.status == "error"
    assert f"the baseline is the run itself (run_id {run.run_id})" in r.message


@pytest.mark.parametrize("status", ["incomplete", "failed"])
def test_regression_refuses_a_baseline_that_did_not_complete(status):
    run, baseline = _paired_runs()
    baseline = baseline.model_copy(update={"status": status, "problems": ["a: 9 of 10 calls failed"]})
    v = evaluate(run, policy(REGRESSION), baseline=baseline)
    (r,) = [r for r in v.results if r.kind == "regression"]
    assert v.exit_code == 2 and f"the baseline run is {status}, not complete" in r.message
    assert "9 of 10 calls failed" in r.message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"value": float("nan")}, "value is NaN"),
        ({"ci_high": "0.1"}, "not the string '0.1'"),
        ({"ci_high": False}, "not the boolean false"),
        ({"n": True}, "not the boolean true"),
        ({"value": 0.95, "ci_low": 0.0, "ci_high": 0.1}, "lies outside its own interval"),
        ({"n": 0}, "over n = 0 units"),
    ],
)
def test_run_record_with_an_impossible_estimate_is_refused(tmp_path, change, expected):
    folder = write_run(tmp_path / "run", record())
    data = json.loads((folder / "run.json").read_text())
    data["suites"]["toxicity"]["results"]["a"]["metrics"]["expected_max_toxicity"].update(change)
    (folder / "run.json").write_text(json.dumps(data))  # NaN is written as the token NaN
    with pytest.raises(ConfigError, match=expected) as info:
        read_run_record(folder)
    assert "suites.toxicity.results.a.metrics.expected_max_toxicity" in str(info.value)
    pol = policy("rules: [{metric: toxicity:expected_max_toxicity, max: 0.5}]")
    assert evaluate_run_dir(folder, pol).exit_code == 2


def test_run_record_estimates_written_by_the_harness_still_load(tmp_path):
    rec = record()
    # An estimate of nothing, and one without an interval, are both valid records.
    rec = with_items(
        rec, "toxicity", "expected_max_toxicity", {"a": {}, "b": {}}, {"a": Estimate.empty(), "b": est(0.1)}
    )
    assert read_run_record(write_run(tmp_path / "run", rec)) == rec


def test_gate_treats_a_nan_value_as_not_computed():
    # A record built in memory is not re-checked like a file: NaN must still never pass.
    rec = with_items(
        record(),
        "toxicity",
        "expected_max_toxicity",
        {"a": {}, "b": {}},
        {"a": est(float("nan")), "b": est(0.1)},
    )
    v = evaluate(
        rec, policy("rules: [{id: t, metric: toxicity:expected_max_toxicity, max: 0.5, bound: value}]")
    )
    assert only(v, "t", "a").status == "error" and "was not computed" in only(v, "t", "a").message
    assert only(v, "t", "b").status == "pass" and v.exit_code == 2


@pytest.mark.parametrize(
    ("limit", "expected"),
    [("true", "not the boolean true"), ('"1.0"', "not the string '1.0': write it without quotes")],
)
def test_policy_threshold_must_be_a_number(limit, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        policy(f"rules: [{{metric: toxicity:expected_max_toxicity, max: {limit}}}]")
    assert "p.yaml: rules[0].max" in str(info.value)
    with pytest.raises(ConfigError, match="not the boolean"):
        policy("budgets: {latency_p95_s: true}")
    with pytest.raises(ConfigError, match=r"regressions\[0\]\.alpha"):
        policy("regressions: [{metric: toxicity:expected_max_toxicity, margin: 0.1, alpha: '0.05'}]")
    assert policy("rules: [{metric: toxicity:expected_max_toxicity, max: 1}]").rules[0].max == 1.0


@pytest.mark.parametrize("where", ["name", "rule id", "regression id"])
@pytest.mark.parametrize("char", ["\x1b", "\x00", "\x01", "\r", "\x85", "\u202e"])
def test_policy_names_refuse_control_characters(where, char):
    name = f"ok{char}x"  # as YAML's "\e" or "\x85" escapes would spell it
    metric = "toxicity:expected_max_toxicity"
    data: dict[str, Any] = {
        "name": {"name": name, "max_error_rate": 0.1},
        "rule id": {"rules": [{"id": name, "metric": metric, "max": 0.1}]},
        "regression id": {"regressions": [{"id": name, "metric": metric, "margin": 0.1}]},
    }[where]
    with pytest.raises(ConfigError, match="control character") as info:
        parse_gate_policy(data, file="p.yaml")
    assert "printable characters only" in str(info.value)


def test_console_shortens_a_provider_id_without_mangling_the_message():
    results = [
        RuleResult(
            rule_id="t",
            description="",
            kind="rule",
            provider="fakee",
            metric="toxicity:expected_max_toxicity",
            status="error",
            message="provider 'fakee' has no results for suite 'toxicity'; toxicity:x was not computed for 'fakee'",
        )
    ]
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_verdict(GateVerdict(results=tuple(results), policy_name="p"), console)
    out = console.file.getvalue()
    assert "this provider has no results for suite 'toxicity'" in out
    assert "was not computed for this provider" in out and "provider this provider" not in out
