"""Our batching engine vs the two batching habits it replaces, same model, same machine.

Methods (each runs in a fresh subprocess, so its peak RSS is its own):

* ``engine``: :class:`~rai_harness.classifiers.engine.BatchEngine`: sort by length, token
  budget per batch, dynamic padding, long texts chunked (never truncated).
* ``per-text-512``: LLM Guard's method: one text at a time, padded to 512 tokens.
* ``whole-list``: Detoxify.predict's method: the whole list padded to its longest text
  (truncated at 512) in one batch.

Model: all-MiniLM-L6-v2 (the bundled encoder) + mean pooling + L2 norm + a sigmoid head:
the shipped ``minilm-toxicity`` head when its weights are present, else a seeded random
2-label head (speed does not depend on the head's values). Window 512 tokens for all three
methods, so only the batching differs.

Sets: ``short`` (2,000 chat turns of 5-30 words) and ``mixed`` (60% chat turns, 30%
paragraphs of 40-150 words, 10% multi-paragraph texts of 300-900 words, some longer than
the window). Texts are generated from a fixed seed.

What runs on what, and why: the engine scores the whole set. ``per-text-512`` costs the
same for every text (always 512 tokens, batch 1), so it is timed on a random sample
(``--loop-sample``) and its texts/s holds for any set. ``whole-list`` is run on the whole
set when that fits ``--whole-list-tokens`` padded tokens, else on the largest random
sample that does (on the mixed set a single batch of 2,000 x 512 tokens needs ~20 GB);
its texts/s barely depends on the list size once one long text pads it to 512.

    python benchmarks/classifiers.py            # full run (minutes on 2 CPU cores)
    python benchmarks/classifiers.py --quick    # 200 texts, small samples
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _results import write_section  # noqa: E402
from rai_harness.classifiers.engine import DEFAULT_BATCH_CPU, DEFAULT_TOKENS_CPU  # noqa: E402

logger = logging.getLogger("benchmarks.classifiers")

METHODS = ("engine", "per-text-512", "whole-list")
SETS = ("short", "mixed")
WINDOW = 512

_VOCAB = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "please",
    "thanks",
    "help",
    "question",
    "answer",
    "model",
    "safety",
    "report",
    "city",
    "river",
    "music",
    "science",
    "history",
    "language",
    "policy",
    "guard",
    "meeting",
    "summary",
    "email",
    "customer",
    "order",
    "refund",
    "account",
    "password",
    "weather",
]


# -- data ---------------------------------------------------------------------------------


def _sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(_VOCAB) for _ in range(n_words)]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", "?", "!", "."])


def _paragraph(rng: random.Random, n_words: int) -> str:
    out, left = [], n_words
    while left > 0:
        k = min(left, rng.randint(6, 18))
        out.append(_sentence(rng, k))
        left -= k
    return " ".join(out)


def make_texts(kind: str, n: int, seed: int = 0) -> list[str]:
    """Deterministic benchmark texts: ``short`` chat turns or the ``mixed`` set."""
    rng = random.Random(f"{kind}-{seed}")
    texts = []
    for _ in range(n):
        roll = rng.random() if kind == "mixed" else 0.0
        if roll < 0.6:
            texts.append(_paragraph(rng, rng.randint(5, 30)))
        elif roll < 0.9:
            texts.append(_paragraph(rng, rng.randint(40, 150)))
        else:
            paragraphs = [_paragraph(rng, rng.randint(60, 180)) for _ in range(rng.randint(3, 6))]
            texts.append("\n\n".join(paragraphs))
    return texts


# -- the model (same for all methods) --------------------------------------------------------


def load_model():
    """MiniLM encoder + sigmoid head as one ``forward(batch) -> probs`` and its tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from rai_harness.classifiers.embedding import bundled_minilm_path, pool_hidden_states

    folder = str(bundled_minilm_path())
    encoder = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    head_name = "random 2-label head (seed 0)"
    try:
        from rai_harness.classifiers.toxicity_head import ToxicityHead

        head = ToxicityHead.load()
        weight, bias = torch.from_numpy(head.weight).float(), torch.from_numpy(head.bias).float()
        head_name = f"minilm-toxicity head ({len(head.labels)} labels)"
    except Exception:  # not shipped yet in this checkout: speed does not depend on the values
        generator = torch.Generator().manual_seed(0)
        weight, bias = torch.randn(2, 384, generator=generator), torch.zeros(2)

    def forward(batch: dict[str, Any]) -> Any:
        hidden = encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        pooled = torch.nn.functional.normalize(pool_hidden_states(hidden, batch["attention_mask"]), dim=-1)
        return torch.sigmoid(pooled @ weight.T + bias)

    return forward, tokenizer, head_name


