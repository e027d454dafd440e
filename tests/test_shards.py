"""Calls sharded over worker processes: one journal writer, and kill -9 of a worker loses only in-flight calls."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers.runs import journal_ok_count
from rai_harness.config import load_run_config, parse_run_config
from rai_harness.errors import ConfigError
from rai_harness.load import LoadProfile, StopRule, arrival_offsets, event_rate, requests_for, summarize_load
from rai_harness.providers.openai_compat import OpenAIConfig
from rai_harness.record import CallRecord, read_run_record, read_samples
from rai_harness.run import plan_run, run_sync
from rai_harness.run.journal import Journal
from rai_harness.run.runner import RetryPolicy
from rai_harness.run.shards import generate_calls_sharded
from rai_harness.run.sizing import size_workers
from rai_harness.testing import FakeOpenAIServer, FaultConfig
from rai_harness.types import ChatRequest, GenerationParams


def reqs(n: int) -> list[ChatRequest]:
    params = GenerationParams(max_tokens=8)
    return [ChatRequest.from_prompt(f"s{i}", f"shard prompt {i}", params=params) for i in range(n)]


def config(base_url: str, concurrency: int = 4) -> OpenAIConfig:
    return OpenAIConfig(
        kind="openai", model="m", base_url=base_url, api_key_env=None, concurrency=concurrency, workers=2
    )


async def test_kill_9_of_a_worker_loses_only_its_in_flight_calls(fake_server, tmp_path: Path) -> None:
    # One test for the whole life cycle: each worker is a fresh interpreter (seconds to start on
    # a busy machine), so the suite starts as few as it can.
    # Calls take a while, so the killed worker still has calls to make: workers stay up between
    # stages, and on a loaded box the parent may read records late (at 0.15 s per call this test
    # failed once on a loaded box, most likely because the killed worker had already made all of
    # its calls when the 6th record was read, so no replacement was needed).
    fake_server.configure(ttft_s=0.3)
    cfg = config(fake_server.base_url, concurrency=4)
    requests = reqs(40)
    journal = Journal(tmp_path / "j.sqlite")
    pids: list[int] = []
    killed: list[int] = []

    def on_workers(current: list[int]) -> None:
        pids[:] = current

    def on_record(record: CallRecord) -> None:
        if len(killed) == 0 and journal.count("ok") >= 6:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    records = await generate_calls_sharded(
        cfg,
        requests,
        workers=2,
        provider_id="p",
        provider_identity=cfg.cache_identity(),
        concurrency=4,
        policy=RetryPolicy(timeout_s=20),
        journal=journal,
        on_record=on_record,
        on_workers=on_workers,
    )
    assert killed and killed[0] not in pids and os.getpid() not in pids  # replaced, other processes
    assert [r.sample_id for r in records] == [f"s{i}" for i in range(40)]  # every call, in order
    assert all(r.ok and r.output for r in records)
    assert journal.count("ok") == 40  # the parent is the one journal writer
    # Each worker has 2 calls in flight: at most those were lost and made again.
    made = len(fake_server.stats()["requests"])
    assert 40 <= made <= 40 + 2, made
    # A rerun reuses the journal: no process is started, no call is made.
    fake_server.reset()
    again = await generate_calls_sharded(
        cfg,
        requests,
        workers=2,
        provider_id="p",
        provider_identity=cfg.cache_identity(),
        concurrency=4,
        journal=journal,
        on_workers=on_workers,
    )
    journal.close()
    assert all(r.cached for r in again) and fake_server.stats()["requests"] == []


@pytest.mark.parametrize(
    ("provider", "load", "fragment"),
    [
        ({"workers": 2, "guard": {"policy": "g.yaml"}}, None, "does not support a guard"),
        ({"workers": "auto", "guard": {"policy": "g.yaml"}}, None, "does not support a guard"),
        ({"workers": 0}, None, "greater than or equal to 1"),
        ({"workers": "many"}, None, "auto"),
    ],
)
def test_unsupported_worker_setups_are_refused(provider: dict, load: dict | None, fragment: str) -> None:
    data = {
        "providers": [{"kind": "openai", "model": "m", "api_key_env": None, **provider}],
        "prompts": {"items": ["a"]},
    }
    if load:
        data["load"] = load
    with pytest.raises(ConfigError, match=fragment):
        parse_run_config(data, file="run.yaml")


def test_a_lost_workers_call_is_a_retryable_error_record() -> None:
    from rai_harness.run.shards import _lost_record

    request = ChatRequest.from_prompt("s1", "hello")
    record = _lost_record("k1", "p1", request, deaths=3, exitcode=-9)
    assert (record.key, record.provider_id, record.sample_id, record.status) == ("k1", "p1", "s1", "error")
    assert record.output is None and record.attempts == 0 and record.cost_usd is None
    assert record.error is not None and record.error.type == "worker_lost" and record.error.retryable is True
    assert "died 3 times" in record.error.message and "-9" in record.error.message


async def test_workers_follow_a_poisson_profile_on_one_shared_clock(fake_server, tmp_path: Path) -> None:
    # Two worker processes share one Poisson schedule: the parent deals the arrivals out and
    # gives both one start instant on time.monotonic(). Checked by order and counts only.
    fake_server.configure(ttft_s=0.01)
    cfg = config(fake_server.base_url, concurrency=8)
    profile = LoadProfile(profile="poisson", rate=40, warmup={"requests": 4}, seed=3)
    journal = Journal(tmp_path / "j.sqlite")
    pids: list[int] = []
    records = await generate_calls_sharded(
        cfg,
        reqs(40),
        workers=2,
        provider_id="p",
        provider_identity=cfg.cache_identity(),
        concurrency=8,
        policy=RetryPolicy(timeout_s=20),
        journal=journal,
        load=profile,
        on_workers=lambda current: pids.extend(p for p in current if p not in pids),
    )
    assert len(pids) == 2 and os.getpid() not in pids
    assert [r.sample_id for r in records] == [f"s{i}" for i in range(40)] and all(r.ok for r in records)
    assert journal.count("ok") == 40  # the parent journaled every record
    journal.close()
    warm = [r for r in records if r.load["warmup"]]
    measured = [r for r in records if not r.load["warmup"]]
    assert [r.sample_id for r in warm] == ["s0", "s1", "s2", "s3"] and {r.load["stage"] for r in warm} == {-1}
    # The combined arrivals of the measured stage are the profile's own schedule, position by
    # position (each worker took every second one).
    plans = profile.stage_plans(8, seed=0)
    expected = arrival_offsets("poisson", 40, 36, plans[1].seed)
    np.testing.assert_allclose([r.load["scheduled_s"] for r in measured], expected)
    # One clock: no call of either worker started before it was due (a worker on another clock
    # would start calls early or seconds late), and each finished after it started.
    for r in records:
        assert r.load["started_s"] >= r.load["scheduled_s"] - 1e-3, r.load
        assert r.load["finished_s"] >= r.load["started_s"]
    # The stage's statistics are computed from both workers' records together; warm-up excluded.
    summary = summarize_load(profile, records)
    assert summary.warmup_calls == 4
    (stage,) = summary.stages
    assert stage.calls == 36 and stage.offered_rps is not None
    assert stage.offered_rps == pytest.approx(event_rate(expected))


async def test_a_sweep_over_two_workers_stops_at_the_first_saturated_rate(
    fake_server, tmp_path: Path
) -> None:
    # Capacity: an in-flight cap of 4 (2 per worker) over 50 ms calls -> at most ~80 req/s, so
    # the 400 req/s stage saturates and the 800 req/s one is never started. The low rates are
    # far below it, and the stop rule is loose (50% of the offered rate) for a busy machine.
    fake_server.configure(ttft_s=0.05)
    cfg = config(fake_server.base_url, concurrency=4)
    profile = LoadProfile(
        profile="sweep",
        rates=[4, 8, 400, 800],
        requests_per_rate=12,
        max_concurrency=4,
        stop=StopRule(min_throughput_ratio=0.5),
    )
    requests = requests_for(profile, reqs(6))
    journal = Journal(tmp_path / "j.sqlite")
    pids: list[int] = []
    records = await generate_calls_sharded(
        cfg,
        requests,
        workers=2,
        provider_id="p",
        provider_identity=cfg.cache_identity(),
        concurrency=4,
        policy=RetryPolicy(timeout_s=20),
        journal=journal,
        load=profile,
        on_workers=lambda current: pids.extend(p for p in current if p not in pids),
    )
    assert len(pids) >= 2 and os.getpid() not in pids
    assert len(records) == 36 and all(r.ok for r in records)  # three stages made, the fourth not
    assert journal.count("ok") == 36 and fake_server.stats()["calls"] == 36
    journal.close()
    assert [r.load["stage"] for r in records] == [0] * 12 + [1] * 12 + [2] * 12
    summary = summarize_load(profile, records)
    assert [s.rate for s in summary.stages] == [4, 8, 400]
    assert [s.saturated for s in summary.stages] == [False, False, True]
    assert summary.stopped_at_rate == 400 and summary.unreached_rates == [800]
    assert summary.max_sustained_rate == 8 and "achieved" in (summary.stop_reason or "")
    # Each stage's arrivals are the profile's one schedule, whichever worker made the call.
    for stage in summary.stages[:2]:
        mine = [r for r in records if r.load["stage"] == stage.index]
        np.testing.assert_allclose(
            [r.load["scheduled_s"] for r in mine], arrival_offsets("constant", stage.rate, 12)
        )
        assert all(r.load["started_s"] >= r.load["scheduled_s"] - 1e-3 for r in mine)


def test_size_workers_from_rate_and_cpu_per_call() -> None:
    # 200 calls/s x 4 ms = 0.8 CPU; at most half busy per loop -> 2 workers.
    n, reason = size_workers(200, 0.004, cpu_cap=16, calls=1000)
    assert n == 2 and "0.8 CPU" in reason and "-> 2" in reason
    assert size_workers(10, 0.004, cpu_cap=16, calls=1000)[0] == 1  # 0.04 CPU: one loop
    assert size_workers(1000, 0.008, cpu_cap=16, calls=1000)[0] == 16  # 8 CPU -> 16
    capped, why = size_workers(1000, 0.008, cpu_cap=4, calls=1000)
    assert capped == 4 and "capped at 4 (CPUs)" in why
    few, why = size_workers(1000, 0.008, cpu_cap=16, calls=3)
    assert few == 3 and "calls to make" in why
    assert size_workers(100, 0.01, cpu_cap=8, calls=100, target_busy=1.0)[0] == 1  # exactly 1 CPU
    assert size_workers(5, 0.0, cpu_cap=8, calls=100)[0] == 1
    for bad in ({"demanded_rps": 0.0}, {"demanded_rps": math.inf}, {"cpu_s_per_call": -1.0}):
        args = {"demanded_rps": 10.0, "cpu_s_per_call": 0.001, **bad}
        with pytest.raises(ValueError):
            size_workers(args["demanded_rps"], args["cpu_s_per_call"], cpu_cap=2, calls=10)


def test_workers_auto_sizes_from_a_calibration_and_records_why(fake_server, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"question {i}"}) + "\n" for i in range(24))
    )
    cfg = {
        "name": "auto",
        "seed": 2,
        "providers": [
            {
                "kind": "openai",
                "id": "fake",
                "model": "m",
                "base_url": fake_server.base_url,
                "api_key_env": None,
                "workers": "auto",
            }
        ],
        "prompts": {"path": str(prompts)},
        # A rate no single loop can keep on time: the sizing asks for every CPU there is.
        "load": {"profile": "constant", "rate": 2000, "warmup": {"requests": 2}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    record = run_sync(plan_run(load_run_config(path), config_path=path, out_dir=tmp_path / "out"))
    sizing = read_run_record(tmp_path / "out").timing_quality["worker_processes"]["fake"]
    assert sizing == record.timing_quality["worker_processes"]["fake"]
    assert sizing["source"] == "auto" and sizing["calibration_calls"] == 8
    assert sizing["demanded_rps"] == 2000 and "peak rate" in sizing["demand"]
    assert sizing["cpu_ms_per_call"] > 0 and sizing["cpu_cap"] >= 1
    # The recorded choice is the sizing rule applied to the recorded measurement.
    expected, reason = size_workers(
        2000, sizing["cpu_ms_per_call"] / 1000, cpu_cap=sizing["cpu_cap"], calls=24
    )
    assert sizing["workers"] == expected and sizing["reason"] == reason
    # 8 calibration calls, then the run's 24, each once; every call recorded with its schedule.
    assert len(fake_server.stats()["requests"]) == 8 + 24
    samples = read_samples(tmp_path / "out" / "samples.jsonl")
    assert len(samples) == 24 and all(s.load is not None for s in samples)
    assert sum(1 for s in samples if s.load["warmup"]) == 2
    summary = record.providers["fake"]
    assert summary.calls == 24 and summary.latency_s.n == 22


def _spawned_children(pid: int) -> list[int]:
    """Worker processes (multiprocessing spawn children) of ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may never reap an orphan)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
