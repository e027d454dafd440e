"""The Ray engine (``runner.engine: ray``) against the local fake server.

One Ray instance (2 CPUs, 127.0.0.1, no dashboard, no usage statistics) serves the whole
module: starting Ray costs seconds. The checks: the same config gives the same samples on
``local`` and ``ray`` with 20% injected faults, and a rerun resumes from the journal; killing
a worker mid-run loses no call, and a provider's concurrency and rpm are honoured across all
workers together (split, not multiplied); every worker dead is a clear error; a missing ``ray`` is a plan-time error with the
install command.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rai_harness.config import load_run_config
from rai_harness.errors import ConfigError, RunError
from rai_harness.record import read_samples
from rai_harness.run import execute_run, plan_run, run_sync
from rai_harness.run.ray_engine import split_limit
from rai_harness.testing import FakeOpenAIServer, FaultConfig

SECRET = "sk-test-RAY-5be1c0de"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A private Ray instance for this module (2 CPUs, loopback only, no dashboard): the ray module."""
    pytest.importorskip("ray", reason="the `ray` wheel is not installed (pip install 'rai-harness[ray]')")
    from rai_harness.run.ray_engine import import_ray

    ray = import_ray(loopback=True)  # before ray.init: binds 127.0.0.1 only, no usage statistics
    for attempt in range(2):
        try:
            ray.init(
                address="local",  # a new private instance, even if `ray start` left one running
                num_cpus=2,
                include_dashboard=False,
                namespace="rai-harness",
                log_to_driver=False,
                configure_logging=False,
            )
            break
        except Exception:  # Ray gives its raylet 30 s to register: on a saturated machine, retry once
            ray.shutdown()
            if attempt:
                raise
    try:
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", SECRET)
    return SECRET


def _config(tmp_path: Path, base_url: str, n: int, *, engine: str, workers: int = 2, **provider) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    with prompts.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"p{i:04d}", "prompt": f"question {i} about tides"}) + "\n")
    spec = {
        "kind": "openai",
        "id": "fake",
        "model": "gpt-4o-mini",
        "base_url": base_url,
        "api_key_env": "RAI_TEST_API_KEY",
        "concurrency": 8,
        "timeout_s": 1.0,
        "max_retries": 6,
        "params": {"max_tokens": 16},
        **provider,
    }
    config = {
        "name": "ray-test",
        "seed": 11,
        "providers": [spec],
        "prompts": {"path": str(prompts)},
        "runner": {
            "max_error_rate": 1.0,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "engine": engine,
            "ray_workers": workers,
        },
    }
    path = tmp_path / f"{engine}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config: Path, out: Path, **kwargs):
    plan = plan_run(load_run_config(config), config_path=config, out_dir=out)
    return run_sync(plan, **kwargs)


def test_split_limit_is_exact_and_even():
    for total in range(0, 40):
        for parts in range(1, 9):
            shares = split_limit(total, parts)
            assert sum(shares) == total and len(shares) == parts
            assert max(shares) - min(shares) <= 1


def test_a_loopback_cluster_address_keeps_the_driver_on_loopback():
    from rai_harness.run.ray_engine import _is_loopback

    assert all(
        _is_loopback(a) for a in ("127.0.0.1:6379", "localhost:6379", "ray://127.0.0.1:10001", "[::1]:1")
    )
    assert not any(_is_loopback(a) for a in ("10.0.0.2:6379", "auto", "head.example:6379"))


_CONNECT = """
import sys, time
from rai_harness.errors import RaiError
from rai_harness.run.ray_engine import connect_ray
from ray._private import ray_constants
start = time.monotonic()
try:
    connect_ray(sys.argv[1])
except RaiError as exc:
    print(type(exc).__name__, round(time.monotonic() - start), ray_constants.ENABLE_RAY_CLUSTER, exc)
"""


