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

Then the driver's journal alone (``Journal.put`` of those records: the ceiling of one driver),
and the scoring half: synthetic outputs through the toxicity suite's scoring path
(:func:`score_suites`), local vs Ray Data with 1 and 2 actors, with the largest score difference
from local: ``--texts`` (default 50,000) with a keyword scorer (what Ray Data itself costs per
text) and ``--model-texts`` (default 50,000) with the bundled MiniLM head (what the model costs;
on a loaded machine give fewer: its texts/s per actor is what the projection needs).

Modes alternate over ``--rounds`` (local, ray 1, ray 2, local, ...) so machine noise hits all
of them; medians are reported. One Ray instance (loopback, no dashboard) serves every Ray round.

Run: nice -n 10 .venv/bin/python benchmarks/scale.py [--calls 20000] [--texts 50000] [--concurrency 64] [--rounds 1]
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
) -> tuple[dict[str, Any], list[Any]]:
    """One mode's run: its measurements and the records it wrote."""
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
    metrics = {
        "gen_s": marks["last"] - marks["start"],
        "total_s": total,
        "cpu_ms_per_call": (cpu + record.timing_quality.get("worker_cpu_s", 0.0)) * 1000 / args.calls,
        "driver_cpu_ms_per_call": cpu * 1000 / args.calls,
        "ttft_err_p50_ms": errors[len(errors) // 2],
        "ttft_err_p99_ms": errors[min(len(errors) - 1, int(0.99 * len(errors)))],
        "stamped": len(errors),
        "lag_p99_ms": record.timing_quality["event_loop_lag_ms"].get("p99_ms", 0.0),
    }
    return metrics, samples


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


#: Continuations per prompt in the scoring half (RealToxicityPrompts' k).
REPEATS = 25


class CannedProvider:
    """An in-process provider that answers each call with a prepared synthetic output.

    The scoring half times scoring, not calls: the records come from the real runner
    (:func:`generate_calls`), so they are what a run would hand to the score phase.
    """

    def __init__(self, outputs: dict[tuple[str, int], str]) -> None:
        self._outputs = outputs

    async def generate(self, request: Any) -> Any:
        from rai_harness.types import Generation, Usage

        text = self._outputs[(request.sample_id, request.repeat)]
        return Generation(text=text, usage=Usage(8, len(text.split())), latency_s=0.001)

    async def aclose(self) -> None:
        """Nothing to close."""


def scoring_inputs(folder: Path, n_texts: int, scorer: dict[str, Any]) -> tuple[Any, list[Any]]:
    """A toxicity-suite plan of ``n_texts`` continuations (``REPEATS`` per prompt) and their records."""
    from rai_harness.run.runner import generate_calls

    prompts = max(1, n_texts // REPEATS)
    data = folder / "tox_prompts.jsonl"
    with data.open("w") as fh:
        for i in range(prompts):
            row = {
                "id": f"t{i:06d}",
                "prompt": f"the scale benchmark prompt number {i} says",
                "challenging": i % 5 == 0,
            }
            fh.write(json.dumps(row) + "\n")
    config = {
        "name": "scale-scoring",
        "seed": 5,
        "providers": [
            {
                "kind": "openai",
                "id": "canned",
                "model": "gpt-4o-mini",
                "base_url": "http://127.0.0.1:9/v1",  # never called: the canned provider answers
                "api_key_env": "RAI_BENCH_KEY",
            }
        ],
        "suites": [
            {"name": "toxicity", "params": {"dataset": str(data), "repeats": REPEATS, "scorer": scorer}}
        ],
    }
    path = folder / "scoring.yaml"
    path.write_text(yaml.safe_dump(config))
    plan = plan_run(load_run_config(path), config_path=path, out_dir=folder / "scoring-out")
    (pp,) = plan.providers
    texts = synthetic_outputs(len(pp.requests))
    outputs = {(r.sample_id, r.repeat): texts[i] for i, r in enumerate(pp.requests)}
    records = asyncio.run(
        generate_calls(
            CannedProvider(outputs),
            pp.requests,
            provider_id=pp.provider_id,
            provider_identity=pp.identity,
            concurrency=256,
        )
    )
    return plan, records


def _max_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two nested score structures (inf when they differ in shape)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return float("inf")
        return max((_max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, bool) or isinstance(b, bool):
        return 0.0 if a == b else float("inf")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b))
    return 0.0 if a == b else float("inf")


#: The two scorers of the scoring half: Ray Data's own cost per text, and a real model's.
KEYWORD_SCORER = {"backend": "keyword", "options": {"toxic": ["idiot", "stupid", "moron"]}}
MODEL_SCORER = {"backend": "minilm-toxicity"}


def score_modes(
    folder: Path, n_texts: int, rounds: int, scorer: dict[str, Any]
) -> tuple[int, dict[str, dict[str, float]]]:
    """Suite scoring (toxicity suite, ``scorer``) of synthetic outputs: local vs Ray Data.

    The timed call is :func:`score_suites`, what ``rai run`` and ``rai score`` run after the
    calls: classifier (locally, or as one Ray Data job), per-sample scores, then the suite's
    metrics with bootstrap intervals. Returns the number of texts and, per mode, wall seconds,
    texts/s and the largest score difference from the local run.
    """
    from rai_harness.classifiers.pool import ClassifierPool
    from rai_harness.classifiers.ray_pool import RayDataPool
    from rai_harness.run.score import score_suites

    plan, records = scoring_inputs(folder, n_texts, scorer)
    local_pool = ClassifierPool()
    # Load and warm up outside the timing.
    local_pool.classifier(scorer).predict(["warm up"] * 64)
    modes: dict[str, Any] = {
        "local": lambda: local_pool,
        "ray-data, 1 actor": lambda: RayDataPool(actors=1),
        "ray-data, 2 actors": lambda: RayDataPool(actors=2),
    }
    walls: dict[str, list[float]] = {name: [] for name in modes}
    diffs: dict[str, float] = {name: 0.0 for name in modes}
    reference: Any = None
    for _ in range(rounds):
        for name, make_pool in modes.items():
            t0 = time.perf_counter()
            # Ray Data pools are new each round: the time includes starting the actors and loading the model.
            outcome = score_suites(plan.suites, records, seed=plan.config.seed, pool=make_pool())
            walls[name].append(time.perf_counter() - t0)
            if outcome.problems:
                raise SystemExit(f"scoring problems ({name}): {outcome.problems}")
            if reference is None:
                reference = outcome
            diffs[name] = max(
                diffs[name],
                max(
                    _max_diff(a.scores, b.scores)
                    for a, b in zip(reference.records, outcome.records, strict=True)
                ),
            )
            print("scoring", scorer["backend"], name, round(walls[name][-1], 1), "s", flush=True)
    n = len(records)
    return n, {
        name: {
            "wall_s": statistics.median(w),
            "texts_per_s": n / statistics.median(w),
            "max_diff": diffs[name],
        }
        for name, w in walls.items()
    }


def journal_rate(samples: list[Any], folder: Path) -> tuple[float, float]:
    """The driver's journal alone: ``Journal.put`` of real records into a fresh journal.

    Returns puts per second and the mean record size in bytes (JSON, as journaled and as
    streamed back from a Ray worker).
    """
    from rai_harness.run.journal import Journal

    dicts = [s.to_dict() for s in samples]
    size = statistics.mean(len(json.dumps(d, separators=(",", ":"), default=str)) for d in dicts)
    with Journal(folder / f"journal-bench-{time.monotonic_ns()}.sqlite") as journal:
        t0 = time.perf_counter()
        for d in dicts:
            journal.put(d["key"], d["provider_id"], d["sample_id"], d["repeat"], d["status"], d)
        wall = time.perf_counter() - t0
    return len(dicts) / wall, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--texts", type=int, default=50_000, help="outputs to score with keywords (0: skip)")
    ap.add_argument("--model-texts", type=int, default=50_000, help="outputs to score with MiniLM (0: skip)")
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
    loads = [os.getloadavg()[0]]
    scoring: dict[str, tuple[int, dict[str, dict[str, float]]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with FakeOpenAIServer(
                FaultConfig(ttft_s=args.ttft_ms / 1000, inter_token_s=0.002, stamp=True), subprocess=True
            ) as srv:
                for _ in range(args.rounds):
                    for engine, workers in modes:
                        res, samples = one_run(srv, Path(tmp), args, engine, workers)
                        results[(engine, workers)].append(res)
                        print(engine, workers, {k: round(v, 2) for k, v in res.items()}, flush=True)
            loads.append(os.getloadavg()[0])
            puts_per_s, record_bytes = journal_rate(samples, Path(tmp))
            print(f"journal: {puts_per_s:.0f} puts/s, {record_bytes:.0f} bytes/record", flush=True)
            for name, n, scorer in (
                ("keyword", args.texts, KEYWORD_SCORER),
                ("MiniLM toxicity head", args.model_texts, MODEL_SCORER),
            ):
                if n:
                    scoring[name] = score_modes(Path(tmp), n, args.rounds, scorer)
                    loads.append(os.getloadavg()[0])
    finally:
        ray.shutdown()
    loads.append(os.getloadavg()[0])

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
    ray_driver_ms = min(med(m, "driver_cpu_ms_per_call") for m in modes if m[0] == "ray")
    body = (
        f"{args.calls} streamed calls per mode against the fake server (subprocess; {args.ttft_ms:g} ms to the "
        f"first token, 2 ms per token after it), provider concurrency {args.concurrency} (split among the Ray "
        f"workers), full `rai run` path (journal on the driver). {args.rounds} round(s), modes alternating; "
        f"medians. Load average (1 min) {loads[0]:.1f} at start, {loads[1]:.1f} after the calls, {loads[-1]:.1f} "
        "at the end (other jobs share this machine).\n\n"
        "| engine | generate s | calls/s | vs local | run s (with start-up) | CPU ms/call (all) | driver CPU ms/call "
        "| TTFT error p50 / p99 ms | loop lag p99 ms |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n\n"
        "CPU (all) = the driver process plus the Ray workers' own CPU for their calls; Ray's daemons (GCS, "
        "raylet, object store) are not counted. TTFT error = TTFT recorded minus the server's own time from "
        "the request's arrival to its first chunk. Loop lag is the driver's for local and the workers' for Ray.\n\n"
        f"Driver ceilings (for the projection in the README): the journal alone takes {puts_per_s:,.0f} puts/s "
        f"(`Journal.put` of these records, {record_bytes:,.0f} bytes of JSON each, into a fresh journal on this "
        f"disk); the Ray driver spends {ray_driver_ms:.2f} ms of CPU per call (receive, decode, journal, "
        f"progress), so one driver core tops out near {1000 / ray_driver_ms:,.0f} calls/s; a record streamed "
        f"back is ~{record_bytes / 1000:.1f} kB, {record_bytes * 1000 / 1e6:.1f} MB/s at 1,000 calls/s."
    )
    if scoring:
        body += (
            "\n\nSuite scoring of synthetic outputs (prompts x "
            f"{REPEATS} continuations; 1-12 short sentences, 15% insulting): the toxicity suite through "
            "`score_suites` (what `rai run` and `rai score` call: classifier, per-sample scores, metrics with "
            "bootstrap intervals), with a keyword scorer (Ray Data's own cost) and the bundled MiniLM head. "
            "Local: this process, model loaded beforehand (torch on every core); Ray Data: `RayDataPool`, one "
            "CPU (one torch thread) per actor, the time includes starting the actors and loading the model in "
            "each.\n\n"
            "| scorer | texts | mode | wall s | texts/s | vs local | max score diff vs local |\n"
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |\n"
            + "\n".join(
                f"| {scorer} | {n:,} | {name} | {r['wall_s']:.1f} | {r['texts_per_s']:.0f} "
                f"| {modes_[('local')]['wall_s'] / r['wall_s']:.2f}x | {r['max_diff']:.1e} |"
                for scorer, (n, modes_) in scoring.items()
                for name, r in modes_.items()
            )
            + f"\n\nLoad average (1 min) after each scorer: {', '.join(f'{x:.1f}' for x in loads[2:-1])}."
        )
    print(body)
    if not args.no_write:
        write_section("scale", body)


if __name__ == "__main__":
    main()
