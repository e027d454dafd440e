"""Per-text latency of the shipped ``minilm-toxicity`` (fine-tuned top layers) vs the v1 linear head.

Both classifiers share one MiniLM embedder (as in the pool); the fine-tuned one runs its own
copies of the top layers over the shared lower ones, so the forward pass has the same size and
the latency should be the same. Measured in one process, interleaved call by call, so machine
load hits both alike: ``predict([text])`` for one short prompt (what a guard rail does for a lone
caller) and ``predict`` of 64 texts (a micro-batch), reported as p50/p90 and the ratio.

Run: ``python benchmarks/toxicity_heads.py [--calls 300] [--no-write]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section
from guard_inline import PROMPTS
from rai_harness.classifiers.embedding import MiniLMEmbedder
from rai_harness.classifiers.toxicity_head import DEFAULT_HEAD_DIR, MiniLMToxicityClassifier

V1_HEAD_DIR = DEFAULT_HEAD_DIR.with_name("minilm_toxicity_v1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="Interleaved calls per path.")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone.")
    args = parser.parse_args()
    import torch

    embedder = MiniLMEmbedder(device="cpu")
    shipped = MiniLMToxicityClassifier(DEFAULT_HEAD_DIR, embedder=embedder)
    tuned = len(shipped.info()["fine_tuned_layers"])
    paths = {
        "v1 linear head (frozen encoder)": MiniLMToxicityClassifier(V1_HEAD_DIR, embedder=embedder),
        f"shipped: top {tuned} layers fine-tuned": shipped,
    }
    batch = [PROMPTS[i % len(PROMPTS)] for i in range(64)]
    single: dict[str, list[float]] = {name: [] for name in paths}
    batched: dict[str, list[float]] = {name: [] for name in paths}
    for clf in paths.values():  # warm-up
        clf.predict(PROMPTS)
    load_before = os.getloadavg()[0]
    for i in range(args.calls):
        for name, clf in paths.items():
            started = time.perf_counter()
            clf.predict([PROMPTS[i % len(PROMPTS)]])
            single[name].append((time.perf_counter() - started) * 1000.0)
        if i % 10 == 0:
            for name, clf in paths.items():
                started = time.perf_counter()
                clf.predict(batch)
                batched[name].append((time.perf_counter() - started) * 1000.0)
    base = next(iter(paths))
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, CPU, fp32; 1-min load average "
        f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after on {os.cpu_count()} cores. {args.calls} "
        "interleaved `predict([prompt])` calls per classifier, and a 64-text `predict` every 10th round.",
        "",
        "| classifier | one prompt p50 ms | p90 ms | ratio to v1 (p50) | 64 texts p50 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in paths:
        p50, p90 = np.percentile(single[name], 50), np.percentile(single[name], 90)
        ratio = p50 / np.percentile(single[base], 50)
        lines.append(
            f"| {name} | {p50:.1f} | {p90:.1f} | {ratio:.2f}x | {np.percentile(batched[name], 50):.0f} |"
        )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("toxicity_heads", body)


if __name__ == "__main__":
    main()