@pytest.mark.parametrize("address", ["127.0.0.1:1", "auto"])
def test_an_unreachable_cluster_address_fails_fast_on_loopback(address, monkeypatch):
    """ray.init waited on an unreachable address forever; `auto` resolving to a loopback
    cluster got the machine's routable address instead (Ray rewrites 127.0.0.1)."""
    pytest.importorskip("ray", reason="the `ray` wheel is not installed")
    # A fresh process: this module's Ray instance would make connect_ray a no-op. For
    # `auto`, RAY_ADDRESS is what Ray resolves it from first.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    done = subprocess.run(
        [sys.executable, "-c", _CONNECT, address], capture_output=True, text=True, timeout=120
    )
    kind, seconds, cluster_mode, message = done.stdout.split(" ", 3)
    assert kind == "RunError" and "could not reach the Ray cluster at '127.0.0.1:1'" in message, done
    assert int(seconds) < 30 and cluster_mode == "False"  # bounded, and the driver stayed on loopback


def test_a_malformed_cluster_address_is_a_config_error():
    pytest.importorskip("ray", reason="the `ray` wheel is not installed")
    from rai_harness.run.ray_engine import _check_reachable

    with pytest.raises(ConfigError, match="HOST:PORT"):
        _check_reachable("head-node")


def test_missing_ray_is_a_plan_time_error_with_the_install_command(tmp_path, api_key, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    config = _config(tmp_path, "http://127.0.0.1:9", 2, engine="ray")
    with pytest.raises(ConfigError) as err:
        plan_run(load_run_config(config), config_path=config)
    assert "pip install 'rai-harness[ray]'" in str(err.value)
    assert err.value.key_path == "runner.engine"


def test_a_load_profile_with_the_ray_engine_is_a_plan_time_error(tmp_path, api_key):
    config = _config(tmp_path, "http://127.0.0.1:9", 2, engine="ray")
    data = yaml.safe_load(config.read_text())
    data["load"] = {"profile": "constant", "rate": 5}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="load profile runs in one process") as err:
        plan_run(load_run_config(config), config_path=config)
    assert err.value.key_path == "load"


def test_same_samples_on_local_and_ray_with_20_percent_faults(tmp_path, api_key, ray_cluster):
    faults = FaultConfig(
        fault_rate=0.2,
        faults={"429": 1, "500": 1, "503": 1, "timeout": 1, "drop": 1, "malformed": 1},
        retry_after_s=0.01,
        hang_s=1.5,
        seed=4,
        require_api_key=SECRET,
    )
    n = 120
    outs = {}
    with FakeOpenAIServer(faults) as srv:
        for engine in ("local", "ray"):
            srv.reset()  # fault draws depend on how often a body was seen: start each run afresh
            config = _config(tmp_path, srv.base_url, n, engine=engine)
            record = _run(config, tmp_path / engine)
            outs[engine] = (record, read_samples(tmp_path / engine / "samples.jsonl"))
            assert srv.stats()["max_in_flight"] <= 8
        # Resume on Ray: a rerun into the same folder reuses the journal, with no worker started.
        srv.reset()
        resumed = _run(_config(tmp_path, srv.base_url, n, engine="ray"), tmp_path / "ray")
        assert srv.stats()["calls"] == 0

    def key(s):
        return (s.key, s.sample_id, s.repeat, s.status, s.output, s.error.type if s.error else None)

    local, ray_samples = outs["local"][1], outs["ray"][1]
    assert len(ray_samples) == n
    assert [key(s) for s in ray_samples] == [key(s) for s in local]
    # Faults were retried on both engines. The attempt totals are not compared: on a loaded machine a
    # call without a fault can still pass its 1 s timeout and be retried once more on one side only.
    assert sum(s.attempts for s in ray_samples) > n and sum(s.attempts for s in local) > n
    # Timed in the workers, and each record says where.
    assert all(s.host_id is None for s in local)
    assert all(s.host_id and s.host_id.startswith("ray:") for s in ray_samples)
    assert all(s.latency_s and s.latency_s > 0 for s in ray_samples if s.ok)
    # Backoff jitter differs between chunks: one seed per chunk, not the run's seed restarted in
    # every chunk of every worker (retries then fired in lockstep).
    jittered = [s.retry_wait_s for s in ray_samples if s.retry_wait_s]
    assert len(jittered) < 2 or len(set(jittered)) > 1
    assert outs["ray"][0].providers["fake"].calls == n
    quality = outs["ray"][0].timing_quality
    assert quality["event_loop_lag_ms"]["samples"] > 0  # the workers' loops
    assert quality["engine"] == "ray" and quality["workers"] == 2 and quality["hosts"] == 1
    assert outs["local"][0].timing_quality["engine"] == "local"
    again = read_samples(tmp_path / "ray" / "samples.jsonl")
    assert all(s.cached for s in again) and [key(s) for s in again] == [key(s) for s in local]
    assert resumed.providers["fake"].calls == n


