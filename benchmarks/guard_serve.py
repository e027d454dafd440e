"""What the HTTP layer of ``rai guard serve`` adds over the same guard called in-process.

Both paths do the same work per request against the same fake OpenAI upstream (its own
process): input rails on the prompt, the upstream call, output rails on the answer.

* *in-process*: the benchmark process calls ``Guard.acheck_inputs`` -> aiohttp POST to the
  upstream -> ``Guard.acheck_outputs`` (one micro-batched guard shared by all clients),
  once with Python's default garbage collector and once with the proxy's serving tuning
  (``tune_gc_for_serving``), so the proxy's GC tuning is not counted as an HTTP-layer win.
* *proxy*: the benchmark process POSTs ``/v1/chat/completions`` to ``rai guard serve``
  running in its own process (uvicorn, one worker), which does the above (its upstream call
  through its own keep-alive client, ``guardrails/upstream.py``).

The application side is the same in both: the clients are aiohttp, and in-process they call
the upstream with that same client, so each path pays one application-side HTTP call per
request; what the proxy path adds is the proxy process (an HTTP server, JSON each way, its
upstream client). The clients run in the benchmark process in both paths, so their CPU is
charged alike.

C concurrent clients (64, and 1 for the unloaded cost) each send requests back to back
(closed loop), and 64 clients once more paced at a fixed total rate (``--paced-rate``,
below either path's capacity): the HTTP layer's cost when the CPU is not saturated.
Reported: latency p50/p99 per path, the added latency (proxy minus in-process; target
<= 3 ms at p50), requests/s and CPU per request summed over the client, upstream and
proxy processes. Rounds rotate the paths; medians over rounds.

The default policy is deterministic keyword rails, so the numbers are the HTTP layer's and
not a model's; ``--policy guardrails/default.yaml`` measures with the shipped models.

Run: ``python benchmarks/guard_serve.py [--requests 20] [--rounds 3] [--policy FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import aiohttp
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402
from rai_harness.guardrails import Guard  # noqa: E402
from rai_harness.guardrails.server import tune_gc_for_serving  # noqa: E402
from rai_harness.testing.server import FakeOpenAIServer, FaultConfig  # noqa: E402

KEYWORD_POLICY = """
name: bench-keyword
classifiers:
  tox: {backend: keyword, options: {toxic: [idiot, moron, stupid]}}
  attack: {backend: keyword, options: {injection: ["ignore all previous instructions"]}}
input:
  - {name: attack-input, classifier: attack, threshold: 0.5, action: block}
  - {name: toxic-input, classifier: tox, threshold: 0.5, action: flag}
output:
  - {name: toxic-output, classifier: tox, threshold: 0.5, action: block}
"""

PROMPT = "Write a haiku about autumn leaves and the first cold morning of the year."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def proxy_process(policy: Path, upstream: str) -> Iterator[tuple[str, int]]:
    """``rai guard serve`` in a child process; yields its base URL and pid once /healthz is 200."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rai_harness",
            "guard",
            "serve",
            "--policy",
            str(policy),
            "--upstream",
            upstream,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--max-concurrency",
            "256",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", trust_env=False).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def drive(
    clients: int, per_client: int, call: Callable[[], Awaitable[None]], rate: float | None = None
) -> tuple[list[float], float]:
    """Run ``clients`` loops of ``per_client`` calls; return latencies (s) and wall time.

    Closed loop by default (each client sends its next call when the last one answers); with
    ``rate`` (calls/s in all), each client sends on a fixed schedule, the clients staggered
    evenly, so the offered load stays at ``rate`` whatever the latency.
    """
    latencies: list[float] = []
    period = clients / rate if rate else 0.0  # seconds between one client's calls
    begin = time.perf_counter()

    async def loop(i: int) -> None:
        for k in range(per_client):
            if period:
                await asyncio.sleep(max(begin + (k + i / clients) * period - time.perf_counter(), 0.0))
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(loop(i) for i in range(clients)))
    return latencies, time.perf_counter() - begin


async def run_inprocess(
    guard: Guard, upstream: str, clients: int, per_client: int, rate: float | None = None
) -> tuple[list[float], float]:
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": PROMPT}]})
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as client:

        async def call() -> None:
            verdict = (await guard.acheck_inputs([PROMPT]))[0]
            assert not verdict.blocked
            async with client.post(upstream + "/chat/completions", data=body, headers=headers) as reply:
                assert reply.status == 200
                text = json.loads(await reply.read())["choices"][0]["message"]["content"]
            assert not (await guard.acheck_outputs([text]))[0].blocked

        await drive(min(clients, 4), 2, call)  # warm connections and batchers
        return await drive(clients, per_client, call, rate)


