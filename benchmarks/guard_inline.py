"""Inline guard cost: micro-batching under concurrency, and the latency a policy adds.

1. **Micro-batched vs unbatched.** 64 concurrent callers each score one short text, all different.
   *Unbatched*: every caller runs the classifier alone (``predict([text])``).
   *Micro-batched*: every caller goes through one :class:`MicroBatcher` (2 ms window, up to
   64 texts), which merges concurrent calls into shared forward passes. Measured with
   threads (``predict``) and with asyncio tasks through the guard (``acheck_input``).
   Reported per encoder runtime, side by side and interleaved round by round: texts/s
   unbatched and micro-batched, their ratio (target >= 4x with the default runtime) and
   the p50 of one call. Runtimes: fp32 ONNX Runtime (the default when installed), fp32
   torch and the opt-in int8 ONNX Runtime graph. The unbatched path gains most from ONNX
   Runtime (per-operator overhead dominates one short text, arithmetic dominates a batch,
   and the fp32 runtimes do the same arithmetic), so its ratio is lower; int8 cuts the
   arithmetic of both paths.
2. **Added latency of the default policy** (``guardrails/default.yaml``) for one short
   prompt, one caller at a time on CPU: p50/p99 of ``check_input`` and ``check_output``.
3. **Input stage next to a bare forward pass.** In the same process, interleaved call by
   call: the default input stage (``check_input``) with the toxicity encoder on ONNX Runtime
   (the default when ``onnxruntime`` is installed) and on torch, each of its classifiers
   alone, a bare fp32 torch forward pass of the same encoder (tokenise + ``model(**batch)``
   under ``torch.inference_mode``, nothing else) and the bare ONNX Runtime forwards of it,
   so the guard's overhead over the model it runs is read off one table whatever the
   machine's load (target: input p50 <= 10 ms).

The classifier is the bundled ``minilm-toxicity`` when it loads. Without it, a stand-in of
the same cost is used and the report says so: the bundled MiniLM encoder
(``backend: embedding``) under a fixed linear head, i.e. the same forward pass as the
toxicity head, with meaningless scores.

Run: ``python benchmarks/guard_inline.py [--rounds 5] [--latency-calls 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402
from rai_harness.classifiers.base import ClassifierSpec, LabelScores  # noqa: E402
from rai_harness.classifiers.microbatch import MicroBatcher  # noqa: E402
from rai_harness.classifiers.pool import ClassifierPool  # noqa: E402
from rai_harness.errors import ConfigError  # noqa: E402
from rai_harness.guardrails import Guard, Rail, load_policy  # noqa: E402

CALLERS = 64
_QUESTIONS = [
    "How do I reset my router?",
    "Write a haiku about autumn leaves.",
    "What is the capital of Australia?",
    "Summarise the plot of Hamlet in two sentences.",
    "Can you recommend a good book on statistics?",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "Give me three tips for a job interview.",
]
_ENDINGS = [
    "",
    " Please be brief.",
    " Explain it simply.",
    " Thanks!",
    " I'm a beginner.",
    " Answer in one line.",
    " Keep it short, please.",
    " Use an example.",
]
#: One distinct short prompt per caller: the classifiers score identical texts of a batch once,
#: so callers sharing a few prompts would measure that deduplication, not batching (8 prompts
#: over 64 callers read as an 8x ratio).
PROMPTS = [question + ending for ending in _ENDINGS for question in _QUESTIONS]
assert len(set(PROMPTS)) == CALLERS


class EncoderStandIn:
    """MiniLM encoder + fixed linear head: the forward cost of minilm-toxicity, fake scores."""

    name = "minilm-encoder-standin"
    labels = ("toxic",)
    produces_spans = False

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.head = np.random.default_rng(0).normal(size=embedder.dim) / np.sqrt(embedder.dim)

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        vectors = self.embedder.embed(list(texts))
        scores = 1.0 / (1.0 + np.exp(-(vectors @ self.head)))
        return [LabelScores(scores={"toxic": float(s)}) for s in scores]

    def info(self) -> dict[str, Any]:
        return {"name": self.name}


class BenchPool:
    """The real pool, with the stand-in in place of minilm-toxicity when that cannot load.

    Args:
        runtime: Forced on every ``minilm-toxicity`` spec (``options.runtime``); ``None``
            keeps the spec's own (``auto``: ONNX Runtime when installed).
        share: Another bench pool whose loaded classifiers this one reuses (one presidio).
    """

    def __init__(self, runtime: str | None = None, share: BenchPool | None = None) -> None:
        self.pool = share.pool if share is not None else ClassifierPool()
        self.notes: list[str] = []
        self.runtime = runtime

    def classifier(self, spec: ClassifierSpec) -> Any:
        if spec.backend != "minilm-toxicity":
            return self.pool.classifier(spec)
        if self.runtime is not None:
            spec = spec.model_copy(update={"options": {**spec.options, "runtime": self.runtime}})
        try:
            return self.pool.classifier(spec)
        except ConfigError as exc:
            note = f"minilm-toxicity unavailable ({exc.detail}); used the MiniLM-encoder stand-in"
            if note not in self.notes:
                self.notes.append(note)
                logging.warning(note)
            return EncoderStandIn(self.pool.embedder(ClassifierSpec(backend="embedding")))


def run_threads(call: Callable[[str], Any], n: int) -> float:
    """Start ``n`` threads at once, each making one call; return the wall time in seconds."""
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            call(PROMPTS[i % len(PROMPTS)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


async def run_tasks(guard: Guard, n: int) -> float:
    started = time.perf_counter()
    results = await asyncio.gather(*(guard.acheck_input(PROMPTS[i % len(PROMPTS)]) for i in range(n)))
    elapsed = time.perf_counter() - started
    errors = [r for res in results for r in res.rails if r.error]
    if errors:
        raise RuntimeError(f"guard errors during the benchmark: {errors[0].error}")
    return elapsed


def throughput(walls: list[float], n: int) -> float:
    """Texts per second from the median round."""
    return n / statistics.median(walls)


class BatchingBench:
    """The micro-batched vs unbatched modes of one classifier, one round at a time.

    Args:
        classifier: The toxicity classifier (one encoder runtime).
    """

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self.texts = [PROMPTS[i % len(PROMPTS)] for i in range(CALLERS)]
        self.walls: dict[str, list[float]] = {}
        self.single_ms: list[float] = []
        #: Process CPU seconds of the sequential modes (all threads): the work per text, which
        #: other processes on a loaded machine inflate far less than wall time.
        self.cpu: dict[str, list[float]] = {}
        self.batched_texts = self.batched_calls = 0
        self._stack = contextlib.ExitStack()
        self.batcher = self._stack.enter_context(MicroBatcher(classifier, max_wait_ms=2.0, max_batch_size=64))
        rail = Rail("toxic", classifier, threshold=0.5, action="block", timeout_ms=60_000)
        self.guard_off = self._stack.enter_context(Guard(input_rails=[rail], micro_batch=False))
        self.guard_on = self._stack.enter_context(Guard(input_rails=[rail], micro_batch=True))
        classifier.predict(PROMPTS)  # warm-up: lazy init, allocator, kernels
        run_threads(self.batcher.predict_one, CALLERS)  # warm-up of every path
        asyncio.run(run_tasks(self.guard_off, CALLERS))
        asyncio.run(run_tasks(self.guard_on, CALLERS))

    def close(self) -> None:
        self._stack.close()

    def _record(self, mode: str, wall: float) -> None:
        self.walls.setdefault(mode, []).append(wall)

    def _one_by_one(self) -> float:
        started, cpu = time.perf_counter(), time.process_time()
        for text in self.texts:
            call = time.perf_counter()
            self.classifier.predict([text])
            self.single_ms.append((time.perf_counter() - call) * 1000.0)
        self.cpu.setdefault("single", []).append(time.process_time() - cpu)
        return time.perf_counter() - started

    def _one_batch(self) -> float:
        started, cpu = time.perf_counter(), time.process_time()
        self.classifier.predict(self.texts)
        self.cpu.setdefault("batch", []).append(time.process_time() - cpu)
        return time.perf_counter() - started

    def round(self) -> None:
        """One round of every mode, batched and unbatched back to back."""
        # No concurrency at all: the most batching can buy on this CPU for these texts.
        self._record("sequential_single", self._one_by_one())
        self._record("sequential_batch", self._one_batch())
        self._record("threads_unbatched", run_threads(lambda t: self.classifier.predict([t]), CALLERS))
        before = (self.batcher.stats.batches, self.batcher.stats.texts)
        self._record("threads_batched", run_threads(self.batcher.predict_one, CALLERS))
        self.batched_calls += self.batcher.stats.batches - before[0]
        self.batched_texts += self.batcher.stats.texts - before[1]
        self._record("async_guard_unbatched", asyncio.run(run_tasks(self.guard_off, CALLERS)))
        self._record("async_guard_batched", asyncio.run(run_tasks(self.guard_on, CALLERS)))

    def summary(self) -> dict[str, float]:
        """Texts/s of each mode (median round), ratios (median of the per-round ratios), p50 of one call."""
        out = {mode: throughput(w, CALLERS) for mode, w in self.walls.items()}
        for name, (slow, fast) in {
            "ratio_ceiling": ("sequential_single", "sequential_batch"),
            "ratio_threads": ("threads_unbatched", "threads_batched"),
            "ratio_async": ("async_guard_unbatched", "async_guard_batched"),
        }.items():
            out[name] = statistics.median(
                a / b for a, b in zip(self.walls[slow], self.walls[fast], strict=True)
            )
        out["threads_mean_batch"] = self.batched_texts / max(self.batched_calls, 1)
        out["single_p50_ms"] = percentile(self.single_ms, 50)
        for mode, seconds in self.cpu.items():
            out[f"cpu_ms_per_text_{mode}"] = statistics.median(seconds) * 1000.0 / CALLERS
        out["ratio_cpu"] = out["cpu_ms_per_text_single"] / out["cpu_ms_per_text_batch"]
        return out


def bench_batching(classifiers: dict[str, Any], rounds: int) -> dict[str, dict[str, float]]:
    """:class:`BatchingBench` of every classifier, interleaved round by round.

    Runtimes and modes alternate within each round, so load drifting on a shared machine
    hits every runtime and both batched and unbatched alike.
    """
    benches = {name: BatchingBench(clf) for name, clf in classifiers.items()}
    try:
        for _ in range(rounds):
            for bench in benches.values():
                bench.round()
    finally:
        for bench in benches.values():
            bench.close()
    return {name: bench.summary() for name, bench in benches.items()}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_latency(guard: Guard, calls: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for stage, check in (("input", guard.check_input), ("output", guard.check_output)):
        for text in PROMPTS:  # warm-up
            check(text)
        samples = []
        for i in range(calls):
            started = time.perf_counter()
            check(PROMPTS[i % len(PROMPTS)])
            samples.append((time.perf_counter() - started) * 1000.0)
        out[stage] = {
            "p50": percentile(samples, 50),
            "p99": percentile(samples, 99),
            "mean": statistics.fmean(samples),
        }
    return out


def _encoder(classifier: Any) -> tuple[Any, Any]:
    """(tokenizer, model) of the encoder behind the toxicity classifier or its stand-in."""
    embedder = getattr(classifier, "embedder", None)
    if embedder is None:
        raise RuntimeError(f"cannot find the encoder of {classifier!r}")
    return embedder.tokenizer, getattr(classifier, "encoder_model", embedder.model)


TORCH_FP32 = "torch fp32"
ORT_FP32 = "ONNX Runtime fp32 (default)"
ORT_INT8 = "ONNX Runtime int8 (opt-in `runtime: onnx-int8`)"
STAGE_ORT = "input stage (check_input), ONNX Runtime encoder"
STAGE_TORCH = "input stage (check_input), torch encoder"
BARE_TORCH = "bare fp32 torch encoder forward"


def bench_stage_vs_forward(
    guards: dict[str, Guard], toxicity: dict[str, Any], pii: Any, calls: int
) -> dict[str, dict[str, float]]:
    """p50/p90 of the input stage per encoder runtime, each classifier alone and bare forwards.

    Args:
        guards: The default policy's guard per row name (ONNX Runtime and torch encoder).
        toxicity: The toxicity classifier per runtime name (:data:`TORCH_FP32` must be there).
        pii: The presidio classifier.
        calls: Calls per path, interleaved call by call.
    """
    import torch

    tokenizer, model = _encoder(toxicity[TORCH_FP32])

    def forward(text: str) -> None:
        with torch.inference_mode():
            model(**tokenizer([text], return_tensors="pt", truncation=True, max_length=256))

    paths: dict[str, Callable[[str], Any]] = {name: guard.check_input for name, guard in guards.items()}
    for runtime, clf in toxicity.items():
        paths[f"toxicity classifier alone ({runtime})"] = lambda t, clf=clf: clf.predict([t])
    paths["presidio alone"] = lambda t: pii.predict([t])
    paths[BARE_TORCH] = forward
    for runtime, clf in toxicity.items():
        ort_encoder = getattr(clf, "ort_encoder", None)
        if ort_encoder is None:
            continue

        def ort_forward(text: str, ort_encoder: Any = ort_encoder) -> None:
            ort_encoder(dict(tokenizer([text], return_tensors="pt", truncation=True, max_length=256)))

        paths[f"bare encoder forward, {runtime}"] = ort_forward
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for text in PROMPTS:  # warm-up
        for call in paths.values():
            call(text)
    for i in range(calls):
        text = PROMPTS[i % len(PROMPTS)]
        for name, call in paths.items():
            started = time.perf_counter()
            call(text)
            samples[name].append((time.perf_counter() - started) * 1000.0)
    return {name: {"p50": percentile(v, 50), "p90": percentile(v, 90)} for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="Rounds of 64 concurrent calls per mode.")
    parser.add_argument("--latency-calls", type=int, default=200, help="Sequential calls per stage.")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's own)."
    )
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    load_before = os.getloadavg()[0]
    pool = BenchPool()
    toxicity = pool.classifier(ClassifierSpec(backend="minilm-toxicity"))
    ort_info = (getattr(toxicity, "info", dict)().get("runtime") or {}) if not pool.notes else {}
    on_ort = ort_info.get("runtime") == "onnxruntime"
    if not on_ort and not pool.notes:
        pool.notes.append(
            "onnxruntime is not installed (or its graph was refused), so the toxicity encoder runs on "
            "torch; `pip install 'rai-harness[onnx]'` for the fast path"
        )

    policy = load_policy(ROOT / "guardrails" / "default.yaml")
    torch_pool = BenchPool(runtime="torch", share=pool)
    # Every encoder runtime, so a ratio is read next to the absolute rates it is made of: a
    # faster unbatched path lowers the ratio without making the micro-batched one slower.
    default_name = ORT_FP32 if on_ort else TORCH_FP32
    by_runtime = {ORT_FP32: toxicity} if on_ort else {}
    by_runtime[TORCH_FP32] = torch_pool.classifier(ClassifierSpec(backend="minilm-toxicity"))
    if on_ort:
        try:  # not through BenchPool: a refused int8 graph must not be measured as the stand-in
            by_runtime[ORT_INT8] = pool.pool.classifier(
                ClassifierSpec(backend="minilm-toxicity", options={"runtime": "onnx-int8"})
            )
        except ConfigError as exc:
            pool.notes.append(f"the int8 runtime was not measured: {exc.detail}")
    all_rates = bench_batching(by_runtime, args.rounds)
    rates = all_rates[default_name]
    with (
        Guard.from_policy(policy, pool=pool) as guard,
        Guard.from_policy(policy, pool=torch_pool) as torch_guard,
    ):
        latency = bench_latency(guard, args.latency_calls)
        pii = pool.classifier(policy.classifiers["pii"])
        guards = {STAGE_ORT: guard, STAGE_TORCH: torch_guard} if on_ort else {STAGE_TORCH: guard}
        versus = bench_stage_vs_forward(guards, by_runtime, pii, args.latency_calls)

    ratio_threads, ratio_async = rates["ratio_threads"], rates["ratio_async"]
    used = "bundled `minilm-toxicity`" if not pool.notes else "MiniLM-encoder stand-in (see note)"
    encoder = (
        f"encoder on ONNX Runtime {ort_info.get('version')} ({ort_info.get('threads')} intra-op threads, "
        "no spinning)"
        if on_ort
        else "encoder on torch"
    )
    lines = [
        f"Classifier: {used}, {encoder}; torch {torch.__version__}, {torch.get_num_threads()} intra-op "
        "threads, CPU. "
        f"1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after "
        f"on {os.cpu_count()} cores (other processes share the CPU when it exceeds the core count).",
        *(f"> Note: {n}." for n in pool.notes),
        "",
        f"**Micro-batched vs unbatched**: {CALLERS} concurrent callers, a different short prompt each "
        f"({args.rounds} interleaved rounds; texts/s from the median round, ratio = median of the "
        "per-round ratios).",
        "",
        "| encoder runtime | unbatched texts/s (64 threads) | micro-batched texts/s (64 threads) | ratio "
        "| ratio, 64 asyncio tasks through `Guard` | ceiling: one `predict` of 64 vs 64 in a row "
        "| p50 of one `predict([t])`, ms | CPU ms per text: alone / in the batch of 64 (ratio) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in all_rates.items():
        lines.append(
            f"| {name} | {r['threads_unbatched']:.0f} | {r['threads_batched']:.0f} | **{r['ratio_threads']:.1f}x** "
            f"| {r['ratio_async']:.1f}x | {r['ratio_ceiling']:.1f}x | {r['single_p50_ms']:.1f} "
            f"| {r['cpu_ms_per_text_single']:.2f} / {r['cpu_ms_per_text_batch']:.2f} ({r['ratio_cpu']:.1f}x) |"
        )
    lines += [
        "",
        "The last column is process CPU time (all threads) of the sequential modes: the work per text, "
        "which a loaded machine inflates far less than wall time (with 64 runnable threads the unbatched "
        "mode also takes a larger share of a shared CPU than the one batching worker does).",
        "",
        "Each mode in detail:",
        "",
        "| encoder runtime | callers | unbatched texts/s | micro-batched texts/s | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in all_rates.items():
        lines += [
            f"| {name} | none: {CALLERS} x `predict([t])` in a row vs one `predict` of {CALLERS} (ceiling) "
            f"| {r['sequential_single']:.0f} | {r['sequential_batch']:.0f} | {r['ratio_ceiling']:.1f}x |",
            f"| {name} | {CALLERS} threads, `predict([t])` vs `MicroBatcher.predict_one` "
            f"| {r['threads_unbatched']:.0f} | {r['threads_batched']:.0f} | {r['ratio_threads']:.1f}x |",
            f"| {name} | {CALLERS} asyncio tasks, `Guard.acheck_input` (micro_batch off/on) "
            f"| {r['async_guard_unbatched']:.0f} | {r['async_guard_batched']:.0f} | {r['ratio_async']:.1f}x |",
        ]
    met = min(ratio_threads, ratio_async) >= 4
    lines += [
        "",
        f"Mean micro-batch in the threaded runs: {rates['threads_mean_batch']:.1f} texts "
        "(callers arriving after a batch has started wait for the next one).",
        "",
        f"Target >= 4x with the default encoder runtime ({default_name}): **{'met' if met else 'NOT met'}** "
        f"({ratio_threads:.1f}x threads, {ratio_async:.1f}x asyncio).",
    ]
    if ORT_INT8 in all_rates and on_ort:
        fp32, int8 = all_rates[ORT_FP32], all_rates[ORT_INT8]
        lines.append(
            f"The int8 graph scores {int8['threads_batched'] / fp32['threads_batched']:.1f}x the micro-batched "
            f"texts/s of fp32 ONNX Runtime and {int8['threads_unbatched'] / fp32['threads_unbatched']:.1f}x its "
            "unbatched texts/s: it speeds up both paths, so it raises throughput more than the ratio. Its "
            "scores are not fp32's (opt-in; agreement in the `onnx_agreement` section)."
        )
    lines += [
        "",
        f"**Added latency of `guardrails/default.yaml`**, one caller, one short prompt, "
        f"{args.latency_calls} sequential calls per stage (rails of a stage run concurrently; "
        "both classifiers micro-batched; a lone call goes at once, without the batching window):",
        "",
        "| stage | rails | p50 ms | p99 ms | mean ms |",
        "|---|---|---:|---:|---:|",
    ]
    for stage, rails in (("input", policy.input), ("output", policy.output)):
        s = latency[stage]
        names = ", ".join(r.name for r in rails)
        lines.append(f"| {stage} | {names} | {s['p50']:.1f} | {s['p99']:.1f} | {s['mean']:.1f} |")
    forward_p50 = versus[BARE_TORCH]["p50"]
    lines += [
        "",
        f"**Input stage next to a bare forward pass of the same encoder**, same process, "
        f"interleaved call by call, {args.latency_calls} calls each (the default stage runs the "
        "toxicity and PII rails at the same time, so its latency is the slower rail's plus the "
        "guard's own work):",
        "",
        "| path | p50 ms | p90 ms | p50 / bare forward |",
        "|---|---:|---:|---:|",
    ]
    for name, st in versus.items():
        lines.append(f"| {name} | {st['p50']:.1f} | {st['p90']:.1f} | {st['p50'] / forward_p50:.2f}x |")
    input_p50 = versus[STAGE_ORT if on_ort else STAGE_TORCH]["p50"]
    lines += [
        "",
        f"Input stage p50 {input_p50:.1f} ms with the default encoder runtime "
        f"({'ONNX Runtime' if on_ort else 'torch'}; target <= 10 ms: {'met' if input_p50 <= 10 else 'NOT met'} "
        "on this machine at this load).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("guard_inline", body)


if __name__ == "__main__":
    main()