def test_killing_a_worker_mid_run_loses_nothing_and_concurrency_stays_global(
    tmp_path, api_key, ray_cluster, fake_server
):
    # 5 slots over 2 workers (3 + 2). The kill is for good (no restart), so the survivor makes
    # the dead worker's calls in flight, within its own share.
    fake_server.configure(latency_s=0.03)
    n = 200
    config = _config(tmp_path, fake_server.base_url, n, engine="ray", concurrency=5)
    ray = ray_cluster
    seen = []
    killed = []

    def on_record(record):
        seen.append(record)
        if len(seen) == 40 and not killed:
            names = [
                a["name"]
                for a in ray.util.list_named_actors(all_namespaces=True)
                if a["namespace"] == "rai-harness" and a["name"].startswith("calls-")
            ]
            victim = sorted(names)[0]
            # As kill -9, and for good: its calls in flight must be made by the other worker.
            ray.kill(ray.get_actor(victim, namespace="rai-harness"), no_restart=True)
            killed.append(victim)

    record = _run(config, tmp_path / "out", on_record=on_record)
    assert killed
    samples = read_samples(tmp_path / "out" / "samples.jsonl")
    assert sorted(s.sample_id for s in samples) == [f"p{i:04d}" for i in range(n)]
    assert all(s.ok for s in samples) and record.status == "complete"
    assert record.providers["fake"].succeeded == n
    # The server never saw more than 5 at once, and more than one worker's share: the limit
    # is global, not per worker.
    assert 3 < fake_server.stats()["max_in_flight"] <= 5, fake_server.stats()["max_in_flight"]
    assert {s.host_id for s in samples} == {samples[0].host_id}  # one node here; both workers report it


def _call_actors(ray: Any) -> list[Any]:
    return [
        ray.get_actor(a["name"], namespace="rai-harness")
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "rai-harness" and a["name"].startswith("calls-")
    ]


def test_a_worker_restarted_twice_keeps_working(tmp_path, api_key, ray_cluster, fake_server):
    # One worker, two chunk loops: each death fails both loops' chunks, and was counted once
    # per failed chunk, so one kill used up the restart budget. Restarts count processes.
    fake_server.configure(latency_s=0.03)
    n = 120
    config = _config(tmp_path, fake_server.base_url, n, engine="ray", workers=1, concurrency=4)
    ray = ray_cluster
    seen: list[Any] = []
    kills: list[int] = []

    def on_record(record):
        seen.append(record)
        if len(seen) in (20, 60) and len(kills) < 2:
            (actor,) = _call_actors(ray)
            ray.kill(actor, no_restart=False)  # as kill -9; Ray restarts it (max_restarts=2)
            kills.append(len(seen))

    record = _run(config, tmp_path / "out", on_record=on_record)
    assert kills == [20, 60]
    assert record.status == "complete" and record.providers["fake"].succeeded == n
    quality = record.timing_quality
    assert quality["workers"] == 1 and quality["workers_started"] == 1  # the restarted worker is still live
    assert quality["worker_restarts"] == 2 and quality["hosts"] == 1
    assert record.timing_quality["event_loop_lag_ms"]["samples"] > 0  # and measured after its restart


