"""GPU throughput of the batching engine for a BERT-base-size classifier, and a bf16 check.

On a CUDA machine: a ``BertForSequenceClassification`` with ``BertConfig()`` defaults
(BERT-base: 12 layers, 768 wide, 110M parameters; random weights, seed 0) scores the same
texts through :class:`~rai_harness.classifiers.engine.BatchEngine` at batch sizes 8 to
512, in fp32 and in bf16 (fp16 where the card has no bf16). Reported: texts/s, tokens/s,
peak GPU memory (``torch.cuda.max_memory_allocated``), and how far bf16 is from fp32 on the
same inputs (max absolute probability difference, argmax label agreement).

Without CUDA (or with ``--cpu-small``) it runs the same code with a 2-layer, 128-wide
BERT and small batches, so the script itself is exercised on any machine.

    python benchmarks/gpu.py                 # CUDA if present, else the CPU check
    python benchmarks/gpu.py --cpu-small     # force the small CPU run
    python benchmarks/gpu.py --no-write      # print only, leave RESULTS.md alone
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _results import write_section

logger = logging.getLogger("benchmarks.gpu")

WORDS = [
    "the",
    "a",
    "model",
    "text",
    "user",
    "answer",
    "question",
    "safe",
    "policy",
    "guard",
    "score",
    "token",
    "batch",
    "long",
    "short",
    "please",
    "thanks",
    "report",
    "data",
    "city",
    "river",
    "music",
    "science",
    "history",
    "language",
    "people",
    "time",
    "year",
    "good",
    "bad",
    "new",
    "old",
    "first",
    "last",
    "great",
    "little",
    "own",
    "other",
    "right",
    "big",
    "high",
    "different",
    "small",
    "large",
]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Chat-like texts of 20-200 words (deterministic)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 200))) for _ in range(n)]


def build(small: bool, device, dtype):
    """Random-weight BERT classifier + the bert-base-uncased WordPiece vocab from MiniLM."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rai_harness.classifiers.embedding import bundled_minilm_path
    from rai_harness.classifiers.engine import prepare_model

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_minilm_path()))  # vocab 30522 = BERT-base's
    config = (
        BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
        if small
        else BertConfig()
    )
    config.num_labels = 2
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    return prepare_model(model, device, dtype), tokenizer


def run_config(model, tokenizer, texts, *, device, dtype, batch_size: int):
    import torch

    from rai_harness.classifiers.engine import BatchEngine, aggregate_max

    def forward(batch):
        return model(**batch).logits.float().softmax(-1)

    engine = BatchEngine(
        tokenizer,
        forward,
        max_length=512,
        device=device,
        dtype=dtype,
        max_batch_size=batch_size,
        max_tokens_per_batch=batch_size * 512,  # the batch size, not the budget, binds
    )
    engine.run(texts[: batch_size * 2])  # warm-up: kernels, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = engine.run(texts)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens = int(out.n_tokens.sum())
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return aggregate_max(out), elapsed, tokens, peak


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-small", action="store_true", help="small model, small batches, on the CPU")
    parser.add_argument("--n", type=int, default=None, help="texts per configuration")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    small = args.cpu_small or not torch.cuda.is_available()
    device = torch.device("cpu") if small else torch.device("cuda")
    batch_sizes = [4, 8, 16] if small else [8, 16, 32, 64, 128, 256, 512]
    n = args.n or (48 if small else 4096)
    # bf16 on the CPU too (as a code-path check); fp16 on cards without bf16 (pre-Ampere).
    low = torch.bfloat16 if small or torch.cuda.is_bf16_supported() else torch.float16
    texts = make_texts(n)

    rows: list[str] = []
    probs: dict[str, np.ndarray] = {}
    for dtype in (torch.float32, low):
        model, tokenizer = build(small, device, dtype)
        for bs in batch_sizes:
            scores, elapsed, tokens, peak = run_config(
                model, tokenizer, texts, device=device, dtype=dtype, batch_size=bs
            )
            name = str(dtype).removeprefix("torch.")
            probs.setdefault(name, scores)
            rows.append(
                f"| {name} | {bs} | {n / elapsed:,.0f} | {tokens / elapsed:,.0f} | "
                + ("-" if np.isnan(peak) else f"{peak:,.0f}")
                + " |"
            )
            logger.info(rows[-1])
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    fp32, half = probs["float32"], probs[str(low).removeprefix("torch.")]
    max_diff = float(np.abs(fp32 - half).max())
    agreement = float((fp32.argmax(1) == half.argmax(1)).mean())
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    model_name = "BERT 2x128 (small CPU check)" if small else "BERT-base (BertConfig defaults, 110M params)"
    body = "\n".join(
        [
            f"Model: {model_name}, random weights, 2 labels, softmax; device: {device_name}; "
            f"{n} texts of 20-200 words (~30-260 tokens); window 512; max_tokens_per_batch = batch x 512.",
            "",
            "| dtype | max batch | texts/s | tokens/s | peak GPU MiB |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"{str(low).removeprefix('torch.')} vs float32 on the same {n} texts: max |Δprob| = {max_diff:.4f}, "
            f"argmax agreement = {agreement:.1%}.",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("gpu", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
