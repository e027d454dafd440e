"""Runner overhead and timing accuracy, side by side in one process.

1. Overhead: N calls to the local fake server (fixed per-call latency, streamed) at concurrency C,
   once through the full runner (journal, retries, timing, cost, progress bars) and once through a
   bare asyncio loop over the same `openai` SDK client. Rounds alternate (bare, full, bare, full...)
   so machine noise hits both; the medians are compared. Target: the runner adds <= 15% wall time.
   Client CPU per call is reported for both (the SDK itself costs several ms of CPU per call here).
2. Timing accuracy: the server delays its first token by a known amount; the median TTFT the runner
   records at concurrency C should be within 10 ms of it. Event-loop lag is reported alongside.
3. TTFT error, measured directly: the server stamps the moment it writes each call's first content
   chunk (``FaultConfig(stamp=True)``); per call, error = TTFT the runner recorded - (first chunk
   sent - request arrived at the server). p50/p99 at concurrency C for the SDK path (``client: sdk``)
   and the lean path (``client: httpx``), with client CPU per call. Targets: p50 <= 5 ms, p99 <= 25 ms.
   The harness's TTFT counts from the moment the request is written to its connection (the
   server's clock starts when it arrives); the wait before the send (opening one of C new
   connections at once, the loop's queue) is recorded apart as ``connect_s`` and shown beside.

4. Sweep (``--sweep-only`` runs just this; section ``runner_sweep``): constant-rate stages at
   rising rates against the stamping server, each rate once through the full runner under a load
   profile (``rai_harness.load``: scheduler, journal, lean httpx path) and once through a bare
   asyncio loop that starts raw httpx streams on the same schedule; per rate, achieved throughput,
   TTFT percentiles and TTFT error of both side by side, and the runner's verdict under the
   default stop rule. The sweep stops after the first rate the runner's stage is saturated.

5. Worker processes (``--workers-only``; section ``runner_workers``): the TTFT error of point 3 at
   concurrency C, one event loop against ``workers: N`` processes (``rai_harness.run.shards``),
   alternating rounds; client CPU per call includes the workers' CPU. Then the same at a constant
   rate (``--workers-rate``, default 200 calls/s): the runner on this process's loop against N
   worker processes sharing the profile's schedule on one clock.

Run: .venv/bin/python benchmarks/runner_overhead.py [--calls 2000] [--concurrency 64] [--rounds 2]
     .venv/bin/python benchmarks/runner_overhead.py --sweep-only [--sweep-rates 25,50,100,200,400]
The fake server runs in a subprocess so its CPU is not charged to the client.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openai
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section
from rai_harness.cli import ProgressSink, run_progress
from rai_harness.load import LoadProfile, StopRule, arrival_offsets, event_rate, stop_reason, summarize_load
from rai_harness.pricing import PriceTable
from rai_harness.providers.openai_compat import OpenAIConfig, make_http_client
from rai_harness.record import CallRecord, LoadStage
from rai_harness.run.journal import Journal
from rai_harness.run.runner import LoopLagMonitor, RetryPolicy, generate_calls
from rai_harness.testing import FakeOpenAIServer, FaultConfig
from rai_harness.types import ChatRequest, GenerationParams


def make_requests(n: int) -> list[ChatRequest]:
    params = GenerationParams(max_tokens=16)
    return [ChatRequest.from_prompt(f"s{i}", f"benchmark prompt number {i}", params=params) for i in range(n)]


async def bare_loop(
    base_url: str, requests: list[ChatRequest], concurrency: int
) -> tuple[float, float, list[float]]:
    """The minimum: one SDK client, a semaphore, streamed calls, TTFT taken at the first content chunk."""
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key="not-needed",
        max_retries=0,
        # Same HTTP stack and pool size as the adapter, so only the runner's own work differs.
        http_client=make_http_client(concurrency, 30.0),
    )
    sem = asyncio.Semaphore(concurrency)
    ttfts: list[float] = []

    async def one(req: ChatRequest) -> None:
        async with sem:
            t0 = time.perf_counter()
            first = None
            stream = await client.chat.completions.create(
                model="fake",
                messages=req.messages_as_dicts(),
                max_tokens=16,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - t0
            if first is not None:
                ttfts.append(first)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await client.close()
    return wall, cpu, ttfts


async def bare_httpx_loop(
    base_url: str, requests: list[ChatRequest], concurrency: int
) -> tuple[float, float, dict[str, float]]:
    """The minimum over raw httpx (the lean path's stack): a semaphore, SSE lines, TTFT at the first content.

    It gets what any client that keeps the answer must: every event decoded, the text joined
    and the usage read (the runner records both). Stopping at the first token would leave
    out work that is the call's, not the runner's.

    Returns wall s, CPU s and TTFT s by prompt (to match the stamping server's records).
    """
    client = make_http_client(concurrency, 30.0)
    url = base_url.rstrip("/") + "/chat/completions"
    sem = asyncio.Semaphore(concurrency)
    ttfts: dict[str, float] = {}
    answers: list[str] = []
    usages: list[dict] = []

    async def one(req: ChatRequest) -> None:
        body = {
            "model": "fake",
            "messages": req.messages_as_dicts(),
            "max_tokens": 16,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with sem:
            t0 = time.perf_counter()
            first = None
            parts: list[str] = []
            async with client.stream("POST", url, json=body) as resp:
                async for line in resp.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    event = json.loads(line[6:])
                    for choice in event.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            if first is None:
                                first = time.perf_counter() - t0
                            parts.append(content)
                    if isinstance(event.get("usage"), dict):
                        usages.append(event["usage"])
            answers.append("".join(parts))
            if first is not None:
                ttfts[req.messages[-1].content] = first

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await client.aclose()
    return wall, cpu, ttfts


async def full_runner(
    base_url: str, requests: list[ChatRequest], concurrency: int, workdir: Path, client: str = "sdk"
) -> tuple[float, float, list[float], dict]:
    """The real thing: provider adapter, runner, journal, cost, and ``rai run``'s own progress bars and
    sink, drawn to a terminal console that writes nowhere."""
    cfg = OpenAIConfig(
        kind="openai",
        model="gpt-4o-mini",
        base_url=base_url,
        api_key_env=None,
        concurrency=concurrency,
        client=client,
    )
    provider = cfg.build()
    price = PriceTable.default().resolve("openai", "gpt-4o-mini")
    journal = Journal(workdir / f"journal-{time.monotonic_ns()}.sqlite")
    monitor = LoopLagMonitor()
    progress = run_progress(Console(file=io.StringIO(), force_terminal=True))
    sink = ProgressSink(progress)
    sink.tasks["bench"] = progress.add_task("bench", total=len(requests), errors=0, rate=0.0)
    cpu0, t0 = time.process_time(), time.perf_counter()
    with progress:
        monitor.start()
        records = await generate_calls(
            provider,
            requests,
            provider_id="bench",
            provider_identity=cfg.cache_identity(),
            concurrency=concurrency,
            policy=RetryPolicy(timeout_s=30),
            journal=journal,
            price=price,
            on_record=sink.record,
        )
        await monitor.stop()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await provider.aclose()
    journal.close()
    failed = sum(1 for r in records if not r.ok)
    if failed:
        raise SystemExit(f"{failed} calls failed in the benchmark; the fake server should not fail")
    return wall, cpu, [r.ttft_s for r in records if r.ttft_s is not None], monitor.summary()


async def ttft_errors(
    srv: FakeOpenAIServer, requests: list[ChatRequest], concurrency: int, workdir: Path, client: str
) -> tuple[list[float], float, dict, list[float]]:
    """Per-call TTFT error (s) of the full runner against the stamping server, CPU s per call, lag, connect_s."""
    srv.reset()
    cfg = OpenAIConfig(
        kind="openai",
        model="m",
        base_url=srv.base_url,
        api_key_env=None,
        concurrency=concurrency,
        client=client,
    )
    provider = cfg.build()
    journal = Journal(workdir / f"journal-{time.monotonic_ns()}.sqlite")
    monitor = LoopLagMonitor()
    cpu0 = time.process_time()
    monitor.start()
    records = await generate_calls(
        provider,
        requests,
        provider_id="bench",
        provider_identity=cfg.cache_identity(),
        concurrency=concurrency,
        policy=RetryPolicy(timeout_s=60),
        journal=journal,
    )
    await monitor.stop()
    cpu = time.process_time() - cpu0
    await provider.aclose()
    journal.close()
    connects = [r.connect_s for r in records if r.connect_s is not None]
    return _ttft_errors(srv, requests, records), cpu / len(requests), monitor.summary(), connects


def _ttft_errors(
    srv: FakeOpenAIServer, requests: list[ChatRequest], records: list[CallRecord]
) -> list[float]:
    """Recorded TTFT minus the server's true TTFT (first chunk sent - request arrived), per successful call."""
    stamps = _stamps(srv)
    return [  # records come back in request order
        r.ttft_s - stamps[req.messages[-1].content]
        for req, r in zip(requests, records, strict=True)
        if r.ok and r.ttft_s is not None and req.messages[-1].content in stamps
    ]


def _ms_pair(values: list[float]) -> str:
    """``p50 / p99`` in ms, or n/a (the path did not see the send)."""
    if not values:
        return "n/a"
    return f"{_pct(values, 0.5) * 1000:.1f} / {_pct(values, 0.99) * 1000:.1f}"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- worker processes ------------------------------------------------------------------------------


async def ttft_errors_workers(
    srv: FakeOpenAIServer,
    requests: list[ChatRequest],
    concurrency: int,
    workdir: Path,
    workers: int,
    load: LoadProfile | None = None,
) -> tuple[list[float], float, float, list[CallRecord]]:
    """TTFT errors (s) with the calls over ``workers`` processes; CPU s/call (parent + workers); wall s; records."""
    from rai_harness.run.shards import generate_calls_sharded

    srv.reset()
    cfg = OpenAIConfig(
        kind="openai",
        model="m",
        base_url=srv.base_url,
        api_key_env=None,
        concurrency=concurrency,
        workers=workers,
    )
    journal = Journal(workdir / f"journal-{time.monotonic_ns()}.sqlite")
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    records = await generate_calls_sharded(
        cfg,
        requests,
        workers=workers,
        provider_id="bench",
        provider_identity=cfg.cache_identity(),
        concurrency=concurrency,
        policy=RetryPolicy(timeout_s=60),
        journal=journal,
        load=load,
    )
    wall = time.perf_counter() - t0
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    journal.close()
    cpu = sum(
        (b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime) for a, b in ((self0, self1), (kids0, kids1))
    )
    return _ttft_errors(srv, requests, records), cpu / len(requests), wall, records


def _start_lag_p95_ms(stage: LoadStage) -> float:
    return (stage.start_lag_s.p95 or 0.0) * 1000


def run_workers(calls: int, concurrency: int, workers: int, rounds: int, rate: float) -> str:
    """The worker-process section of RESULTS.md (module docstring, point 5)."""
    load_start = os.getloadavg()[0]
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAIServer(FaultConfig(ttft_s=0.3, inter_token_s=0.02, stamp=True), subprocess=True) as srv,
    ):
        for r in range(rounds):
            for w in (1, workers):
                reqs = _sweep_requests(f"w{w} round{r}", calls)
                errs, cpu, wall, recs = asyncio.run(ttft_errors_workers(srv, reqs, concurrency, Path(tmp), w))
                connects = [x.connect_s for x in recs if x.connect_s is not None]
                rows.append((w, r + 1, errs, cpu, wall, connects, os.getloadavg()[0]))
        rate_rows = run_workers_at_rate(srv, Path(tmp), calls, workers, rounds, rate)
    load_end = os.getloadavg()[0]
    lines = [
        f"{calls} streamed calls per row at concurrency {concurrency} against the stamping fake server (own "
        "process; first token after 300 ms, then 20 ms per token, 16 tokens), lean httpx path, through "
        "`generate_calls_sharded` (1 worker = one extra process with one loop, like `workers: 1` would be; "
        "the parent only journals). TTFT error = recorded TTFT - (first chunk sent - request arrived). "
        "Wall includes starting the worker interpreters. Recorded TTFT counts from the request's send; "
        "connect = the wait before it (`connect_s`, recorded apart).",
        "",
        "| workers | round | calls | TTFT error p50 ms | p90 ms | p99 ms | max ms | connect p50 / p99 ms | CPU ms/call (all processes) | wall s | load avg |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for w, r, errs, cpu, wall, connects, load in rows:
        lines.append(
            f"| {w} | {r} | {len(errs)} | {_pct(errs, 0.5) * 1000:.1f} | {_pct(errs, 0.9) * 1000:.1f} | "
            f"{_pct(errs, 0.99) * 1000:.1f} | {max(errs) * 1000:.1f} | {_ms_pair(connects)} | {cpu * 1000:.2f} | "
            f"{wall:.1f} | {load:.1f} |"
        )
    lines += [
        "",
        f"At a constant rate of {rate:g} calls/s (`LoadProfile(profile='constant', rate={rate:g})`, "
        f"in-flight cap 256, same server, {calls} measured calls after a warm-up of about one second "
        "at the rate, left out as the run record leaves it out): the runner on this process's loop, then "
        f"{workers} worker processes sharing the profile's one schedule (dealt out round-robin, one start "
        "instant on `time.monotonic()`). Achieved = successful completions per second (least-squares "
        "rate); start lag = how late calls started against their schedule; CPU per measured call "
        "includes the warm-up's and, for workers, starting their interpreters.",
        "",
        "| path | round | calls | achieved req/s | TTFT error p50 ms | p90 ms | p99 ms | start lag p95 ms | CPU ms/call (all processes) | load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rate_rows,
        "",
        f"Machine load (1-minute load average) at start / end: {load_start:.1f} / {load_end:.1f} on "
        f"{os.cpu_count()} cores. Workers help when the client's loop is the bottleneck and idle cores "
        "exist; with the cores already oversubscribed by other processes they mostly add process overhead.",
    ]
    return "\n".join(lines)


async def rate_stage(
    srv: FakeOpenAIServer, rate: float, n: int, warmup: int, workdir: Path, workers: int
) -> tuple[LoadStage, list[float], float]:
    """``warmup`` + ``n`` calls at a constant rate, on this loop (``workers`` 1) or over worker processes.

    Returns the measured stage, the TTFT errors (s) of its calls (warm-up left out, as the run
    record leaves it out) and the CPU s per measured call of every process (parent and workers).
    """
    srv.reset()
    cap = 256
    profile = LoadProfile(profile="constant", rate=rate, max_concurrency=cap, warmup={"requests": warmup})
    requests = _sweep_requests(f"rate{rate:g} w{workers} {time.monotonic_ns()} ", warmup + n)
    cfg = OpenAIConfig(kind="openai", model="m", base_url=srv.base_url, api_key_env=None, concurrency=cap)
    journal = Journal(workdir / f"rate-{time.monotonic_ns()}.sqlite")
    common = {
        "provider_id": "bench",
        "provider_identity": cfg.cache_identity(),
        "concurrency": cap,
        "policy": RetryPolicy(timeout_s=60),
        "journal": journal,
        "load": profile,
    }
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    if workers == 1:
        provider = cfg.build()
        records = await generate_calls(provider, requests, **common)
        await provider.aclose()
    else:
        from rai_harness.run.shards import generate_calls_sharded

        records = await generate_calls_sharded(cfg, requests, workers=workers, **common)
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    journal.close()
    cpu = sum(
        (b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime) for a, b in ((self0, self1), (kids0, kids1))
    )
    (stage,) = summarize_load(profile, records).stages
    measured = [(q, r) for q, r in zip(requests, records, strict=True) if not (r.load or {}).get("warmup")]
    errors = _ttft_errors(srv, [q for q, _ in measured], [r for _, r in measured])
    return stage, errors, cpu / n


def run_workers_at_rate(
    srv: FakeOpenAIServer, workdir: Path, calls: int, workers: int, rounds: int, rate: float
) -> list[str]:
    """Table rows: one loop vs ``workers`` processes under a constant-rate profile, alternating."""
    warmup = max(20, round(rate))  # about one second at the rate: connections and imports warm
    rows = []
    for r in range(rounds):
        for w in (1, workers):
            stage, errs, cpu = asyncio.run(rate_stage(srv, rate, calls, warmup, workdir, w))
            path = "one loop" if w == 1 else f"{w} workers"
            rows.append((path, r + 1, stage, errs, cpu, os.getloadavg()[0]))
    return [
        f"| {path} | {r} | {len(errs)} | {stage.achieved_rps or 0:.1f} | {_pct(errs, 0.5) * 1000:.1f} | "
        f"{_pct(errs, 0.9) * 1000:.1f} | {_pct(errs, 0.99) * 1000:.1f} | {_start_lag_p95_ms(stage):.1f} | "
        f"{cpu * 1000:.2f} | {load:.1f} |"
        for path, r, stage, errs, cpu, load in rows
    ]


# -- sweep ---------------------------------------------------------------------------------------


def _sweep_requests(tag: str, n: int) -> list[ChatRequest]:
    """Distinct prompts (the server's stamps are matched to calls by prompt)."""
    params = GenerationParams(max_tokens=16)
    return [ChatRequest.from_prompt(f"{tag}{i}", f"{tag} call {i}", params=params) for i in range(n)]


def _stamps(srv: FakeOpenAIServer) -> dict[str, float]:
    """Prompt -> server-side TTFT (first chunk sent - request arrived), seconds."""
    return {r["prompt"]: r["first_sent"] - r["t"] for r in srv.stats()["requests"] if "first_sent" in r}


async def sweep_runner_stage(
    srv: FakeOpenAIServer, rate: float, n: int, cap: int, workdir: Path
) -> tuple[dict, list[float], float]:
    """One constant-rate stage through the full runner: (stage summary, TTFT errors, CPU s/call)."""
    srv.reset()
    requests = _sweep_requests(f"runner r{rate:g}", n)
    profile = LoadProfile(profile="constant", rate=rate, max_concurrency=cap)
    cfg = OpenAIConfig(kind="openai", model="m", base_url=srv.base_url, api_key_env=None, concurrency=cap)
    provider = cfg.build()
    journal = Journal(workdir / f"sweep-{time.monotonic_ns()}.sqlite")
    price = PriceTable.default().resolve("openai", "gpt-4o-mini")
    cpu0 = time.process_time()
    records = await generate_calls(
        provider,
        requests,
        provider_id="bench",
        provider_identity=cfg.cache_identity(),
        concurrency=cap,
        policy=RetryPolicy(timeout_s=60),
        journal=journal,
        price=price,
        load=profile,
    )
    cpu = time.process_time() - cpu0
    await provider.aclose()
    journal.close()
    stamps = _stamps(srv)
    errors = [
        r.ttft_s - stamps[req.messages[-1].content]
        for req, r in zip(requests, records, strict=True)
        if r.ok and r.ttft_s is not None and req.messages[-1].content in stamps
    ]
    (stage,) = summarize_load(profile, records).stages
    return stage.model_dump(), errors, cpu / n


async def sweep_bare_stage(srv: FakeOpenAIServer, rate: float, n: int, cap: int) -> dict:
    """The same schedule from a bare loop: raw httpx streams, TTFT at the first content delta."""
    srv.reset()
    requests = _sweep_requests(f"bare r{rate:g}", n)
    client = make_http_client(cap, 60.0)
    url = srv.base_url.rstrip("/") + "/chat/completions"
    offsets = arrival_offsets("constant", rate, n)
    slots = asyncio.Semaphore(cap)
    loop = asyncio.get_running_loop()
    ttft: dict[int, float] = {}
    finished: list[float] = []
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        body = {
            "model": "m",
            "messages": requests[i].messages_as_dicts(),
            "max_tokens": 16,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        t0 = time.perf_counter()
        try:
            async with client.stream("POST", url, json=body) as resp:
                async for line in resp.aiter_lines():
                    if i not in ttft and line.startswith("data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        if (choices[0].get("delta") or {}).get("content"):
                            ttft[i] = time.perf_counter() - t0
            finished.append(loop.time() - start)
        except Exception:
            failed += 1
        finally:
            slots.release()

    tasks = []
    cpu0 = time.process_time()
    start = loop.time()
    for i in range(n):
        delay = start + offsets[i] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(loop.create_task(one(i)))
    await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu0
    await client.aclose()
    stamps = _stamps(srv)
    errors = [
        t - stamps[requests[i].messages[-1].content]
        for i, t in ttft.items()
        if requests[i].messages[-1].content in stamps
    ]
    values = list(ttft.values())
    return {
        "achieved_rps": event_rate(finished),
        "failed": failed,
        "ttft_p50": float(np.percentile(values, 50)) if values else None,
        "ttft_p95": float(np.percentile(values, 95)) if values else None,
        "errors": errors,
        "cpu_call": cpu / n,
    }


def run_sweep(rates: list[float], seconds: float, cap: int) -> str:
    """The sweep section of RESULTS.md (see the module docstring, point 4)."""
    rule = StopRule()
    load_start = os.getloadavg()[0]
    rows = []
    stopped = None
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAIServer(FaultConfig(ttft_s=0.1, inter_token_s=0.01, stamp=True), subprocess=True) as srv,
    ):
        # Warm both paths (imports, connection pools, the server's first requests).
        asyncio.run(sweep_runner_stage(srv, rates[0], 20, cap, Path(tmp)))
        asyncio.run(sweep_bare_stage(srv, rates[0], 20, cap))
        for rate in rates:
            n = max(20, round(rate * seconds))
            stage, errs, cpu = asyncio.run(sweep_runner_stage(srv, rate, n, cap, Path(tmp)))
            bare = asyncio.run(sweep_bare_stage(srv, rate, n, cap))
            reason = stop_reason(LoadStage.model_validate(stage), rule)
            rows.append((rate, n, stage, errs, cpu, bare, reason, os.getloadavg()[0]))
            if reason is not None:
                stopped = (rate, reason)
                break
    load_end = os.getloadavg()[0]

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v * 1000:.1f}"

    def rps(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f}"

    lines = [
        f"Constant-rate stages of {seconds:g} s each (at least 20 calls) against the stamping fake server "
        "(own process; first token after 100 ms, then 10 ms per token, 16 tokens); in-flight cap "
        f"{cap}. Each rate runs the full runner under a load profile (`LoadProfile(profile='constant')`: "
        "scheduler, retries, journal, cost, lean httpx path), then a bare asyncio loop starting raw "
        "httpx streams on the same schedule. Achieved = successful completions per second "
        "(least-squares rate); TTFT error = recorded TTFT - (first chunk sent - request arrived), per "
        "call, from the server's stamps. Verdict: the default stop rule "
        f"({rule.describe()}) on the runner's stage.",
        "",
        "| rate req/s | calls | achieved runner | achieved bare | ratio runner/bare | TTFT p50 runner / bare ms "
        "| TTFT p95 runner / bare ms | TTFT error p50 / p99 runner ms | TTFT error p50 / p99 bare ms "
        "| start lag p95 ms | client CPU ms/call runner / bare | load avg | verdict |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for rate, n, stage, errs, cpu, bare, reason, load in rows:
        ach, bach = stage["achieved_rps"], bare["achieved_rps"]
        ratio = f"{ach / bach:.2f}" if ach and bach else "n/a"
        berrs = bare["errors"]
        lines.append(
            f"| {rate:g} | {n} | {rps(ach)} | {rps(bach)} | {ratio} | "
            f"{ms(stage['ttft_s']['p50'])} / {ms(bare['ttft_p50'])} | {ms(stage['ttft_s']['p95'])} / {ms(bare['ttft_p95'])} | "
            f"{ms(_pct(errs, 0.5) if errs else None)} / {ms(_pct(errs, 0.99) if errs else None)} | "
            f"{ms(_pct(berrs, 0.5) if berrs else None)} / {ms(_pct(berrs, 0.99) if berrs else None)} | "
            f"{ms(stage['start_lag_s']['p95'])} | {cpu * 1000:.2f} / {bare['cpu_call'] * 1000:.2f} | {load:.1f} | "
            f"{'saturated: ' + reason if reason else 'ok'} |"
        )
    lines += [
        "",
        (
            f"The sweep stopped at {stopped[0]:g} req/s ({stopped[1]})."
            if stopped
            else f"No rate up to {rates[-1]:g} req/s saturated the runner's stage."
        ),
        "",
        f"Machine load (1-minute load average, all processes) at start / end: {load_start:.1f} / {load_end:.1f} "
        f"on {os.cpu_count()} cores (per-rate values in the table). Where the load average exceeds the core "
        "count, other processes take the client's CPU: the knee moves to lower rates and TTFT error grows; "
        "compare the runner with the bare loop within a row.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument(
        "--ttft-ms", type=float, default=200.0, help="known first-token delay for the accuracy check"
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--error-calls", type=int, default=1280, help="calls per path in the TTFT-error table")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument(
        "--sweep-only", action="store_true", help="run only the rate sweep (section runner_sweep)"
    )
    ap.add_argument("--no-sweep", action="store_true", help="skip the rate sweep")
    ap.add_argument("--sweep-rates", default="25,50,100,200,400,800", help="comma-separated req/s, rising")
    ap.add_argument("--sweep-seconds", type=float, default=3.0, help="length of each sweep stage")
    ap.add_argument("--sweep-cap", type=int, default=256, help="in-flight cap of each sweep stage")
    ap.add_argument("--workers-only", action="store_true", help="run only the worker-process table")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for the workers table")
    ap.add_argument("--workers-rate", type=float, default=200.0, help="calls/s of the workers-at-a-rate rows")
    args = ap.parse_args()
    if args.workers_only:
        table = run_workers(args.error_calls, args.concurrency, args.workers, args.rounds, args.workers_rate)
        print(table)
        if not args.no_write:
            write_section("runner_workers", table)
        return
    if not args.no_sweep:
        rates = [float(r) for r in args.sweep_rates.split(",") if r.strip()]
        sweep = run_sweep(rates, args.sweep_seconds, args.sweep_cap)
        print(sweep)
        if not args.no_write:
            write_section("runner_sweep", sweep)
        if args.sweep_only:
            return

    requests = make_requests(args.calls)
    lat = args.latency_ms / 1000
    load_start = os.getloadavg()[0]
    bare_w, full_w, bare_c, full_c = [], [], [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAIServer(FaultConfig(ttft_s=lat), subprocess=True) as srv,
    ):
        asyncio.run(bare_loop(srv.base_url, requests[:64], args.concurrency))  # warm-up every path
        asyncio.run(full_runner(srv.base_url, requests[:64], args.concurrency, Path(tmp)))
        asyncio.run(bare_httpx_loop(srv.base_url, requests[:64], args.concurrency))
        asyncio.run(full_runner(srv.base_url, requests[:64], args.concurrency, Path(tmp), client="httpx"))
        lean: dict[str, list[tuple[float, float]]] = {"bare": [], "full": []}
        for _ in range(args.rounds):
            w, c, _t = asyncio.run(bare_loop(srv.base_url, requests, args.concurrency))
            bare_w.append(w)
            bare_c.append(c)
            w, c, _t, _lag = asyncio.run(full_runner(srv.base_url, requests, args.concurrency, Path(tmp)))
            full_w.append(w)
            full_c.append(c)
            w, c, _t = asyncio.run(bare_httpx_loop(srv.base_url, requests, args.concurrency))
            lean["bare"].append((w, c))
            w, c, _t, _lag = asyncio.run(
                full_runner(srv.base_url, requests, args.concurrency, Path(tmp), client="httpx")
            )
            lean["full"].append((w, c))
        # Timing accuracy: known first-token delay, at the benchmark's concurrency and at a low one
        # where the client's event loop is not saturated (the SDK's CPU cost per call bounds it).
        srv.configure(ttft_s=args.ttft_ms / 1000)
        n_acc = min(args.calls, 640)
        accuracy = []
        for conc in sorted({args.concurrency, 8}, reverse=True):
            acc_reqs = make_requests(n_acc if conc > 8 else min(n_acc, 160))
            # The default path (lean httpx) against the bare loop on the same stack; the SDK
            # path's error is in the per-call table below.
            _w, _c, bare_ttft = asyncio.run(bare_httpx_loop(srv.base_url, acc_reqs, conc))
            _w, _c, full_ttft, lag = asyncio.run(
                full_runner(srv.base_url, acc_reqs, conc, Path(tmp), client="httpx")
            )
            accuracy.append(
                (
                    conc,
                    len(acc_reqs),
                    statistics.median(full_ttft),
                    statistics.median(bare_ttft.values()),
                    lag,
                )
            )
        # TTFT error against stamped chunks: 300 ms to the first token, 20 ms per token after it.
        srv.configure(ttft_s=0.3, inter_token_s=0.02, stamp=True)
        err_reqs = make_requests(args.error_calls)
        asyncio.run(ttft_errors(srv, err_reqs[:64], args.concurrency, Path(tmp), "httpx"))  # warm-up
        error_rows = []
        for _round in range(args.rounds):
            for client in ("sdk", "httpx"):
                errs, cpu_call, lag, connects = asyncio.run(
                    ttft_errors(srv, err_reqs, args.concurrency, Path(tmp), client)
                )
                error_rows.append((client, errs, cpu_call, lag, connects))
            # The same calls from a bare loop over raw httpx (clock started before the request,
            # connection set-up included): what one event loop alone adds when 64 streams
            # deliver their tokens at the same instants.
            srv.reset()
            _w, cpu, by_prompt = asyncio.run(bare_httpx_loop(srv.base_url, err_reqs, args.concurrency))
            stamps = _stamps(srv)
            errs = [t - stamps[p] for p, t in by_prompt.items() if p in stamps]
            error_rows.append(("bare httpx loop", errs, cpu / len(err_reqs), {}, []))

    load_end = os.getloadavg()[0]
    bw, fw = statistics.median(bare_w), statistics.median(full_w)
    overhead = fw / bw - 1
    lbw, lbc = (statistics.median(v) for v in zip(*lean["bare"], strict=True))
    lfw, lfc = (statistics.median(v) for v in zip(*lean["full"], strict=True))
    lean_overhead = lfw / lbw - 1
    ideal = args.calls / args.concurrency * lat
    true_ttft = args.ttft_ms / 1000
    lines = [
        f"{args.calls} streamed calls, concurrency {args.concurrency}, server first-token delay {args.latency_ms:.0f} ms "
        f"(ideal wall {ideal:.2f} s), {args.rounds} alternating rounds, medians:",
        "",
        "| path | wall s | ratio vs bare | client CPU ms/call |",
        "| --- | ---: | ---: | ---: |",
        f"| bare asyncio loop over the openai SDK | {bw:.2f} | 1.00 | {statistics.median(bare_c) / args.calls * 1000:.2f} |",
        f"| full runner (journal, retries, timing, cost, progress) | {fw:.2f} | {fw / bw:.2f} | {statistics.median(full_c) / args.calls * 1000:.2f} |",
        f"| bare asyncio loop over raw httpx (every SSE event decoded, text joined) | {lbw:.2f} | 1.00 | {lbc / args.calls * 1000:.2f} |",
        f"| full runner, lean path (`client: httpx`, the default) | {lfw:.2f} | {lfw / lbw:.2f} | {lfc / args.calls * 1000:.2f} |",
        "",
        f"Runner overhead over the SDK: **{overhead:+.1%}** wall time (target <= +15%): "
        f"{'PASS' if overhead <= 0.15 else 'MISS'}. Over raw httpx (lean path): **{lean_overhead:+.1%}**: "
        f"{'PASS' if lean_overhead <= 0.15 else 'MISS'}.",
        "",
        f"TTFT accuracy of the default (lean httpx) path: the server delays the first token by {args.ttft_ms:.0f} ms; "
        "median TTFT recorded (target: within 10 ms; bare loop: raw httpx, clock from before the connect):",
        "",
        "| concurrency | calls | runner median ms | error ms | bare-loop median ms | loop lag p50 / p99 ms | verdict |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for conc, n, full_med, bare_med, lag in accuracy:
        err_ms = (full_med - true_ttft) * 1000
        lines.append(
            f"| {conc} | {n} | {full_med * 1000:.1f} | {err_ms:+.1f} | {bare_med * 1000:.1f} | "
            f"{lag.get('p50_ms', 0):.1f} / {lag.get('p99_ms', 0):.1f} | {'PASS' if abs(err_ms) <= 10 else 'MISS'} |"
        )
    lines += [
        "",
        "When the client's event loop is saturated (the SDK's CPU per call times the call rate exceeds one core), "
        "every timing taken on the loop is late by the loop lag, for the bare loop as much as for the runner; "
        "the run record reports the lag and warns above 10 ms at p99.",
    ]
    lines += [
        "",
        f"TTFT error, measured per call against the server's send-time stamps: {args.error_calls} streamed calls "
        f"per path and round, concurrency {args.concurrency}, server first token after 300 ms then 20 ms per "
        "token (16 tokens); error = recorded TTFT - (first chunk sent - request arrived). Targets p50 <= 5 ms, "
        "p99 <= 25 ms. Recorded TTFT counts from the request's send; connect = the call's wait before "
        "the send (each round opens its 64 connections at once), recorded apart as `connect_s`. The bare "
        "httpx loop makes the same calls with nothing but a semaphore (its clock includes the connect): "
        "the part of the error one event loop has anyway when 64 streams deliver at the same instants.",
        "",
        "| client path | round | calls | error p50 ms | error p90 ms | error p99 ms | max ms | connect p50 / p99 ms | client CPU ms/call | loop lag p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, (client, errs, cpu_call, lag, connects) in enumerate(error_rows):
        lag_p99 = f"{lag['p99_ms']:.1f}" if "p99_ms" in lag else "n/a"
        lines.append(
            f"| {client} | {i // 3 + 1} | {len(errs)} | {_pct(errs, 0.5) * 1000:.1f} | {_pct(errs, 0.9) * 1000:.1f} | "
            f"{_pct(errs, 0.99) * 1000:.1f} | {max(errs) * 1000:.1f} | {_ms_pair(connects)} | "
            f"{cpu_call * 1000:.2f} | {lag_p99} |"
        )
    lines += [
        "",
        f"Machine load (1-minute load average, all processes) at start / end: {load_start:.1f} / {load_end:.1f} "
        f"on {os.cpu_count()} cores. Above the core count, other processes take the client's CPU and every "
        "number above grows with the queue; compare paths within one run only.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("runner_overhead", body)


if __name__ == "__main__":
    main()
