"""What the HTTP layer of ``rai guard serve`` adds over the same guard called in-process.

Both paths do the same work per request against the same fake OpenAI upstream (its own
process): input rails on the prompt, the upstream call, output rails on the answer.

* *in-process*: the benchmark process calls ``Guard.acheck_inputs`` -> aiohttp POST to the
  upstream -> ``Guard.acheck_outputs`` (one micro-batched guard shared by all clients).
* *proxy*: the benchmark process POSTs ``/v1/chat/completions`` to ``rai guard serve``
  running in its own process (uvicorn, one worker), which does the above.

C concurrent clients (64, and 1 for the unloaded cost) each send requests back to back.
Reported: latency p50/p99 per path, the added latency (proxy minus in-process; target
<= 3 ms at p50) and requests/s. Rounds alternate the two paths; medians over rounds.

The default policy is deterministic keyword rails, so the numbers are the HTTP layer's and
not a model's; ``--policy guardrails/default.yaml`` measures with the shipped models.

Run: ``python benchmarks/guard_serve.py [--requests 20] [--rounds 3] [--policy FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402
from rai_harness.guardrails import Guard  # noqa: E402
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
    clients: int, per_client: int, call: Callable[[], Awaitable[None]]
) -> tuple[list[float], float]:
    """Run ``clients`` loops of ``per_client`` calls; return latencies (s) and wall time."""
    latencies: list[float] = []

    async def loop() -> None:
        for _ in range(per_client):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return latencies, time.perf_counter() - started


async def run_inprocess(
    guard: Guard, upstream: str, clients: int, per_client: int
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
        return await drive(clients, per_client, call)


async def run_proxy(url: str, clients: int, per_client: int) -> tuple[list[float], float]:
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": PROMPT}]})
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as client:

        async def call() -> None:
            async with client.post(url + "/v1/chat/completions", data=body, headers=headers) as reply:
                assert reply.status == 200
                assert json.loads(await reply.read())["choices"][0]["finish_reason"] == "stop"

        await drive(min(clients, 4), 2, call)
        return await drive(clients, per_client, call)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policy", type=Path, default=None, help="policy file (default: keyword rails)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

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
            for clients in (1, 64):
                per_client = args.requests * (4 if clients == 1 else 1)
                stats: dict[str, list[tuple[float, float, float]]] = {"in-process": [], "proxy": []}
                proxy_cpu: list[float] = []
                for round_ in range(args.rounds):
                    order = ("in-process", "proxy") if round_ % 2 == 0 else ("proxy", "in-process")
                    for path in order:
                        if path == "proxy":
                            cpu0 = cpu_s(pid)
                            lat, wall = asyncio.run(run_proxy(url, clients, per_client))
                            warm_up = min(clients, 4) * 2  # the requests run_proxy sends before timing
                            proxy_cpu.append((cpu_s(pid) - cpu0) / (len(lat) + warm_up) * 1000.0)
                        else:
                            lat, wall = asyncio.run(
                                run_inprocess(guard, upstream.base_url, clients, per_client)
                            )
                        stats[path].append((pct(lat, 50), pct(lat, 99), len(lat) / wall))
                med = {p: [statistics.median(v[i] for v in s) for i in range(3)] for p, s in stats.items()}
                rows.append((clients, per_client, med, statistics.median(proxy_cpu)))
                print(f"{clients} client(s): {med}", flush=True)

    lines = [
        f"Per request: input rails, upstream call to the fake OpenAI server (own process), output rails. "
        f"Policy: {'keyword rails (deterministic, microseconds)' if args.policy is None else args.policy}. "
        f"Proxy: `rai guard serve` in its own process (uvicorn, 1 worker); in-process: the same guard "
        f"and an aiohttp client in the benchmark process; clients are aiohttp too. {args.rounds} rounds alternating the paths; medians.",
        "",
        "| clients | requests | path | p50 ms | p99 ms | requests/s |",
        "| ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    verdicts = []
    for clients, per_client, med, cpu_ms in rows:
        n = clients * per_client
        for path in ("in-process", "proxy"):
            p50, p99, rps = med[path]
            lines.append(f"| {clients} | {n} | {path} | {p50:.2f} | {p99:.2f} | {rps:.0f} |")
        added50 = med["proxy"][0] - med["in-process"][0]
        added99 = med["proxy"][1] - med["in-process"][1]
        verdicts.append(
            f"{clients} client(s): added latency p50 **{added50:+.2f} ms** (target <= 3 ms: "
            f"{'PASS' if added50 <= 3.0 else 'FAIL'}), p99 {added99:+.2f} ms; throughput "
            f"{med['proxy'][2] / med['in-process'][2]:.2f}x of in-process; the proxy process used "
            f"{cpu_ms:.2f} ms of CPU per request."
        )
    lines += ["", *verdicts]
    lines.append(
        f"\nLoad average (1 min) of the machine: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"(the machine is shared; above ~2 the numbers include waiting for a core)."
    )
    lines.append(
        "\nThe machine has 2 cores shared by the client, the proxy and the upstream (and other "
        "jobs): at 64 clients the CPU is saturated, so the added p50 there is mostly queueing "
        "behind the proxy's per-request CPU (JSON, HTTP parsing twice), not a fixed hop cost; "
        "the 1-client row is the unloaded cost of the HTTP layer."
    )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("guard_serve", body)


if __name__ == "__main__":
    main()