def test_kill_9_of_the_parent_ends_its_workers_and_a_resume_makes_only_missing_calls(tmp_path: Path) -> None:
    n = 120
    with FakeOpenAIServer(FaultConfig(ttft_s=0.05), subprocess=True) as srv:
        prompts = tmp_path / "p.jsonl"
        prompts.write_text(
            "".join(json.dumps({"id": f"q{i}", "prompt": f"question {i}"}) + "\n" for i in range(n))
        )
        cfg = {
            "name": "parent-kill",
            "providers": [
                {
                    "kind": "openai",
                    "id": "fake",
                    "model": "m",
                    "base_url": srv.base_url,
                    "api_key_env": None,
                    "workers": 2,
                }
            ],
            "prompts": {"path": str(prompts)},
            "load": {"profile": "constant", "rate": 30},
        }
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "rai_harness", "run", str(path), "--out", str(out), "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while journal_ok_count(out / "journal.sqlite") < n // 3:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "run made no progress"
            time.sleep(0.05)
        workers = _spawned_children(proc.pid)
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        # The orphaned workers notice and end (they check on their parent twice a second);
        # the generous deadline is for a loaded machine, not a timing claim.
        deadline = time.monotonic() + 60
        while any(_running(pid) for pid in workers):
            assert time.monotonic() < deadline, "orphaned workers kept running"
            time.sleep(0.1)
        done = journal_ok_count(out / "journal.sqlite")
        assert n // 3 <= done < n
        before = srv.stats()["calls"]
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert srv.stats()["calls"] - before == n - done  # only the missing calls, in-flight ones included
    samples = read_samples(out / "samples.jsonl")
    assert len(samples) == n and sum(s.cached for s in samples) == done
    assert all(s.load is not None for s in samples if not s.cached)