def test_a_stopped_worker_is_killed_and_its_calls_made_again(
    tmp_path, api_key, ray_cluster, fake_server, monkeypatch
):
    import os
    import signal

    from rai_harness.run import ray_engine

    # A SIGSTOPped process keeps its actor "alive" for Ray, and the run waited on it forever.
    monkeypatch.setattr(ray_engine, "STALL_CHECK_S", 1.0)
    monkeypatch.setattr(ray_engine, "PING_TIMEOUT_S", 1.0)
    fake_server.configure(latency_s=0.03)
    n = 60
    config = _config(tmp_path, fake_server.base_url, n, engine="ray", workers=1, concurrency=2)
    ray = ray_cluster
    seen: list[Any] = []
    stopped: list[int] = []

    def on_record(record):
        seen.append(record)
        if len(seen) == 10 and not stopped:
            (actor,) = _call_actors(ray)
            pid = int(ray.get(actor.ping.remote()).rsplit("/", 1)[1])
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)

    record = _run(config, tmp_path / "out", on_record=on_record)
    assert stopped
    assert record.status == "complete" and record.providers["fake"].succeeded == n
    samples = read_samples(tmp_path / "out" / "samples.jsonl")
    assert sorted(s.sample_id for s in samples) == [f"p{i:04d}" for i in range(n)]


def test_rpm_is_split_among_workers_not_multiplied(tmp_path, api_key, ray_cluster, fake_server):
    # rpm 1800 (30 requests/s) over 2 workers with concurrency 5 (shares 3 + 2). Each worker
    # spaces its own starts at its share of the rate, the first one at once, so from any
    # moment before the first start, the cluster can have started at most rate * elapsed + 1
    # per worker. A limit given to each worker whole would start ~2x as many: 180 calls in
    # ~3 s instead of >= ~6 s. The bound holds however slow the machine is (a slow machine
    # only starts fewer), so no wall-clock window is asserted.
    import time

    from rai_harness.run.journal import Journal
    from rai_harness.run.ray_engine import _plan_work, _specs_for

    rpm, n, workers = 1800.0, 180, 2
    config = _config(tmp_path, fake_server.base_url, n, engine="ray", workers=workers, concurrency=5, rpm=rpm)
    plan = plan_run(load_run_config(config), config_path=config, out_dir=tmp_path / "out")

    # The split itself: the shares of rpm follow the shares of concurrency and add up to rpm.
    with Journal(tmp_path / "plan-only.sqlite") as scratch:
        _, _, shares = _plan_work(plan, scratch)
    per_worker = [_specs_for(plan, shares, i)["fake"].rpm for i in range(workers)]
    assert per_worker == pytest.approx([rpm * 3 / 5, rpm * 2 / 5])

    # End to end: request arrival times at the server (time.monotonic is one clock for every
    # process on the machine), counted from the moment the workers were ready (before any
    # worker could take a call off the queue).
    marks: dict[str, float] = {}
    record = run_sync(plan, on_start=lambda *_: marks.setdefault("ready", time.monotonic()))
    assert record.providers["fake"].succeeded == n
    assert record.timing_quality["workers"] == workers
    arrivals = sorted(r["t"] for r in fake_server.stats()["requests"])
    assert len(arrivals) == n  # no retries: one request per call
    elapsed = arrivals[-1] - marks["ready"]
    # 10% over the exact bound for slack; a limit multiplied by the workers would be ~100% over.
    allowed = 1.1 * rpm / 60.0 * elapsed + workers
    assert n <= allowed, f"{n} requests in {elapsed:.2f} s: the rpm limit ({rpm:g}) was exceeded"