# -- the three methods ---------------------------------------------------------------------


def make_method(name: str, forward, tokenizer, args):
    """Return ``score(texts) -> np.ndarray (n, k)`` for one method."""
    import torch

    if name == "engine":
        from rai_harness.classifiers.engine import BatchEngine, aggregate_max

        engine = BatchEngine(
            tokenizer,
            forward,
            max_length=WINDOW,
            device="cpu",
            max_tokens_per_batch=args.max_tokens_per_batch,
            max_batch_size=args.max_batch_size,
        )
        return lambda texts: aggregate_max(engine.run(texts))

    if name == "per-text-512":

        def per_text(texts: list[str]) -> np.ndarray:
            rows = []
            with torch.inference_mode():
                for text in texts:
                    enc = tokenizer(
                        text, padding="max_length", max_length=WINDOW, truncation=True, return_tensors="pt"
                    )
                    rows.append(forward(dict(enc)).numpy())
            return np.concatenate(rows)

        return per_text

    if name == "whole-list":

        def whole_list(texts: list[str]) -> np.ndarray:
            with torch.inference_mode():
                enc = tokenizer(texts, padding=True, truncation=True, max_length=WINDOW, return_tensors="pt")
                return forward(dict(enc)).numpy()

        return whole_list
    raise ValueError(name)


