"""End-to-end runs against the local fake server: faults, resume after kill -9, secrets, CLI."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.runs import journal_ok_count, write_prompts
from rai_harness.config import load_run_config
from rai_harness.errors import ConfigError
from rai_harness.record import read_run_record, read_samples
from rai_harness.run import plan_run, run_sync
from rai_harness.run.execute import _run_id
from rai_harness.run.journal import Journal
from rai_harness.testing import FakeOpenAIServer, FaultConfig

SECRET = "sk-test-SECRET-7f3a9c1e"


def write_config(path: Path, base_url: str, prompts: Path, **provider_overrides) -> Path:
    provider = {
        "kind": "openai",
        "id": "fake",
        "model": "gpt-4o-mini",
        "base_url": base_url,
        "api_key_env": "RAI_TEST_API_KEY",
        "concurrency": 16,
        "timeout_s": 2.0,
        "max_retries": 6,
        "params": {"max_tokens": 32},
    }
    provider.update(provider_overrides)
    config = {
        "name": "e2e",
        "seed": 7,
        "providers": [provider],
        "prompts": {"path": str(prompts)},
        "runner": {"max_error_rate": 0.05, "backoff_base_s": 0.02, "backoff_max_s": 0.2},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", SECRET)
    return SECRET


def run_config(config_path: Path, out: Path):
    plan = plan_run(load_run_config(config_path), config_path=config_path, out_dir=out)
    return run_sync(plan)


def test_500_calls_with_20_percent_faults_every_sample_accounted_for(tmp_path, api_key):
    faults = FaultConfig(
        fault_rate=0.2,
        faults={"429": 1, "500": 1, "503": 1, "timeout": 1, "drop": 1, "malformed": 1},
        retry_after_s=0.05,
        hang_s=3.0,
        seed=3,
        require_api_key=SECRET,
    )
    # The server runs in its own process so its CPU does not slow the client's event loop, and the
    # per-attempt timeout (2 s) is far above a normal call but below the 3 s "timeout" fault.
    with FakeOpenAIServer(faults, subprocess=True) as srv:
        prompts = write_prompts(tmp_path / "prompts.jsonl", 500)
        cfg = write_config(tmp_path / "run.yaml", srv.base_url, prompts, concurrency=16, timeout_s=2.0)
        record = run_config(cfg, tmp_path / "out")
        stats = srv.stats()
    samples = read_samples(tmp_path / "out" / "samples.jsonl")
    assert len(samples) == 500
    assert {s.sample_id for s in samples} == {f"p{i:04d}" for i in range(500)}
    assert all((s.ok and s.output) or (not s.ok and s.error is not None) for s in samples)
    summary = record.providers["fake"]
    assert summary.calls == 500 and summary.succeeded + summary.failed == 500
    assert summary.retried_calls > 0 and summary.attempts > 500
    # Every attempt reached the server (none was cancelled client-side before it was sent).
    assert stats["calls"] == summary.attempts
    assert sum(stats["faults"].values()) > 50
    # Every success carries timings and tokens; cost is from the shipped gpt-4o-mini price.
    ok = [s for s in samples if s.ok]
    assert all(s.latency_s and s.latency_s > 0 and s.ttft_s is not None for s in ok)
    assert all(s.cost_usd is not None and s.cost_usd > 0 for s in ok)
    assert summary.cost.priced_by == "tokens" and summary.cost.total_usd == pytest.approx(
        sum(s.cost_usd for s in ok)
    )


def test_retry_after_is_waited_between_attempts(tmp_path, api_key):
    with FakeOpenAIServer(FaultConfig(fault_rate=1.0, faults={"429": 1}, retry_after_s=0.4, seed=1)) as srv:
        prompts = write_prompts(tmp_path / "prompts.jsonl", 1)
        cfg = write_config(tmp_path / "run.yaml", srv.base_url, prompts, max_retries=2)
        record = run_config(cfg, tmp_path / "out")
        times = [r["t"] for r in srv.stats()["requests"]]
    assert record.providers["fake"].failed == 1
    assert len(times) == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.4 for gap in gaps), gaps
    (sample,) = read_samples(tmp_path / "out" / "samples.jsonl")
    assert sample.error is not None and sample.error.type == "rate_limit" and sample.attempts == 3


def test_error_budget_marks_run_failed_but_writes_everything(tmp_path, api_key):
    with FakeOpenAIServer(FaultConfig(fault_rate=0.5, faults={"500": 1}, seed=5)) as srv:
        prompts = write_prompts(tmp_path / "prompts.jsonl", 40)
        cfg = write_config(tmp_path / "run.yaml", srv.base_url, prompts, max_retries=0)
        record = run_config(cfg, tmp_path / "out")
    assert record.status == "failed" and record.problems
    assert len(read_samples(tmp_path / "out" / "samples.jsonl")) == 40
    assert read_run_record(tmp_path / "out").status == "failed"


@pytest.mark.slow
def test_resume_after_sigkill_makes_only_missing_calls(tmp_path, api_key):
    n = 200
    with FakeOpenAIServer(FaultConfig(ttft_s=0.05), subprocess=True) as srv:
        prompts = write_prompts(tmp_path / "prompts.jsonl", n)
        cfg = write_config(tmp_path / "run.yaml", srv.base_url, prompts, concurrency=4)
        out = tmp_path / "killed"
        cmd = [sys.executable, "-m", "rai_harness", "run", str(cfg), "--out", str(out), "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
        deadline = time.monotonic() + 60
        while journal_ok_count(out / "journal.sqlite") < n // 2:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "run made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        done = journal_ok_count(out / "journal.sqlite")
        assert n // 2 <= done < n
        with Journal(out / "journal.sqlite") as journal:
            killed_run_id = journal.get_meta("run_id")
        before = srv.stats()["calls"]
        rerun = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert srv.stats()["calls"] - before == n - done  # only the missing calls, in-flight ones included

        straight = tmp_path / "straight"
        run_config(cfg, straight)

    def key(s):
        return (s.sample_id, s.repeat, s.status, s.output, s.prompt_tokens, s.completion_tokens)

    resumed = read_samples(out / "samples.jsonl")
    assert [key(s) for s in resumed] == [key(s) for s in read_samples(straight / "samples.jsonl")]
    assert sum(s.cached for s in resumed) == done
    assert read_run_record(out / "run.json").run_id == killed_run_id  # a resume keeps the identity


def test_a_rerun_is_a_new_run_and_a_resume_keeps_its_identity(tmp_path, api_key):
    prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "run.yaml", "http://127.0.0.1:9/v1", prompts)
    other = write_config(tmp_path / "other.yaml", "http://127.0.0.1:9/v1", prompts, model="gpt-4o")

    def plan(path: Path):
        return plan_run(load_run_config(path), config_path=path, out_dir=out)

    out.mkdir()
    with Journal(out / "journal.sqlite") as journal:
        first = _run_id(journal, plan(cfg))
        assert _run_id(journal, plan(cfg)) == first  # interrupted, rerun: a resume
        started = journal.get_meta("first_started_at")
        # Another config into the same folder is another run, even unfinished.
        second = _run_id(journal, plan(other))
        assert second != first and journal.get_meta("first_started_at") >= started
        # A finished run is never resumed: its rerun is a new run (that reuses its calls).
        journal.set_meta("finished_run_id", second)
        assert _run_id(journal, plan(other)) != second


def test_a_finished_run_rerun_into_its_folder_gets_a_new_id(tmp_path, api_key):
    with FakeOpenAIServer() as srv:
        prompts = write_prompts(tmp_path / "prompts.jsonl", 5)
        cfg = write_config(tmp_path / "run.yaml", srv.base_url, prompts)
        out = tmp_path / "out"
        first = run_config(cfg, out)
        calls = srv.stats()["calls"]
        second = run_config(cfg, out)
        assert srv.stats()["calls"] == calls  # every call reused
    assert second.run_id != first.run_id and second.started_at >= first.started_at
    assert read_run_record(out / "run.json").run_id == second.run_id


def test_sigterm_is_handled_as_an_interrupt_with_junit_and_a_resume_hint(tmp_path, api_key):
    # CI cancels jobs and Kubernetes stops pods with SIGTERM: it killed the run silently (exit
    # -15), without the JUnit error case `--gate` promises on every exit 2.
    n = 200
    policy = Path(__file__).resolve().parents[1] / "evals" / "policies" / "default.yaml"
    with FakeOpenAIServer(FaultConfig(ttft_s=0.05), subprocess=True) as srv:
        prompts = write_prompts(tmp_path / "prompts.jsonl", n)
        cfg = write_config(tmp_path / "run.yaml", srv.base_url, prompts, concurrency=2)
        out, junit = tmp_path / "out", tmp_path / "junit.xml"
        cmd = [sys.executable, "-m", "rai_harness", "run", str(cfg), "--out", str(out), "--quiet"]
        cmd += ["--gate", str(policy), "--junit", str(junit)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while journal_ok_count(out / "journal.sqlite") < 10:
            assert proc.poll() is None and time.monotonic() < deadline, "run made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "interrupted" in stderr and "rerun the same command to resume" in stderr
    assert junit.is_file() and "interrupted" in junit.read_text()


def test_secret_never_written_anywhere(tmp_path, api_key, caplog):
    caplog.set_level("DEBUG")
    # One provider with the right key, one with a key the server rejects (401 error path).
    with FakeOpenAIServer(
        FaultConfig(require_api_key=SECRET, fault_rate=0.3, faults={"500": 1}, seed=2)
    ) as srv:
        prompts = write_prompts(tmp_path / "prompts.jsonl", 20)
        cfg_path = tmp_path / "run.yaml"
        write_config(cfg_path, srv.base_url, prompts, headers_env={"X-Extra-Auth": "RAI_TEST_API_KEY"})
        data = yaml.safe_load(cfg_path.read_text())
        bad = dict(data["providers"][0], id="wrong-key", api_key_env="RAI_TEST_WRONG_KEY")
        data["providers"].append(bad)
        data["runner"]["max_error_rate"] = 1.0
        cfg_path.write_text(yaml.safe_dump(data))
        os.environ["RAI_TEST_WRONG_KEY"] = SECRET + "-wrong"
        try:
            out = tmp_path / "out"
            result = subprocess.run(
                [sys.executable, "-m", "rai_harness", "-v", "run", str(cfg_path), "--out", str(out)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            run_config(cfg_path, tmp_path / "out2")
        finally:
            del os.environ["RAI_TEST_WRONG_KEY"]
    assert result.returncode in (0, 1), result.stderr
    samples = read_samples(out / "samples.jsonl")
    assert any(s.error and s.error.type == "auth" for s in samples)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "journal.sqlite" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), f"secret leaked into {path}"
    assert SECRET not in result.stdout and SECRET not in result.stderr
    assert SECRET not in caplog.text


def test_cli_config_error_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nproviders:\n  - kind: opnai\n    model: m\nprompts: {items: [hi]}\n")
    result = subprocess.run(
        [sys.executable, "-m", "rai_harness", "run", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr and "providers[0].kind" in result.stderr and "openai" in result.stderr


def test_an_unusable_output_folder_is_a_config_error_naming_out(tmp_path, api_key):
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    cfg = write_config(tmp_path / "run.yaml", "http://127.0.0.1:9/v1", prompts)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "rai_harness", "run", str(cfg), "--out", str(blocker / "out"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "as the output folder" in result.stderr and "--out" in result.stderr
    assert "internal error" not in result.stderr


def test_cli_missing_env_var_reported_before_any_call(tmp_path, fake_server, monkeypatch):
    monkeypatch.delenv("RAI_TEST_API_KEY", raising=False)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    cfg = write_config(tmp_path / "run.yaml", fake_server.base_url, prompts)
    result = subprocess.run(
        [sys.executable, "-m", "rai_harness", "run", str(cfg), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "RAI_TEST_API_KEY" in result.stderr and "providers[0].api_key_env" in result.stderr
    assert fake_server.stats()["calls"] == 0


def test_cli_version_and_providers():
    version = subprocess.run(
        [sys.executable, "-m", "rai_harness", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("rai-harness ")
    listing = subprocess.run(
        [sys.executable, "-m", "rai_harness", "providers", "--json"], capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    kinds = {k["kind"] for k in json.loads(listing.stdout)}
    assert {"openai", "azure-openai", "vertex", "bedrock", "hf-local", "replay"} <= kinds


GUARD_POLICY = """
name: test-guard
classifiers:
  banned: {backend: keyword, options: {weapons: [bomb]}}
  chatter: {backend: keyword, options: {weather: [weather]}}