def test_every_worker_dead_is_a_run_error_and_the_journal_keeps_the_rest(
    tmp_path, api_key, ray_cluster, fake_server
):
    import asyncio

    ray = ray_cluster
    fake_server.configure(latency_s=0.03)
    config = _config(tmp_path, fake_server.base_url, 100, engine="ray", workers=1, concurrency=2)
    plan = plan_run(load_run_config(config), config_path=config, out_dir=tmp_path / "out")
    count = []

    def on_record(record):
        count.append(record)
        if len(count) == 10:
            for a in ray.util.list_named_actors(all_namespaces=True):
                if a["namespace"] == "rai-harness" and a["name"].startswith("calls-"):
                    ray.kill(ray.get_actor(a["name"], namespace="rai-harness"), no_restart=True)

    with pytest.raises(RunError, match="rerun the same command to resume"):
        asyncio.run(execute_run(plan, on_record=on_record))
    from rai_harness.run.journal import Journal

    with Journal(tmp_path / "out" / "journal.sqlite") as journal:
        assert 10 <= journal.count("ok") < 100


# -- scoring on Ray Data ------------------------------------------------------------------------

KEYWORDS = {"backend": "keyword", "options": {"toxic": ["idiot", "moron"]}}


def test_suite_scoring_on_ray_data_equals_local(tmp_path, api_key, ray_cluster, fake_server):
    from rai_harness.classifiers.ray_pool import RayDataPool
    from rai_harness.run.score import score_suites

    fake_server.configure(reply="a calm reply", script={"traffic": "an idiot who cannot drive"})
    cfg = {
        "name": "tox",
        "seed": 3,
        "providers": [
            {
                "kind": "openai",
                "id": "fake",
                "model": "gpt-4o-mini",
                "base_url": fake_server.base_url,
                "api_key_env": "RAI_TEST_API_KEY",
                "params": {"max_tokens": 16},
            }
        ],
        "suites": [{"name": "toxicity", "params": {"repeats": 2, "scorer": KEYWORDS, "n_resamples": 200}}],
    }
    path = tmp_path / "tox.yaml"
    path.write_text(yaml.safe_dump(cfg))
    plan = plan_run(load_run_config(path), config_path=path, out_dir=tmp_path / "out")
    local = run_sync(plan)
    records = read_samples(tmp_path / "out" / "samples.jsonl")
    bare = [dataclasses.replace(r, scores=None) for r in records]
    pool = RayDataPool(actors=2, block=16)
    on_ray = score_suites(plan.suites, bare, seed=plan.config.seed, pool=pool)
    assert not on_ray.problems, on_ray.problems
    assert [r.scores for r in on_ray.records] == [r.scores for r in records]
    assert on_ray.suites["toxicity"].results == local.suites["toxicity"].results
    assert not on_ray.problems
    (info,) = pool.info()
    assert info["engine"] == "ray-data" and info["actors"] == 2 and info["calls"]["ray-data"] >= 1
    assert info["backend"] == "keyword"  # the model's own description travels with it


def test_a_ray_data_pool_below_its_threshold_records_the_model_and_says_it_scored_here():
    # Most runs score fewer texts than ray_score_min_texts: the record claimed Ray Data and
    # lost the model's identity (weights, hashes) that a local run records.
    from rai_harness.classifiers.base import ClassifierSpec
    from rai_harness.classifiers.pool import default_pool
    from rai_harness.classifiers.ray_pool import RayDataPool

    spec = ClassifierSpec.model_validate(KEYWORDS)
    pool = RayDataPool(actors=2, min_texts=1000, connect=lambda: pytest.fail("Ray was not needed"))
    scores = pool.classifier(spec).predict(["you idiot", "hello"])
    assert [s.scores["toxic"] for s in scores] == [1.0, 0.0]
    (info,) = pool.info()
    local = default_pool().classifier(spec).info()
    assert {k: info[k] for k in local} == local
    assert info["engine"] == "in-process" and info["actors"] == 0
    assert info["calls"] == {"ray-data": 0, "in-process": 1}


