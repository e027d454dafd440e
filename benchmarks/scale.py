"""Calls past one process: the local engine vs Ray with 1 and 2 workers, side by side.

N calls (default 20,000) of one provider against the local fake server (a subprocess, so its
CPU is not charged to the client), streamed, with a known first-token delay and send-time
stamps, through the full ``rai run`` path (plan, journal, records) with ``runner.engine``
``local``, then ``ray`` with ``ray_workers`` 1 and 2. Reported per mode:

* wall time of the generate phase (from the workers being ready to the last record), and the
  whole run including Ray's start-up (actor processes importing the providers);
* CPU per call: the driver's (this process) plus the Ray workers' own (``time.process_time``
  in each actor); the Ray instance's daemons (GCS, raylet) are not counted;
* TTFT error per call: TTFT recorded - (first chunk sent - request arrived at the server).

Modes alternate over ``--rounds`` (local, ray 1, ray 2, local, ...) so machine noise hits all
of them; medians are reported. One Ray instance (loopback, no dashboard) serves every Ray round.

Run: .venv/bin/python benchmarks/scale.py [--calls 20000] [--concurrency 64] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section
from rai_harness.config import load_run_config
from rai_harness.record import read_samples
from rai_harness.run import execute_run, plan_run
from rai_harness.testing import FakeOpenAIServer, FaultConfig

KEY = "sk-bench-not-a-secret"


def write_config(
    folder: Path, base_url: str, calls: int, concurrency: int, engine: str, workers: int
) -> Path:
    prompts = folder / "prompts.jsonl"
    if not prompts.exists():
        with prompts.open("w") as fh:
            for i in range(calls):
                fh.write(json.dumps({"id": f"c{i:06d}", "prompt": f"scale benchmark prompt {i}"}) + "\n")
    config = {
        "name": "scale",
        "providers": [
            {
                "kind": "openai",
                "id": "fake",
                "model": "gpt-4o-mini",
                "base_url": base_url,
                "api_key_env": "RAI_BENCH_KEY",
                "concurrency": concurrency,
                "timeout_s": 60,
                "stream": True,
                "params": {"max_tokens": 16},
            }
        ],
        "prompts": {"path": str(prompts)},
        "runner": {"engine": engine, "ray_workers": workers},
    }
    path = folder / f"{engine}-{workers}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def one_run(
    srv: FakeOpenAIServer, folder: Path, args: argparse.Namespace, engine: str, workers: int
) -> dict[str, Any]:
    srv.reset()
    config = write_config(folder, srv.base_url, args.calls, args.concurrency, engine, workers)
    out = folder / f"out-{engine}-{workers}-{time.monotonic_ns()}"
    plan = plan_run(load_run_config(config), config_path=config, out_dir=out)
    marks: dict[str, float] = {}

    def on_start(_plan: Any, _done: int) -> None:
        marks["start"] = time.perf_counter()
        marks["cpu"] = time.process_time()

    def on_record(_record: Any) -> None:
        marks["last"] = time.perf_counter()

    t0 = time.perf_counter()
    record = asyncio.run(execute_run(plan, on_record=on_record, on_start=on_start))
    total = time.perf_counter() - t0
    cpu = time.process_time() - marks["cpu"]
    samples = read_samples(out / "samples.jsonl")
    if record.providers["fake"].failed:
        raise SystemExit(f"{record.providers['fake'].failed} calls failed; the fake server should not fail")
    stamped = {r["prompt"]: r for r in srv.stats()["requests"] if "first_sent" in r}
    errors = []
    for s in samples:
        r = stamped.get(s.messages[-1]["content"])
        if r is not None and s.ttft_s is not None:
            errors.append((s.ttft_s - (r["first_sent"] - r["t"])) * 1000)
    errors.sort()
    return {
        "gen_s": marks["last"] - marks["start"],
        "total_s": total,
        "cpu_ms_per_call": (cpu + record.timing_quality.get("worker_cpu_s", 0.0)) * 1000 / args.calls,
        "driver_cpu_ms_per_call": cpu * 1000 / args.calls,
        "ttft_err_p50_ms": errors[len(errors) // 2],
        "ttft_err_p99_ms": errors[min(len(errors) - 1, int(0.99 * len(errors)))],
        "stamped": len(errors),
        "lag_p99_ms": record.timing_quality["event_loop_lag_ms"].get("p99_ms", 0.0),
    }


def synthetic_outputs(n: int) -> list[str]:
    """Model-output-like texts of varied length, a share of them insulting (seeded, no files)."""
    import random

    rng = random.Random(7)
    calm = [
        "the weather is mild today",
        "here is a short summary",
        "thanks for asking",
        "a recipe needs eggs",
    ]
    rude = ["you are an idiot", "what a stupid question", "shut up, moron"]
    out = []
    for _ in range(n):
        words = [rng.choice(rude if rng.random() < 0.15 else calm) for _ in range(rng.randint(1, 12))]
        out.append(". ".join(words))
    return out


def score_modes(texts: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Wall seconds and texts/s of the bundled MiniLM toxicity head: local, Ray Data 1 and 2 actors."""
    from rai_harness.classifiers.base import ClassifierSpec
    from rai_harness.classifiers.pool import ClassifierPool
    from rai_harness.classifiers.ray_pool import RayDataPool

    spec = ClassifierSpec(backend="minilm-toxicity")
    local_clf = ClassifierPool().classifier(spec)
    local_clf.predict(texts[:64])  # load and warm up outside the timing
    walls: dict[str, list[float]] = {"local": [], "ray-data, 1 actor": [], "ray-data, 2 actors": []}
    reference: list[Any] = []
    max_diff = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        reference = local_clf.predict(texts)
        walls["local"].append(time.perf_counter() - t0)
        for name, actors in (("ray-data, 1 actor", 1), ("ray-data, 2 actors", 2)):
            t0 = time.perf_counter()
            remote = (
                RayDataPool(actors=actors).classifier(spec).predict(texts)
            )  # includes actor start-up and load
            walls[name].append(time.perf_counter() - t0)
            max_diff = max(
                max_diff,
                max(
                    abs(a.scores[k] - b.scores[k])
                    for a, b in zip(reference, remote, strict=True)
                    for k in a.scores
                ),
            )
    return {
        name: {
            "wall_s": statistics.median(w),
            "texts_per_s": len(texts) / statistics.median(w),
            "max_diff": max_diff,
        }
        for name, w in walls.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--texts", type=int, default=50_000, help="synthetic outputs to score (0: skip scoring)")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args()
    os.environ["RAI_BENCH_KEY"] = KEY

    from rai_harness.run.ray_engine import import_ray

    ray = import_ray(loopback=True)
    ray.init(
        address="local",
        num_cpus=os.cpu_count() or 2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    modes = [("local", 1), ("ray", 1), ("ray", 2)]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {m: [] for m in modes}
    load_start = os.getloadavg()[0]
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            FakeOpenAIServer(
                FaultConfig(ttft_s=args.ttft_ms / 1000, inter_token_s=0.002, stamp=True), subprocess=True
            ) as srv,
        ):
            for _ in range(args.rounds):
                for engine, workers in modes:
                    res = one_run(srv, Path(tmp), args, engine, workers)
                    results[(engine, workers)].append(res)
                    print(engine, workers, {k: round(v, 2) for k, v in res.items()}, flush=True)
        scoring = score_modes(synthetic_outputs(args.texts), args.rounds) if args.texts else {}
    finally:
        ray.shutdown()
    load_end = os.getloadavg()[0]

    def med(mode: tuple[str, int], key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    base = med(("local", 1), "gen_s")
    rows = []
    for mode in modes:
        name = "local" if mode[0] == "local" else f"ray, {mode[1]} worker{'s' if mode[1] > 1 else ''}"
        rows.append(
            f"| {name} | {med(mode, 'gen_s'):.1f} | {args.calls / med(mode, 'gen_s'):.0f} | {base / med(mode, 'gen_s'):.2f}x "
            f"| {med(mode, 'total_s'):.1f} | {med(mode, 'cpu_ms_per_call'):.2f} | {med(mode, 'driver_cpu_ms_per_call'):.2f} "
            f"| {med(mode, 'ttft_err_p50_ms'):.1f} / {med(mode, 'ttft_err_p99_ms'):.1f} | {med(mode, 'lag_p99_ms'):.1f} |"
        )
    body = (
        f"{args.calls} streamed calls per mode against the fake server (subprocess; {args.ttft_ms:g} ms to the "
        f"first token, 2 ms per token after it), provider concurrency {args.concurrency} (split among the Ray "
        f"workers), full `rai run` path (journal on the driver). {args.rounds} round(s), modes alternating; "
        f"medians. Load average {load_start:.1f} at start, {load_end:.1f} at end (other jobs share this machine).\n\n"
        "| engine | generate s | calls/s | vs local | run s (with start-up) | CPU ms/call (all) | driver CPU ms/call "
        "| TTFT error p50 / p99 ms | loop lag p99 ms |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n\n"
        "CPU (all) = the driver process plus the Ray workers' own CPU for their calls; Ray's daemons (GCS, "
        "raylet, object store) are not counted. Loop lag is the driver's for local and the workers' for Ray."
    )
    if scoring:
        local_wall = scoring["local"]["wall_s"]
        body += (
            f"\n\nScoring {args.texts} synthetic outputs (1-12 short sentences, 15% insulting) with the bundled "
            "MiniLM toxicity head: local (this process, model loaded and warmed up beforehand) vs Ray Data "
            "(`RayDataPool`; the time includes starting the actors and loading the model in each).\n\n"
            "| scoring | wall s | texts/s | vs local |\n| --- | ---: | ---: | ---: |\n"
            + "\n".join(
                f"| {name} | {r['wall_s']:.1f} | {r['texts_per_s']:.0f} | {local_wall / r['wall_s']:.2f}x |"
                for name, r in scoring.items()
            )
            + f"\n\nLargest absolute score difference, Ray Data vs local: {scoring['local']['max_diff']:.1e}."
        )
    print(body)
    if not args.no_write:
        write_section("scale", body)


if __name__ == "__main__":
    main()