input:
  - {name: no-weapons, classifier: banned, threshold: 0.5, action: block}
output:
  - {name: weather-talk, classifier: chatter, threshold: 0.5, action: flag}
"""


def test_guarded_and_unguarded_provider_side_by_side(tmp_path, api_key):
    policy = tmp_path / "policy.yaml"
    policy.write_text(GUARD_POLICY)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"id": "ok", "prompt": "tell me about the weather"})
        + "\n"
        + json.dumps({"id": "bad", "prompt": "how do I build a bomb"})
        + "\n"
    )
    with FakeOpenAIServer(FaultConfig()) as srv:
        cfg_path = write_config(tmp_path / "run.yaml", srv.base_url, prompts)
        data = yaml.safe_load(cfg_path.read_text())
        guarded = dict(data["providers"][0], id="fake+guard", guard={"policy": "policy.yaml"})
        data["providers"].append(guarded)
        cfg_path.write_text(yaml.safe_dump(data))
        record = run_config(cfg_path, tmp_path / "out")
        calls = srv.stats()["calls"]
    assert calls == 3  # the blocked prompt never reached the model
    samples = {(s.provider_id, s.sample_id): s for s in read_samples(tmp_path / "out" / "samples.jsonl")}
    blocked = samples[("fake+guard", "bad")]
    assert blocked.ok and blocked.finish_reason == "guard_blocked_input" and blocked.guard is not None
    assert blocked.guard["action"] == "block"
    flagged = samples[("fake+guard", "ok")]
    assert flagged.guard is not None and flagged.guard["action"] == "flag" and "weather" in flagged.output
    assert samples[("fake", "bad")].guard is None and samples[("fake", "bad")].output.startswith("Echo")
    assert record.providers["fake+guard"].finish_reasons.get("guard_blocked_input") == 1
    assert "guarded_by" in record.providers["fake+guard"].model_info


def test_bad_guard_policy_fails_at_plan_time(tmp_path, api_key):
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: x\ninput:\n  - {name: r, classifier: missing, threshold: 0.5, action: block}\n")
    prompts = write_prompts(tmp_path / "prompts.jsonl", 1)
    cfg_path = write_config(
        tmp_path / "run.yaml", "http://127.0.0.1:9/v1", prompts, guard={"policy": "policy.yaml"}
    )
    with pytest.raises(ConfigError) as info:
        plan_run(load_run_config(cfg_path), config_path=cfg_path)
    assert "policy.yaml" in str(info.value)


def test_a_rerun_under_new_prices_or_without_streaming_reports_what_the_config_says(tmp_path, api_key):
    # Pricing is not part of a call's identity (a new price must not re-send the calls), so the
    # reused calls are priced again; streaming is (a call not streamed measures no TTFT).
    with FakeOpenAIServer() as srv:
        prompts = write_prompts(tmp_path / "prompts.jsonl", 5)
        out = tmp_path / "out"
        cheap = write_config(
            tmp_path / "a.yaml", srv.base_url, prompts, pricing={"input_per_1m": 1.0, "output_per_1m": 2.0}
        )
        dear = write_config(
            tmp_path / "b.yaml",
            srv.base_url,
            prompts,
            pricing={"input_per_1m": 100.0, "output_per_1m": 200.0},
            stream=False,
        )
        fresh = tmp_path / "fresh"
        first = run_config(cheap, out)
        calls = srv.stats()["calls"]
        second = run_config(dear, out)
        assert srv.stats()["calls"] == 2 * calls  # not streamed: every call made again
        third = run_config(dear, fresh)
        again = run_config(
            write_config(
                tmp_path / "c.yaml",
                srv.base_url,
                prompts,
                pricing={"input_per_1m": 100.0, "output_per_1m": 200.0},
            ),
            out,
        )
        assert srv.stats()["calls"] == 3 * calls  # streamed again: the first run's calls reused
    a, b, c, d = (r.providers["fake"] for r in (first, second, third, again))
    assert a.ttft_s.n == calls and b.ttft_s.n == 0 and c.ttft_s.n == 0 and d.ttft_s.n == calls
    assert b.cost.total_usd == pytest.approx(c.cost.total_usd) and b.cost.total_usd > 0
    assert d.cost.total_usd == pytest.approx(100 * a.cost.total_usd)
    assert all(
        s.cost_usd == pytest.approx(s.prompt_tokens * 1e-4 + s.completion_tokens * 2e-4)
        for s in read_samples(out / "samples.jsonl")
        if s.ok
    )


def test_a_url_with_credentials_is_refused_before_anything_is_written(tmp_path, api_key):
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    cfg = write_config(tmp_path / "run.yaml", "http://user:pw-secret@127.0.0.1:9/v1", prompts)
    with pytest.raises(ConfigError) as caught:
        load_run_config(cfg)
    assert "base_url" in str(caught.value) and "pw-secret" not in str(caught.value)
