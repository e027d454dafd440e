"""Gate rules at a load-stage rate ("p95 TTFT <= 800 ms at 10 req/s") and on the sustained rate."""

from __future__ import annotations

import pytest
import yaml

from rai_harness.errors import ConfigError
from rai_harness.gate import GatePolicy, evaluate, parse_gate_policy
from rai_harness.record import (
    CostSummary,
    Distribution,
    LoadStage,
    LoadSummary,
    ProviderSummary,
    RunRecord,
    UsageSummary,
)


def dist(p50: float, p95: float, n: int = 50) -> Distribution:
    return Distribution(n=n, mean=p50, p50=p50, p90=p95, p95=p95, p99=p95, min=p50 / 2, max=p95)


def stage(i: int, rate: float, ttft_p95: float, *, saturated: bool = False, failed: int = 0) -> LoadStage:
    return LoadStage(
        index=i,
        arrivals="poisson",
        rate=rate,
        concurrency=256,
        calls=50,
        succeeded=50 - failed,
        failed=failed,
        error_rate=failed / 50,
        offered_rps=rate,
        achieved_rps=rate * (0.6 if saturated else 0.99),
        throughput_ratio=0.6 if saturated else 0.99,
        start_lag_s=dist(0.001, 0.002),
        latency_s=dist(ttft_p95, ttft_p95 * 2),
        ttft_s=dist(ttft_p95 / 2, ttft_p95),
        output_tokens_per_s=dist(40, 60),
        saturated=saturated,
        stop_reason="achieved 12 req/s < 90% of the offered 20 req/s" if saturated else None,
    )


def sweep(stages: list[LoadStage], planned: list[float]) -> LoadSummary:
    sat = next((s for s in stages if s.saturated), None)
    ok = [s.rate for s in stages if not s.saturated and s.rate is not None]
    return LoadSummary(
        profile="sweep",
        planned_rates=planned,
        stages=stages,
        stopped_at_rate=sat.rate if sat else None,
        stop_reason=sat.stop_reason if sat else None,
        max_sustained_rate=max(ok) if ok else None,
        unreached_rates=[r for r in planned if r not in {s.rate for s in stages}],
    )


def provider(load: LoadSummary | None) -> ProviderSummary:
    return ProviderSummary(
        kind="openai",
        model="m",
        calls=150,
        succeeded=150,
        failed=0,
        error_rate=0.0,
        usage=UsageSummary(),
        latency_s=dist(0.5, 1.0),
        ttft_s=dist(0.2, 0.4),
        output_tokens_per_s=dist(40, 60),
        cost=CostSummary(priced_by="not priced"),
        load=load,
    )


def record(providers: dict[str, ProviderSummary]) -> RunRecord:
    return RunRecord(
        run_id="r",
        name="load",
        status="complete",
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:01:00Z",
        duration_s=60.0,
        seed=1,
        config={},
        environment={},
        providers=providers,
    )


def policy(text: str) -> GatePolicy:
    return parse_gate_policy(yaml.safe_load(text), file="p.yaml")


RULE = """
rules:
  - metric: ttft.p95_s
    max: 0.8
    at_rate: 10
"""


def results(rec: RunRecord, text: str = RULE) -> dict[str | None, tuple[str, str]]:
    verdict = evaluate(rec, policy(text))
    return {r.provider: (r.status, r.message) for r in verdict.results if r.kind == "rule"}


def test_rule_at_a_rate_reads_that_stage_only() -> None:
    fast = sweep([stage(0, 5, 0.3), stage(1, 10, 0.6), stage(2, 20, 2.5, saturated=True)], [5, 10, 20, 40])
    slow = sweep([stage(0, 5, 0.5), stage(1, 10, 0.9)], [5, 10])
    out = results(record({"fast": provider(fast), "slow": provider(slow)}))
    assert out["fast"][0] == "pass" and "at 10 req/s" in out["fast"][1] and "0.6" in out["fast"][1]
    assert out["slow"][0] == "fail" and "0.9" in out["slow"][1]
    verdict = evaluate(record({"fast": provider(fast)}), policy(RULE))
    (rule,) = [r for r in verdict.results if r.kind == "rule"]
    assert rule.rule_id == "ttft.p95_s <= 0.8 at 10 req/s" and rule.measured == pytest.approx(0.6)


def test_a_sweep_that_saturated_below_the_rate_fails_the_rule() -> None:
    stopped = sweep([stage(0, 2, 0.3), stage(1, 5, 3.0, saturated=True)], [2, 5, 10, 20])
    status, message = results(record({"p": provider(stopped)}))["p"]
    assert status == "fail"
    assert "stopped at 5 req/s" in message and "does not sustain" in message


@pytest.mark.parametrize(
    ("load", "fragment"),
    [
        (None, "no load profile"),
        (LoadSummary(profile="concurrency", stages=[]), "'concurrency' load profile"),
        (
            sweep([stage(0, 5, 0.3), stage(1, 20, 0.4)], [5, 20]),
            "no load stage at 10 req/s; its rates: 5, 20",
        ),
    ],
)
def test_a_run_without_the_rate_is_an_error(load: LoadSummary | None, fragment: str) -> None:
    status, message = results(record({"p": provider(load)}))["p"]
    assert status == "error" and fragment in message, message
    verdict = evaluate(record({"p": provider(load)}), policy(RULE))
    assert verdict.exit_code == 2


def test_error_rate_and_throughput_at_a_rate_and_the_sustained_rate() -> None:
    load = sweep(
        [stage(0, 5, 0.3, failed=5), stage(1, 10, 0.6), stage(2, 20, 1.0, saturated=True)], [5, 10, 20]
    )
    text = """
rules:
  - {metric: error_rate, max: 0.05, at_rate: 5, bound: value}
  - {metric: throughput_rps, min: 9, at_rate: 10}
  - {metric: max_sustained_rate, min: 10}
  - {metric: max_sustained_rate, min: 20, id: twenty}
"""
    verdict = evaluate(record({"p": provider(load)}), policy(text))
    got = {r.rule_id: r.status for r in verdict.results if r.kind == "rule"}
    assert got == {
        "error_rate <= 0.05 at 5 req/s": "fail",
        "throughput_rps >= 9 at 10 req/s": "pass",
        "max_sustained_rate >= 10": "pass",
        "twenty": "fail",
    }


def test_throughput_needs_a_rate() -> None:
    load = sweep([stage(0, 5, 0.3)], [5])
    status, message = results(record({"p": provider(load)}), "rules: [{metric: throughput_rps, min: 1}]")["p"]
    assert status == "error" and "at_rate" in message


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("{metric: cost.total_usd, max: 1, at_rate: 10}", "no value per load stage"),
        ("{metric: 'toxicity:emt', max: 1, at_rate: 10}", "no value per load stage"),
        ("{metric: ttft.p95_s, max: 1, at_rate: 0}", "greater than 0"),
        ("{metric: ttft.p95_s, max: 1, at_rte: 10}", "did you mean 'at_rate'"),
    ],
)
def test_bad_at_rate_rules_name_file_and_key(rule: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        policy(f"rules: [{rule}]")
    text = str(info.value)
    assert "p.yaml" in text and "rules[0]" in text and fragment in text, text