def _max_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the high-water mark of this process's resident memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict[str, Any]:
    """Run one method on one set in this (fresh) process and return its measurements."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    forward, tokenizer, head_name = load_model()
    texts = make_texts(args.set, args.n, args.seed)
    rng = random.Random(args.seed + 1)
    if args.method == "per-text-512":
        run_texts = rng.sample(texts, min(args.loop_sample, len(texts)))
    elif args.method == "whole-list":
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
        padded = min(WINDOW, max(lengths))
        fits = max(1, args.whole_list_tokens // padded)
        run_texts = texts if fits >= len(texts) else rng.sample(texts, fits)
    else:
        run_texts = texts
    score = make_method(args.method, forward, tokenizer, args)
    score(texts[:4])  # warm-up: first-call allocations and kernel choice are not the method's cost

    rss_before = _max_rss_mb()
    start = time.perf_counter()
    score(run_texts)
    elapsed = time.perf_counter() - start
    rss_peak = _max_rss_mb()

    latencies = []
    if args.method == "per-text-512":
        latencies = [elapsed / len(run_texts) * 1e3] * len(run_texts)  # every call is the same 512 tokens
        for text in run_texts[: min(20, len(run_texts))]:  # measured, for the percentiles
            t0 = time.perf_counter()
            score([text])
            latencies.append((time.perf_counter() - t0) * 1e3)
        latencies = latencies[len(run_texts) :]
    else:
        for text in rng.sample(texts, min(args.latency_sample, len(texts))):
            t0 = time.perf_counter()
            score([text])
            latencies.append((time.perf_counter() - t0) * 1e3)
    qs = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {
        "method": args.method,
        "set": args.set,
        "texts": len(run_texts),
        "seconds": elapsed,
        "texts_per_s": len(run_texts) / elapsed,
        "p50_ms": statistics.median(latencies),
        "p95_ms": qs[18],
        "rss_before_mb": rss_before,
        "peak_delta_mb": rss_peak - rss_before,
        "threads": torch.get_num_threads(),
        "head": head_name,
    }


# -- the driver -------------------------------------------------------------------------------


def run_in_subprocess(method: str, kind: str, args) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--method",
        method,
        "--set",
        kind,
        "--n",
        str(args.n),
        "--seed",
        str(args.seed),
        "--loop-sample",
        str(args.loop_sample),
        "--latency-sample",
        str(args.latency_sample),
        "--whole-list-tokens",
        str(args.whole_list_tokens),
        "--max-tokens-per-batch",
        str(args.max_tokens_per_batch),
        "--max-batch-size",
        str(args.max_batch_size),
        "--threads",
        str(args.threads),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    if args.mmap_threshold:
        # glibc raises its mmap threshold as large blocks are freed, after which freed
        # activation buffers stay in a fragmented heap and ru_maxrss creeps up with the
        # number of batches, whatever the method really holds. A fixed threshold returns
        # large blocks to the OS on free, so peak RSS measures live memory (same for all).
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{method}/{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(results: list[dict[str, Any]], args, load_avg: tuple[float, float]) -> str:
    by = {(r["set"], r["method"]): r for r in results}
    lines = [
        f"Model: all-MiniLM-L6-v2 encoder + mean pooling + {results[0]['head']}, fp32 on the CPU, "
        f"{results[0]['threads']} torch threads, window {WINDOW} tokens for every method. Engine: "
        f"max_tokens_per_batch={args.max_tokens_per_batch}, max_batch_size={args.max_batch_size}, "
        "overlap 64 (texts over the window are chunked, so the engine reads *more* tokens than the "
        "truncating baselines). Each method ran in its own subprocess; peak memory is the rise of "
        "ru_maxrss during the scoring call over the loaded model "
        f"(MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}, so freed activation buffers go back to the OS "
        "and the peak reflects live memory, not heap fragmentation). Latency: one text per call "
        f"({args.latency_sample} random texts; per-text-512: 20). Load average before/after: "
        f"{load_avg[0]:.1f}/{load_avg[1]:.1f} (other jobs shared the 2 cores; absolute numbers are noisy, "
        "the ratios less so).",
        "",
        "| set | method | texts scored | texts/s | engine speed-up | p50 ms/text | p95 ms/text | peak RSS rise MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in SETS:
        engine_tps = by[(kind, "engine")]["texts_per_s"]
        for method in METHODS:
            r = by[(kind, method)]
            ratio = "1.0x" if method == "engine" else f"{engine_tps / r['texts_per_s']:.1f}x"
            lines.append(
                f"| {kind} | {method} | {r['texts']:,} | {r['texts_per_s']:,.1f} | {ratio} | "
                f"{r['p50_ms']:,.1f} | {r['p95_ms']:,.1f} | {r['peak_delta_mb']:,.0f} |"
            )
    lines += [
        "",
        f"per-text-512 ran on a random sample of {args.loop_sample} texts (each call costs the same 512 "
        f"tokens, so texts/s does not depend on the sample); whole-list on as many texts as fit "
        f"{args.whole_list_tokens:,} padded tokens (the whole set where it fits; its memory grows with the "
        "list: padded length x list size). Targets: >= 10x per-text-512 on short turns, >= 4x on the "
        "mixed set, >= 2x whole-list, memory bounded by the token budget.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="texts per set")
    parser.add_argument("--quick", action="store_true", help="200 texts and small samples (a smoke check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop-sample", type=int, default=100, help="texts timed for per-text-512")
    parser.add_argument("--latency-sample", type=int, default=100, help="single-text calls timed")
    parser.add_argument(
        "--whole-list-tokens", type=int, default=131_072, help="padded-token cap of whole-list"
    )
    # The engine's own CPU defaults, so the numbers describe what users get.
    parser.add_argument("--max-tokens-per-batch", type=int, default=DEFAULT_TOKENS_CPU)
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_BATCH_CPU)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=1 << 20,
        help="MALLOC_MMAP_THRESHOLD_ for the workers, bytes (0: glibc's dynamic default)",
    )
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: short,mixed")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--set", choices=SETS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        args.n, args.loop_sample, args.latency_sample = min(args.n, 200), 10, 20
    load_before = os.getloadavg()[0]
    results = []
    for kind in args.sets.split(","):
        for method in METHODS:
            result = run_in_subprocess(method, kind, args)
            logger.info(
                "%-6s %-13s %5d texts  %8.1f texts/s  p50 %7.1f ms  p95 %7.1f ms  peak +%.0f MB",
                kind,
                method,
                result["texts"],
                result["texts_per_s"],
                result["p50_ms"],
                result["p95_ms"],
                result["peak_delta_mb"],
            )
            results.append(result)
    body = report(results, args, (load_before, os.getloadavg()[0]))
    print(body)
    if not args.no_write and not args.quick and set(args.sets.split(",")) == set(SETS):
        write_section("classifiers", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