async def run_proxy(
    url: str, clients: int, per_client: int, rate: float | None = None
) -> tuple[list[float], float]:
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": PROMPT}]})
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as client:

        async def call() -> None:
            async with client.post(url + "/v1/chat/completions", data=body, headers=headers) as reply:
                assert reply.status == 200
                assert json.loads(await reply.read())["choices"][0]["finish_reason"] == "stop"

        await drive(min(clients, 4), 2, call)
        return await drive(clients, per_client, call, rate)


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process and its children have used (Linux /proc; 0 elsewhere)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_s(int(child)) for child in children)


def self_cpu_s() -> float:
    """CPU seconds of this process, every thread (the guard's micro-batchers included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def serving_gc(enabled: bool) -> Iterator[None]:
    """This process with the proxy's garbage-collector tuning, then as it was."""
    if not enabled:
        yield
        return
    before = gc.get_threshold()
    tune_gc_for_serving()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


PATHS = ("in-process", "in-process, serving GC", "proxy")


class Row(NamedTuple):
    """Medians over rounds of one path at one concurrency."""

    p50_ms: float
    p99_ms: float
    rps: float
    cpu_ms: float  # CPU per request, all three processes (client, upstream, proxy)
    proxy_cpu_ms: float  # the proxy process's share


Round = dict[str, Row]  # one round: every path measured back to back


class Setting(NamedTuple):
    """How the clients send: how many, and closed loop (``rate`` None) or paced."""

    clients: int
    rate: float | None = None

    @property
    def label(self) -> str:
        return f"{self.clients}" if self.rate is None else f"{self.clients} paced, {self.rate:g}/s"


def measure(
    setting: Setting,
    per_client: int,
    rounds: int,
    guard: Guard,
    upstream: FakeOpenAIServer,
    url: str,
    pid: int,
) -> list[Round]:
    """Every path ``rounds`` times, rotating which goes first."""
    clients, rate = setting
    out: list[Round] = []
    warm_up = min(clients, 4) * 2  # the requests each run sends before timing
    for round_ in range(rounds):
        order = PATHS[round_ % 3 :] + PATHS[: round_ % 3]
        measured: Round = {}
        for path in order:
            with serving_gc(path == "in-process, serving GC"):
                # Inside the tuning: its one full collection is set-up, not per-request work.
                before = (self_cpu_s(), cpu_s(upstream.pid), cpu_s(pid))
                if path == "proxy":
                    lat, wall = asyncio.run(run_proxy(url, clients, per_client, rate))
                else:
                    lat, wall = asyncio.run(
                        run_inprocess(guard, upstream.base_url, clients, per_client, rate)
                    )
                after = (self_cpu_s(), cpu_s(upstream.pid), cpu_s(pid))
            n = len(lat) + warm_up
            spent = [(a - b) / n * 1000.0 for a, b in zip(after, before, strict=True)]
            measured[path] = Row(pct(lat, 50), pct(lat, 99), len(lat) / wall, sum(spent), spent[2])
        out.append(measured)
    return out


def medians(rounds: list[Round]) -> dict[str, Row]:
    """Per path, the median of every field over ``rounds``."""
    return {
        path: Row(*(statistics.median(r[path][i] for r in rounds) for i in range(len(Row._fields))))
        for path in PATHS
    }