def test_transformer_scores_on_ray_data_match_local_within_float_tolerance(ray_cluster):
    # The bundled MiniLM toxicity head, loaded once in one Ray Data actor. Blocks group texts
    # differently from a local call, so padding differs: scores agree to 1e-5 absolute.
    from rai_harness.classifiers.base import ClassifierSpec
    from rai_harness.classifiers.pool import ClassifierPool
    from rai_harness.classifiers.ray_pool import RayDataPool

    spec = ClassifierSpec(backend="minilm-toxicity")
    texts = [
        ("you are an idiot " if i % 3 == 0 else "have a lovely day ") * (1 + i % 5) + str(i)
        for i in range(48)
    ]
    local = ClassifierPool().classifier(spec).predict(texts)
    remote = RayDataPool(actors=1, block=10).classifier(spec).predict(texts)
    assert len(remote) == len(texts)
    for a, b in zip(local, remote, strict=True):
        assert a.scores.keys() == b.scores.keys()
        assert all(abs(a.scores[k] - b.scores[k]) <= 1e-5 for k in a.scores)


def test_guard_audit_on_ray_equals_local(tmp_path, ray_cluster):
    from typer.testing import CliRunner

    from rai_harness.cli import app

    policy = tmp_path / "p.yaml"
    policy.write_text(
        "name: kw\nclassifiers:\n  kw: {backend: keyword, options: {toxic: [idiot]}}\n"
        "output:\n  - {name: kw-out, classifier: kw, threshold: 0.5, action: block}\n"
    )
    rows = [
        {
            "text": ("you idiot " if i % 4 == 0 else "hello there ") + str(i),
            "label": int(i % 4 == 0 or i % 9 == 0),
        }
        for i in range(60)
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reports = {}
    for engine in ("local", "ray"):
        args = [
            "guard",
            "audit",
            "-p",
            str(policy),
            "-d",
            str(data),
            "--stage",
            "output",
            "--json",
            "--engine",
            engine,
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        for rail in report["rails"]:
            rail.pop("latency")
        reports[engine] = report
    assert reports["ray"] == reports["local"]
    assert reports["ray"]["rails"][0]["metrics"]["tp"] == 15


def test_starting_ray_keeps_the_processs_sigterm_handler():
    # ray.init installs its own SIGTERM handler (sys.exit): the run's graceful interrupt (the
    # resume hint, the --gate JUnit) was skipped and the CLI exited with status 15.
    pytest.importorskip("ray", reason="the `ray` wheel is not installed (pip install 'rai-harness[ray]')")
    code = (
        "import signal, ray\n"
        "from rai_harness.run.ray_engine import connect_ray, import_ray\n"
        "def mine(signum, frame): pass\n"
        "signal.signal(signal.SIGTERM, mine)\n"
        "import_ray(loopback=True)\n"
        "try:\n"
        "    assert connect_ray(None)\n"
        "    assert signal.getsignal(signal.SIGTERM) is mine, signal.getsignal(signal.SIGTERM)\n"
        "finally:\n"
        "    ray.shutdown()\n"
        "print('kept')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "kept" in proc.stdout, proc.stderr[-2000:]


async def test_a_lost_actor_is_not_waited_for_once_every_call_is_made():
    # A restarted actor that can never be placed (its node removed) kept the finished run
    # waiting up to RESTART_WAIT_S (5 minutes).
    import asyncio
    from collections import deque

    from rai_harness.run.ray_engine import _recover_unless_done, _Work

    class Lost:
        async def recover(self, seen: str) -> None:
            await asyncio.sleep(3600)

    work = _Work("p", (), deque(), chunk=1, remaining=1, results=[None])

    async def the_others_finish() -> None:
        await asyncio.sleep(0.05)
        async with work.cond:
            work.remaining = 0
            work.cond.notify_all()

    finisher = asyncio.ensure_future(the_others_finish())
    await asyncio.wait_for(_recover_unless_done(Lost(), "x", work), 10)  # type: ignore[arg-type]
    await finisher
