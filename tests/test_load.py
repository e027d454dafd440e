"""Load profiles: schedules against the configured rate, Poisson gaps, warm-up exclusion, sweep stop rule."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from rai_harness.config import parse_run_config
from rai_harness.errors import ConfigError
from rai_harness.load import (
    LoadProfile,
    StagePlan,
    StopRule,
    arrival_offsets,
    check_shared_clock,
    requests_for,
    run_stage,
    share_stage,
    summarize_load,
    summarize_stage,
)
from rai_harness.record import read_run_record, read_samples
from rai_harness.run import plan_run, run_sync
from rai_harness.run.runner import RetryPolicy, generate_calls
from rai_harness.run.score import summarize_provider
from rai_harness.types import ChatRequest, Generation, Usage

FAST = RetryPolicy(max_retries=0, timeout_s=5.0)


def reqs(n: int) -> list[ChatRequest]:
    return [ChatRequest.from_prompt(f"s{i}", f"prompt {i}") for i in range(n)]


class Server:
    """A provider with a fixed service time and a capacity (calls served at once).

    Calls beyond the capacity queue, so above ``capacity / service_s`` requests per second the
    latencies grow and the completions fall behind the arrivals: a saturating endpoint. The
    first ``slow_first`` calls report a latency of 9 s (to see warm-up exclusion).
    """

    def __init__(self, service_s: float = 0.01, capacity: int = 1000, slow_first: int = 0) -> None:
        self.service_s = service_s
        self.sem = asyncio.Semaphore(capacity)
        self.slow_first = slow_first
        self.n = 0

    async def generate(self, request: ChatRequest) -> Generation:
        self.n += 1
        slow = self.n <= self.slow_first
        t0 = time.perf_counter()
        async with self.sem:
            await asyncio.sleep(self.service_s)
        lat = 9.0 if slow else time.perf_counter() - t0
        return Generation(text="ok", usage=Usage(3, 4), latency_s=lat, ttft_s=lat / 2)

    async def aclose(self) -> None:
        pass


# -- schedules ----------------------------------------------------------------------------------


def test_constant_offsets_are_evenly_spaced_at_the_rate() -> None:
    offsets = arrival_offsets("constant", 8.0, 17)
    assert offsets[0] == 0.0
    np.testing.assert_allclose(np.diff(offsets), 1 / 8.0)
    assert (len(offsets) - 1) / offsets[-1] == pytest.approx(8.0)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_poisson_gaps_are_exponential_at_the_rate(seed: int) -> None:
    rate = 25.0
    offsets = arrival_offsets("poisson", rate, 4001, seed)
    gaps = np.diff(offsets)
    assert offsets[0] == 0.0 and np.all(gaps >= 0)
    # Kolmogorov-Smirnov against Exp(mean 1/rate): with the seed fixed this is deterministic,
    # and a wrong distribution (constant gaps, wrong scale, uniform) fails it by a mile.
    ks = stats.kstest(gaps, "expon", args=(0, 1 / rate))
    assert ks.pvalue > 0.01, ks
    assert stats.kstest(gaps, "expon", args=(0, 1 / (2 * rate))).pvalue < 1e-6  # the test has power
    assert len(gaps) / offsets[-1] == pytest.approx(rate, rel=0.06)
    # Independent gaps: no lag-1 autocorrelation to speak of.
    assert abs(np.corrcoef(gaps[:-1], gaps[1:])[0, 1]) < 0.06


def test_poisson_schedule_is_reproducible_from_its_seed() -> None:
    a = arrival_offsets("poisson", 10.0, 50, 7)
    np.testing.assert_array_equal(a, arrival_offsets("poisson", 10.0, 50, 7))
    assert not np.array_equal(a, arrival_offsets("poisson", 10.0, 50, 8))
    profile = LoadProfile(profile="sweep", rates=[1, 2], requests_per_rate=5, arrivals="poisson")
    s1 = profile.stage_plans(8, seed=3)
    assert [s.seed for s in s1] == [s.seed for s in profile.stage_plans(8, seed=3)]
    assert s1[0].seed != s1[1].seed  # each stage its own stream
    assert profile.model_copy(update={"seed": 99}).stage_plans(8, seed=3)[0].seed != s1[0].seed


def test_sweep_rates_and_stage_sizes() -> None:
    geo = LoadProfile(profile="sweep", min_rate=1, max_rate=100, steps=5, seconds_per_rate=5)
    assert geo.sweep_rates() == pytest.approx([1, 3.162278, 10, 31.622777, 100])
    stages = geo.stage_plans(8)
    assert [s.requests for s in stages] == [5, 16, 50, 159, 500]
    warm = LoadProfile(profile="sweep", rates=[2, 4], requests_per_rate=10, warmup={"seconds": 3})
    plans = warm.stage_plans(8)
    assert plans[0].warmup and plans[0].index == -1 and plans[0].requests == 6 and plans[0].rate == 2
    assert warm.requests_needed() == 6 + 20


def test_requests_for_cycles_prompts_with_fresh_repeats() -> None:
    profile = LoadProfile(profile="sweep", rates=[1, 2], requests_per_rate=5, warmup={"requests": 2})
    out = requests_for(profile, reqs(4))
    assert len(out) == 12
    keys = {(r.sample_id, r.repeat) for r in out}
    assert len(keys) == 12  # every call distinct (own journal key and seed)
    assert [r.sample_id for r in out[:5]] == ["s0", "s1", "s2", "s3", "s0"]
    assert out[4].repeat == 1 and out[8].repeat == 2
    with pytest.raises(ValueError, match="leaves fewer than 5"):
        requests_for(LoadProfile(profile="constant", rate=5, warmup={"requests": 8}), reqs(10))


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ({"profile": "constant"}, "needs `rate`"),
        ({"profile": "poisson", "rate": 0}, "greater than 0"),
        ({"profile": "sweep", "rates": [5, 2], "requests_per_rate": 10}, "increase strictly"),
        ({"profile": "sweep", "rates": [1, 2]}, "size of each stage"),
        ({"profile": "sweep", "requests_per_rate": 10}, "needs its rates"),
        ({"profile": "sweep", "rates": [0.1], "seconds_per_rate": 10}, "fewer than 5 calls"),
        ({"profile": "concurrency", "rate": 3}, "`rate` does not apply to profile 'concurrency'"),
        ({"profile": "constant", "rate": 3, "stop": {}}, "`stop` does not apply"),
        ({"profile": "constant", "rate": 3, "warmup": {"requests": 2, "seconds": 1}}, "exactly one"),
        ({"profile": "ramp"}, "profile"),
        ({"profile": "constant", "rate": 3, "rat": 1}, "did you mean 'rate'"),
    ],
)
def test_bad_load_sections_name_the_key_and_fix(load: dict, message: str) -> None:
    data = {"providers": [{"kind": "replay", "model": "m", "path": "x.jsonl"}], "prompts": {"items": ["a"]}}
    with pytest.raises(ConfigError) as info:
        parse_run_config({**data, "load": load}, file="run.yaml")
    text = str(info.value)
    assert "run.yaml" in text and "load" in text and message in text, text


def test_an_rpm_cap_below_the_rate_is_refused() -> None:
    data = {
        "providers": [{"kind": "replay", "model": "m", "path": "x.jsonl", "rpm": 120}],
        "prompts": {"items": ["a"]},
        "load": {"profile": "sweep", "rates": [1, 2, 5], "requests_per_rate": 5},
    }
    with pytest.raises(ConfigError, match=r"rpm 120 \(2 req/s\) but `load` asks for up to 5 req/s"):
        parse_run_config(data, file="run.yaml")
    data["load"]["rates"] = [1, 2]
    assert parse_run_config(data, file="run.yaml").load is not None


def test_a_sweep_with_suites_is_refused() -> None:
    data = {
        "providers": [{"kind": "replay", "model": "m", "path": "x.jsonl"}],
        "suites": ["toxicity"],
        "load": {"profile": "sweep", "rates": [1, 2], "requests_per_rate": 5},
    }
    with pytest.raises(ConfigError, match="separate config"):
        parse_run_config(data, file="run.yaml")


# -- a stage shared by worker processes ------------------------------------------------------------


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_shared_poisson_schedule_is_the_single_schedule(parts: int) -> None:
    rate, n = 50.0, 3001
    stage = StagePlan(0, "poisson", rate, 256, None, seed=11)
    shares = share_stage(stage, n, parts, start=123.0)
    assert len(shares) == parts and all(s.start == 123.0 for s in shares)
    # Every position once; each part's share in schedule order; counts as even as can be.
    positions = sorted(p for s in shares for p in s.positions)
    assert positions == list(range(n))
    assert {len(s.positions) for s in shares} <= {n // parts, n // parts + 1}
    for s in shares:
        assert list(s.positions) == sorted(s.positions) and s.offsets is not None
        assert np.all(np.diff(s.offsets) >= 0)
        assert s.slots == -(-256 // parts)  # the in-flight cap, split
    # Combined, the arrivals are exactly the one-process schedule.
    combined = np.empty(n)
    for s in shares:
        combined[list(s.positions)] = s.offsets
    np.testing.assert_array_equal(combined, arrival_offsets("poisson", rate, n, 11))
    # ... hence a Poisson process at the rate: counts in 1 s windows have variance ~ mean
    # (index of dispersion ~1; a constant schedule has ~0, a bursty one >> 1).
    counts = np.bincount(combined.astype(int))[:-1]
    assert counts.mean() == pytest.approx(rate, rel=0.05)
    assert 0.6 < counts.var(ddof=1) / counts.mean() < 1.6
    # Each part alone runs at rate / parts.
    for s in shares:
        assert (len(s.offsets) - 1) / (s.offsets[-1] - s.offsets[0]) == pytest.approx(rate / parts, rel=0.1)


def test_shared_constant_and_closed_loop_stages() -> None:
    constant = share_stage(StagePlan(0, "constant", 10.0, 5, None), 7, 3)
    assert [s.positions for s in constant] == [(0, 3, 6), (1, 4), (2, 5)]
    assert constant[1].offsets == (0.1, 0.4) and {s.slots for s in constant} == {2}
    closed = share_stage(StagePlan(0, "concurrency", None, 8, None), 5, 2)
    assert [s.offsets for s in closed] == [None, None] and {s.slots for s in closed} == {4}
    assert len(share_stage(StagePlan(0, "constant", 10.0, 8, None), 2, 4)) == 2  # no empty parts
    with pytest.raises(ValueError):
        share_stage(StagePlan(0, "constant", 10.0, 8, None), 2, 0)


def test_shared_clock_check() -> None:
    check_shared_clock(10.0, 10.5, 11.0)
    for other in (9.0, 12.0):
        with pytest.raises(RuntimeError, match="not shared between processes"):
            check_shared_clock(10.0, other, 11.0)


async def test_a_share_runs_its_positions_from_the_common_start() -> None:
    stage = StagePlan(0, "constant", 100.0, 64, None)
    (first, second) = share_stage(stage, 6, 2, start=time.monotonic() + 0.05)
    seen = []

    async def call(item: int, d) -> int:
        seen.append(d)
        return item

    out = await run_stage(stage, ["b", "d", "f"], call, second)
    assert out == ["b", "d", "f"]
    assert [d.position for d in seen] == [1, 3, 5]
    assert [d.scheduled_s for d in seen] == pytest.approx([0.01, 0.03, 0.05])
    # Due times count from the shared start (50 ms ahead): never early.
    assert all(d.started_s >= d.scheduled_s - 1e-3 for d in seen)
    with pytest.raises(ValueError, match="positions"):
        await run_stage(stage, ["x"], call, first)


# -- the dispatcher -------------------------------------------------------------------------------


async def test_run_stage_starts_calls_at_their_scheduled_times() -> None:
    stage = StagePlan(0, "constant", 40.0, 64, None)
    seen = []

    async def call(item: int, d) -> int:
        seen.append(d)
        await asyncio.sleep(0.005)
        return item

    out = await run_stage(stage, list(range(30)), call)
    assert out == list(range(30))
    scheduled = np.array([d.scheduled_s for d in seen])
    started = np.array([d.started_s for d in seen])
    np.testing.assert_allclose(scheduled, np.arange(30) / 40.0)
    lag = started - scheduled
    # Never early; late only by timer granularity and machine load (a loose bound: tests
    # must pass on a busy CI box; benchmarks/runner_overhead.py measures the real numbers).
    assert lag.min() >= -1e-3 and np.median(lag) < 0.25
    assert not any(d.capped for d in seen)


async def test_in_flight_cap_delays_and_marks_late_starts() -> None:
    stage = StagePlan(0, "constant", 200.0, 2, 10)
    seen = []
    in_flight = 0
    peak = 0

    async def call(item: int, d) -> None:
        nonlocal in_flight, peak
        seen.append(d)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1

    await run_stage(stage, list(range(30)), call)
    assert len(seen) == 10 and peak == 2
    # Ten calls due within 50 ms, two slots, 50 ms each: most must wait for a slot (a loose
    # count: a stalled loop on a busy machine may find a slot free by the time it looks).
    assert sum(d.capped for d in seen) >= 3
    assert all(d.start_lag_s > 0 for d in seen if d.capped)
    assert max(d.start_lag_s for d in seen) > 0.1


async def test_stage_by_duration_stops_starting_calls() -> None:
    stage = StagePlan(-1, "concurrency", None, 1, None, seconds=0.1, warmup=True)

    async def call(item: int, d) -> int:
        await asyncio.sleep(0.03)
        return item

    out = await run_stage(stage, list(range(50)), call)
    assert 2 <= len(out) <= 5 and out == list(range(len(out)))


# -- the runner under a profile ----------------------------------------------------------------


async def test_warmup_calls_are_recorded_but_excluded_from_statistics() -> None:
    profile = LoadProfile(profile="constant", rate=100, warmup={"requests": 3})
    server = Server(slow_first=3)
    records = await generate_calls(
        server, reqs(20), provider_id="p", provider_identity={}, concurrency=4, policy=FAST, load=profile
    )
    assert len(records) == 20
    warm = [r for r in records if r.load and r.load["warmup"]]
    assert [r.sample_id for r in warm] == ["s0", "s1", "s2"]
    assert all(r.load["stage"] == -1 for r in warm)
    summary = summarize_provider("k", "m", records, None, {}, load=profile)
    assert summary.calls == 20 and summary.usage.completion_tokens == 80  # warm-up counted here
    assert summary.latency_s.n == 17 and summary.latency_s.max < 9.0  # ... not in the timings
    assert summary.ttft_s.n == 17
    load = summary.load
    assert load is not None and load.warmup_calls == 3
    assert "latency_s" in load.warmup_excluded_from
    (stage,) = load.stages
    assert stage.calls == 17 and stage.rate == 100 and stage.latency_s.max < 9.0
    assert stage.offered_rps == pytest.approx(100, rel=1e-6)


async def test_concurrency_profile_with_warmup_keeps_the_cap() -> None:
    profile = LoadProfile(profile="concurrency", concurrency=3, warmup={"requests": 4})
    server = Server(service_s=0.01, capacity=3)
    records = await generate_calls(
        server, reqs(16), provider_id="p", provider_identity={}, concurrency=8, policy=FAST, load=profile
    )
    assert [r.sample_id for r in records] == [f"s{i}" for i in range(16)]
    assert sum(1 for r in records if r.load["warmup"]) == 4
    summary = summarize_load(profile, records)
    (stage,) = summary.stages
    assert stage.concurrency == 3 and stage.rate is None and stage.saturated is None
    assert stage.achieved_rps is not None and stage.achieved_rps > 0


async def test_sweep_stops_at_the_first_saturated_rate() -> None:
    # Capacity: 1 call at a time, 20 ms each -> at most ~50 req/s.
    profile = LoadProfile(
        profile="sweep",
        rates=[10, 20, 250, 500],
        requests_per_rate=12,
        stop=StopRule(min_throughput_ratio=0.8),
    )
    server = Server(service_s=0.02, capacity=1)
    requests = requests_for(profile, reqs(5))
    records = await generate_calls(
        server, requests, provider_id="p", provider_identity={}, concurrency=8, policy=FAST, load=profile
    )
    assert len(records) == 36  # three stages made, the fourth not
    summary = summarize_load(profile, records)
    assert [s.rate for s in summary.stages] == [10, 20, 250]
    assert [s.saturated for s in summary.stages] == [False, False, True]
    assert summary.stopped_at_rate == 250 and summary.unreached_rates == [500]
    assert summary.max_sustained_rate == 20
    assert "achieved" in (summary.stop_reason or "")
    top = summary.stages[2]
    assert top.achieved_rps is not None and top.achieved_rps < 80
    assert top.latency_s.p95 is not None and top.latency_s.p95 > summary.stages[0].latency_s.p95
    assert "stop after the first stage" in (summary.stop_rule or "")


def test_stop_rule_on_errors_and_latency() -> None:
    base = summarize_stage(
        [_rec(i, ok=i % 3 != 0, finished=i * 0.1, scheduled=i * 0.1, latency=0.5) for i in range(12)],
        StopRule(max_error_rate=0.2),
    )
    assert base.saturated and "error rate" in (base.stop_reason or "")
    slow = summarize_stage(
        [_rec(i, ok=True, finished=i * 0.1, scheduled=i * 0.1, latency=2.0) for i in range(12)],
        StopRule(max_latency_p95_s=1.0),
    )
    assert slow.saturated and "latency p95" in (slow.stop_reason or "")
    fine = summarize_stage(
        [_rec(i, ok=True, finished=i * 0.1, scheduled=i * 0.1, latency=0.2) for i in range(12)], StopRule()
    )
    assert fine.saturated is False and fine.throughput_ratio == pytest.approx(1.0)


def _rec(i: int, *, ok: bool, finished: float, scheduled: float, latency: float):
    from rai_harness.record import CallError, CallRecord

    return CallRecord(
        key=str(i),
        provider_id="p",
        sample_id=f"s{i}",
        repeat=0,
        messages=[],
        params={},
        status="ok" if ok else "error",
        output="x" if ok else None,
        prompt_tokens=1 if ok else None,
        completion_tokens=1 if ok else None,
        tokens_estimated=False,
        ttft_s=latency / 2 if ok else None,
        latency_s=latency if ok else None,
        output_tokens_per_s=None,
        finish_reason=None,
        model=None,
        attempts=1,
        retry_wait_s=0.0,
        started_at=0.0,
        finished_at=0.0,
        cost_usd=None,
        error=None if ok else CallError(type="server_error", message="boom"),
        load={
            "stage": 0,
            "warmup": False,
            "arrivals": "constant",
            "rate": 10.0,
            "concurrency": 8,
            "scheduled_s": scheduled,
            "started_s": scheduled,
            "finished_s": finished + latency,
            "start_lag_s": 0.0,
            "capped": False,
        },
    )


# -- end to end: config -> run.json ------------------------------------------------------------


def test_poisson_run_records_stages_and_warmup_in_run_json(fake_server, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"question {i}"}) + "\n" for i in range(30))
    )
    cfg = {
        "name": "load",
        "seed": 5,
        "providers": [
            {
                "kind": "openai",
                "id": "fake",
                "model": "m",
                "base_url": fake_server.base_url,
                "api_key_env": None,
            }
        ],
        "prompts": {"path": str(prompts)},
        "load": {"profile": "poisson", "rate": 60, "warmup": {"requests": 5}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    from rai_harness.config import load_run_config

    record = run_sync(plan_run(load_run_config(path), config_path=path, out_dir=tmp_path / "out"))
    summary = record.providers["fake"]
    assert summary.calls == 30 and summary.latency_s.n == 25
    load = summary.load
    assert load is not None and load.profile == "poisson" and load.warmup_calls == 5
    assert load.settings["rate"] == 60 and load.planned_rates == [60.0]
    (stage,) = load.stages
    assert stage.calls == 25 and stage.arrivals == "poisson" and stage.ttft_s.n == 25
    again = read_run_record(tmp_path / "out")
    assert again.providers["fake"].load == load
    samples = read_samples(tmp_path / "out" / "samples.jsonl")
    assert sum(1 for s in samples if s.load and s.load["warmup"]) == 5
    scheduled = sorted(s.load["scheduled_s"] for s in samples if s.load and not s.load["warmup"])
    # Same seed -> same arrival schedule as the profile computes on its own.
    stage_plan = load_run_config(path).load.stage_plans(8, seed=5)[1]
    np.testing.assert_allclose(scheduled, arrival_offsets("poisson", 60, 25, stage_plan.seed))


def test_sweep_run_draws_curves_in_the_report_and_escapes_ids(fake_server, tmp_path: Path) -> None:
    from rai_harness.config import load_run_config
    from rai_harness.report import build_report

    hostile = "[x](https://e.vil/a)<img src=x onerror=alert(1)>"
    cfg = {
        "name": "sweep",
        "seed": 2,
        "providers": [
            {"kind": "openai", "id": pid, "model": "m", "base_url": fake_server.base_url, "api_key_env": None}
            for pid in ("fast", hostile)
        ],
        "prompts": {"items": ["one", "two", "three"]},
        # Low rates and a lenient stop rule: this checks the record and the report, not whether a
        # busy CI machine keeps up with a sweep (test_sweep_stops_at_the_first_saturated_rate does).
        "load": {
            "profile": "sweep",
            "rates": [5, 10],
            "requests_per_rate": 6,
            "warmup": {"requests": 2},
            "stop": {"min_throughput_ratio": 0.3},
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    record = run_sync(plan_run(load_run_config(path), config_path=path, out_dir=out))
    for pid in ("fast", hostile):
        load = record.providers[pid].load
        assert load is not None and load.warmup_calls == 2
        assert [s.rate for s in load.stages] == [5, 10] and all(s.calls == 6 for s in load.stages)
        assert record.providers[pid].calls == 14
    page = build_report(out, fmt="html")
    assert "Throughput vs Latency (p95) per load stage" in page
    assert "Throughput vs TTFT (p95) per load stage" in page
    assert "<polyline" in page and "Numbers behind this chart" in page
    assert "<img" not in page and "&lt;img src&#61;x onerror&#61;alert(1)&gt;: 5 req/s target" in page
    md = build_report(out, fmt="md")
    assert "### Load stages" in md and "| fast | 5 req/s | 6 |" in md
    assert "<img" not in md and "\\[x\\](https://e.vil/a)&lt;img" in md
    assert not re.search(r"(?<!\\)\]\(https://e\.vil", md)  # every bracket escaped: no live link


async def test_resumed_sweep_reuses_journaled_stages_and_stops_at_the_same_rate(tmp_path: Path) -> None:
    from rai_harness.run.journal import Journal

    profile = LoadProfile(
        profile="sweep",
        rates=[10, 20, 250, 500],
        requests_per_rate=12,
        stop=StopRule(min_throughput_ratio=0.8),
    )
    requests = requests_for(profile, reqs(5))
    journal = Journal(tmp_path / "j.sqlite")
    first = await generate_calls(
        Server(service_s=0.02, capacity=1),
        requests,
        provider_id="p",
        provider_identity={},
        concurrency=8,
        policy=FAST,
        journal=journal,
        load=profile,
    )
    again_server = Server(service_s=0.02, capacity=1)
    again = await generate_calls(
        again_server,
        requests,
        provider_id="p",
        provider_identity={},
        concurrency=8,
        policy=FAST,
        journal=journal,
        load=profile,
    )
    journal.close()
    assert again_server.n == 0 and all(r.cached for r in again)  # nothing called again
    assert [r.load for r in again] == [r.load for r in first]  # stages and timings kept
    assert (
        summarize_load(profile, again).stopped_at_rate
        == summarize_load(profile, first).stopped_at_rate
        == 250
    )
