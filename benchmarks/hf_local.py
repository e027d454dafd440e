"""The ``hf-local`` provider against raw batched ``model.generate``, side by side in one process.

The embedded SmolLM2-135M-Instruct (fp32 on the CPU), 16 prompts of mixed lengths, 48 new
tokens, greedy. Each round times, in a rotating order:

1. **raw**: one ``model.generate`` on the 16 chat-templated, left-padded prompts, on the main
   thread with torch's default thread count (the floor the provider is measured against);
2. **provider**: 16 concurrent ``HFLocalProvider.generate`` calls (micro-batched into one
   ``generate``; CPU threads adaptive, the default);
3. **provider, fixed threads**: the same with ``num_threads`` = torch's default count, i.e. the
   thread behaviour before the adaptive governor (a second copy of the model);
4. **two providers sharing the model**: 8 calls each through two providers of the same model
   (a plain and a guarded provider of a run, say); they share one model and one batch.

Everything runs twice: as the machine is found (it should be quiet), then beside a
CPU-bound loop in another process, a stand-in for a second job on a shared machine.
Reported: median wall time, the ratio to raw (median of the per-round ratios), TTFT and latency
p50 of the calls (raw TTFT: a prefill-plus-one-token ``generate`` of the same batch), and the
CPU other processes used meanwhile (from ``/proc/stat``; the machine may be shared), since
contention changes everything on a small CPU. The provider must return the raw texts.

Run: ``.venv/bin/python benchmarks/hf_local.py [--rounds 3] [--prompts 16] [--new-tokens 48]
[--quiet-only] [--no-write]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section
from rai_harness.providers.hf_local import HFLocalConfig, HFLocalProvider
from rai_harness.types import ChatRequest, Generation, GenerationParams

PROMPTS = [
    "Write a two-sentence welcome message for new employees at a bakery.",
    "What is the capital of Australia? Answer in one sentence.",
    "How many legs does a spider have?",
    "Explain photosynthesis to a ten-year-old.",
    "Give me three tips for a job interview.",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "Summarise the plot of Hamlet in two sentences.",
    "hi",
    "Suggest a name for a small coffee shop by the sea, and say why in one line.",
    "List the planets of the solar system in order from the sun.",
    "What does a nurse do during a night shift in a busy hospital ward?",
    "Write a haiku about autumn leaves.",
    "Is it safe to swim right after eating? Answer briefly.",
    "Numbers: 1 2 3",
    "Describe a good password policy for a small company in a few sentences.",
]

RAW = "raw batched `model.generate`"
PROVIDER = "provider (adaptive CPU threads, default)"
FIXED = "provider, fixed threads (torch default)"
SHARED = "two providers sharing the model, 8 calls each"


def _busy_cpu_s() -> float | None:
    """CPU-seconds the whole machine spent busy (Linux), to tell how much others used."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall time, and the cores other processes used during it."""

    def __enter__(self) -> Meter:
        self.busy0, self.cpu0, self.t0 = _busy_cpu_s(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        busy1 = _busy_cpu_s()
        own = time.process_time() - self.cpu0
        self.others = (
            None if busy1 is None or self.busy0 is None else max(0.0, (busy1 - self.busy0 - own) / self.wall)
        )


def _texts_until_eos(output: Any, prompt_len: int, eos: frozenset[int], tokenizer: Any) -> list[str]:
    texts = []
    for row in output[:, prompt_len:].tolist():
        end = next((i for i, t in enumerate(row) if t in eos), len(row))
        texts.append(tokenizer.decode(row[:end], skip_special_tokens=True))
    return texts


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--quiet-only", action="store_true", help="skip the run beside a busy process")
    args = ap.parse_args()

    import torch

    threads = torch.get_num_threads()
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    params = GenerationParams(max_tokens=args.new_tokens)  # temperature None: greedy
    requests = [ChatRequest.from_prompt(f"p{i}", p, params=params) for i, p in enumerate(prompts)]

    provider = HFLocalConfig(model="smollm2").build()
    # device "cpu" instead of "auto": another model identity, so another copy of the model.
    fixed = HFLocalConfig(model="smollm2", device="cpu", num_threads=threads).build()
    second = HFLocalConfig(model="smollm2", id="guarded-twin").build()  # shares `provider`'s model
    assert isinstance(provider, HFLocalProvider)
    await provider.load()
    await fixed.load()
    loaded = provider._loaded
    assert loaded is not None and loaded.device == "cpu", "this benchmark is for the CPU"
    tokenizer, model = loaded.tokenizer, loaded.model
    rendered = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    encoded = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    gen_kwargs = {
        "do_sample": False,
        "pad_token_id": loaded.pad_id,
        "eos_token_id": sorted(loaded.eos_ids),
    }

    def raw(new_tokens: int) -> Any:
        with torch.inference_mode():
            return model.generate(**encoded, max_new_tokens=new_tokens, **gen_kwargs)

    async def through(pairs: list[tuple[HFLocalProvider, ChatRequest]]) -> list[Generation]:
        return list(await asyncio.gather(*(p.generate(r) for p, r in pairs)))

    half = len(requests) // 2
    runs: dict[str, list[tuple[HFLocalProvider, ChatRequest]]] = {
        PROVIDER: [(provider, r) for r in requests],
        FIXED: [(fixed, r) for r in requests],
        SHARED: [(provider, r) for r in requests[:half]] + [(second, r) for r in requests[half:]],
    }

    # Warm-up: every path once, 2 tokens.
    raw(2)
    short = GenerationParams(max_tokens=2)
    for pairs in runs.values():
        await through(
            [(p, ChatRequest.from_prompt(r.sample_id, r.prompt_text, params=short)) for p, r in pairs]
        )

    async def measure(condition: str) -> tuple[list[str], float]:
        """All paths, ``args.rounds`` rotating rounds: table lines and the provider/raw ratio."""
        names = [RAW, PROVIDER, FIXED, SHARED]
        wall: dict[str, list[float]] = {n: [] for n in names}
        others: dict[str, list[float]] = {n: [] for n in names}
        ttft: dict[str, list[float]] = {n: [] for n in names}
        latency: dict[str, list[float]] = {n: [] for n in names}
        texts: dict[str, list[str]] = {}
        shared_calls: list[int] = []
        steps_before = dict(provider._stats.steps_by_threads)
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                if name == RAW:
                    with Meter() as m1:
                        raw(1)
                    ttft[name].append(m1.wall)
                    with Meter() as m:
                        output = raw(args.new_tokens)
                    latency[name].append(m.wall)
                    texts[name] = _texts_until_eos(
                        output, encoded["input_ids"].shape[1], loaded.eos_ids, tokenizer
                    )
                else:
                    before = provider.stats["generate_calls"]
                    with Meter() as m:
                        gens = await through(runs[name])
                    if name == SHARED:
                        shared_calls.append(provider.stats["generate_calls"] - before)
                    ttft[name].extend(g.ttft_s for g in gens if g.ttft_s is not None)
                    latency[name].extend(g.latency_s for g in gens)
                    texts[name] = [g.text for g in gens]
                wall[name].append(m.wall)
                if m.others is not None:
                    others[name].append(m.others)
                used = f"{m.others:.2f}" if m.others is not None else "n/a"
                print(
                    f"{condition}, round {rnd}: {name}: {m.wall:.2f} s, others used {used} cores", flush=True
                )
        steps = {
            k: v - steps_before.get(k, 0)
            for k, v in sorted(provider._stats.steps_by_threads.items())
            if v - steps_before.get(k, 0)
        }
        same = {n: texts[n] == texts[RAW] for n in names[1:]}
        ratios = {n: statistics.median(w / r for w, r in zip(wall[n], wall[RAW], strict=True)) for n in names}
        tokens = len(prompts) * args.new_tokens
        lines = [
            f"**{condition}**",
            "",
            "| path | wall s | vs raw | TTFT p50 s | latency p50 s | aggregate tok/s | others (cores) | same text as raw |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for n in names:
            med = statistics.median(wall[n])
            lines.append(
                f"| {n} | {med:.2f} | {ratios[n]:.2f} | {statistics.median(ttft[n]):.2f} | "
                f"{statistics.median(latency[n]):.2f} | {tokens / med:.0f} | "
                f"{statistics.median(others[n]) if others[n] else float('nan'):.2f} | "
                f"{'-' if n == RAW else ('yes' if same[n] else 'NO')} |"
            )
        ratio = ratios[PROVIDER]
        lines += [
            "",
            f"Provider / raw: **{ratio:.2f}x** (target <= 1.3x): {'PASS' if ratio <= 1.3 else 'MISS'}. "
            f"Decoding steps of the adaptive provider by thread count: {steps or 'n/a'}. Two providers "
            f"sharing the model: {statistics.median(shared_calls) if shared_calls else 0:.0f} `generate` "
            f"call(s) for their {len(requests)} calls.",
            "",
        ]
        return lines, ratio

    lines = [
        f"Embedded SmolLM2-135M-Instruct, fp32 on CPU; torch {torch.__version__}, default {threads} intra-op "
        f"threads. {len(prompts)} prompts x {args.new_tokens} new tokens, greedy; {args.rounds} rounds, order "
        "rotating; medians. *Others*: CPU used meanwhile by other processes (cores).",
        "",
    ]
    quiet, _ = await measure("Machine as found (quiet when *others* is near 0)")
    lines += quiet
    if not args.quiet_only:
        # A stand-in for another process on the machine (a test run, another benchmark).
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            busy, _ = await measure("With one busy process (a CPU-bound loop) beside it")
        finally:
            hog.kill()
            hog.wait()
        lines += busy
    await provider.aclose()
    await second.aclose()
    await fixed.aclose()
    lines += [
        "Raw TTFT: the same batch with 1 new token (prefill plus first token). Provider TTFT: per call, "
        "from submission to the batch's first token. *Fixed threads* is the thread behaviour before the "
        "adaptive governor: with another process on one core, torch's two threads wait for each other "
        "at every operator's barrier.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("hf_local", body)


if __name__ == "__main__":
    asyncio.run(main())