def added(rounds: list[Round], field: str, baseline: str = "in-process") -> float:
    """Median over rounds of proxy minus ``baseline`` in ``field``, paired within each round:
    the paths of one round ran seconds apart, under the same load."""
    return statistics.median(getattr(r["proxy"], field) - getattr(r[baseline], field) for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure everything this many times in a row; tables show medians over all of them "
        "(a shared machine's load drifts over minutes), verdicts list each repeat's added p50",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=200.0,
        help="requests/s of the paced 64-client setting (below what either path can serve)",
    )
    parser.add_argument("--policy", type=Path, default=None, help="policy file (default: keyword rails)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        policy = args.policy
        if policy is None:
            policy = Path(tmp) / "keyword.yaml"
            policy.write_text(KEYWORD_POLICY, encoding="utf-8")
        rows = []
        with (
            FakeOpenAIServer(
                FaultConfig(reply="Red leaves drift and fall. Frost on the window glass."), subprocess=True
            ) as upstream,
            Guard.from_policy(policy) as guard,
            proxy_process(policy, upstream.base_url) as (url, pid),
        ):
            settings = (Setting(1), Setting(64), Setting(64, args.paced_rate))
            repeats: dict[Setting, list[list[Round]]] = {setting: [] for setting in settings}
            for _ in range(args.repeat):
                for setting, runs in repeats.items():
                    per_client = args.requests * (4 if setting.clients == 1 else 1)
                    runs.append(measure(setting, per_client, args.rounds, guard, upstream, url, pid))
                    loads.append(os.getloadavg()[0])
                    print(f"{setting.label} client(s): {medians(runs[-1])}", flush=True)
            for setting, runs in repeats.items():
                pooled = [r for run in runs for r in run]
                each = [added(run, "p50_ms") for run in runs]
                rows.append((setting, args.requests * (4 if setting.clients == 1 else 1), pooled, each))

    lines = [
        f"Per request: input rails, upstream call to the fake OpenAI server (own process), output rails. "
        f"Policy: {'keyword rails (deterministic, microseconds)' if args.policy is None else args.policy}. "
        f"Proxy: `rai guard serve` in its own process (uvicorn with httptools and uvloop, 1 worker, its own "
        f"keep-alive upstream client); in-process: the same guard "
        f"and an aiohttp client in the benchmark process, with Python's default garbage collector and "
        f"with the proxy's serving tuning (`tune_gc_for_serving`: frozen heap, young collections every "
        f"10k allocations), so neither side gets a head start the other could take too; clients are "
        f"aiohttp too (the same application-side client in both paths: in-process it calls the upstream, "
        f"through the proxy it calls the proxy). {args.rounds} rounds rotating the paths, medians; "
        f"{args.repeat} repeat(s) of the whole measurement; table: medians over all rounds; added latency: "
        f"median over rounds of proxy minus in-process within each round (paired: same load). "
        f"CPU: per request, summed over "
        f"the client, upstream and proxy processes.",
        "",
        "| clients | requests | path | p50 ms | p99 ms | requests/s | CPU ms/request |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for setting, per_client, pooled, each in rows:
        clients = setting.clients
        med = medians(pooled)
        n = clients * per_client
        for path in PATHS:
            row = med[path]
            lines.append(
                f"| {setting.label} | {n} | {path} | {row.p50_ms:.2f} | {row.p99_ms:.2f} | {row.rps:.0f} "
                f"| {row.cpu_ms:.2f} |"
            )
        tuned_path = "in-process, serving GC"
        proxy, base, tuned = med["proxy"], med["in-process"], med[tuned_path]
        added50 = added(pooled, "p50_ms")
        extra_cpu = proxy.cpu_ms - tuned.cpu_ms
        spread = f" (each repeat: {', '.join(f'{x:+.1f}' for x in each)} ms)" if len(each) > 1 else ""
        verdicts.append(
            f"{setting.label} client(s): added latency p50 **{added50:+.2f} ms**{spread} over in-process (target "
            f"<= 3 ms: {'PASS' if added50 <= 3.0 else 'FAIL'}), p99 {added(pooled, 'p99_ms'):+.2f} ms; "
            f"over in-process with the same GC tuning p50 {added(pooled, 'p50_ms', tuned_path):+.2f} ms, p99 "
            f"{added(pooled, 'p99_ms', tuned_path):+.2f} ms; throughput {proxy.rps / base.rps:.2f}x of in-process "
            f"({proxy.rps / tuned.rps:.2f}x of tuned). The proxy process used {proxy.proxy_cpu_ms:.2f} ms "
            f"of CPU per request; the proxy path as a whole {extra_cpu:+.2f} ms more than the tuned "
            f"in-process path"
            + (
                f", which with {clients} clients sharing {cores} cores is "
                f"~{clients * extra_cpu / cores:.1f} ms of queueing per request once the CPU is saturated."
                if clients > 1 and setting.rate is None
                else "."
            )
        )
    lines += ["", *verdicts]
    lines.append(
        f"\nLoad average (1 min) of the machine: {' -> '.join(f'{x:.1f}' for x in loads)} (before, then "
        f"after each setting's measurement; the machine is shared: above ~{cores} the "
        f"numbers include waiting for a core)."
    )
    lines.append(
        f"\nThe {cores} cores are shared by the client, the proxy and the upstream (and other jobs). "
        "The 1- and 64-client rows are closed-loop: every client sends its next request when the last one answers, so at "
        "64 clients the CPU is saturated and latency is clients / throughput (Little's law): the added "
        "p50 there is queueing behind the proxy path's extra CPU per request (a second HTTP server and "
        "client, JSON each way), not a fixed hop cost. The 1-client row is the unloaded cost of the "
        "HTTP layer. The paced row sends the same 64 concurrent clients at a fixed total rate below "
        "either path's capacity: the cost of the HTTP layer when the CPU is not saturated. "
        "When other jobs load the machine, the proxy path loses further: its bottleneck "
        "(the single-threaded proxy) is one runnable process among many and gets its share of a core, "
        "while the in-process path's work sits in fewer processes."
    )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("guard_serve", body)


if __name__ == "__main__":
    main()
