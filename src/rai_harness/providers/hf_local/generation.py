"""One batched ``model.generate``: prompts, per-call sampling, timing and token counts.

Measurement
    A stopping criterion stamps the clock at every decoding step. ``ttft_s`` is the
    first step (prefill plus first token, shared by the batch) and ``latency_s`` the
    step at which that sequence produced its end-of-sequence token (or the last step),
    both counted from the moment the call was *submitted*, so time spent queued behind
    other batches is included. The caller receives the result when the whole batch
    ends. Token counts are exact (the model's tokenizer): prompt tokens without
    padding; completion tokens are the tokens generated for the sequence, including
    the end-of-sequence token when there is one (the model computed it), and including
    tokens after a stop string (the model generated them; only the text is cut).

Sampling
    ``temperature`` null or 0 is greedy decoding; otherwise sampling with
    ``temperature`` and ``top_p`` over the full vocabulary (``top_k`` off unless set
    in ``params.extra``; ``min_p`` there works too; its other keys are passed to
    ``generate`` unchanged). Every call samples from its own random stream: a CPU
    ``torch.Generator`` seeded with the request's ``seed`` (``rai run`` derives one per
    request from the run seed, the sample id and the repeat index). Sampling is done by a
    logits processor that filters the row's logits (temperature, top-k, top-p, min-p, as
    ``transformers`` does) and draws one uniform number per step from the row's generator
    (inverse CDF), so its draws do not depend on which other calls share its batch, in
    which order, or on the concurrency; a retried call repeats itself. Batch composition
    still changes logits in the last bits (padding changes the matrix shapes), and a draw
    flips when its uniform number falls within that rounding of a token boundary: with
    the embedded model, one of 24 sampled continuations changed in 2 of 7 batch
    compositions. So a sampled call generates alone unless the provider sets
    ``batch_sampled`` (see ``HFLocalProvider.generate``); greedy calls are batched (an
    argmax flips only on a near-tie). A call without a ``seed`` gets a fresh random one
    (not reproducible).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rai_harness.errors import ProviderError
from rai_harness.providers.hf_local.config import DEFAULT_MAX_NEW_TOKENS
from rai_harness.providers.hf_local.governor import _CPU_LOCK, _cpu_governor
from rai_harness.providers.hf_local.model import _Loaded
from rai_harness.types import ChatRequest, GenerationParams, stable_hash


def _is_greedy(params: GenerationParams) -> bool:
    return params.temperature is None or params.temperature == 0


def _batch_key(params: GenerationParams) -> str:
    """Calls with equal keys can share one ``model.generate``.

    Stop strings are left out (applied per call after decoding); greedy decoding
    ignores temperature and top_p, so those are left out for it. The seed is always left
    out: each call samples from its own generator (see :func:`_row_sampler_class`).
    """
    key: dict[str, Any] = {"max_tokens": params.max_tokens, "extra": dict(params.extra)}
    if not _is_greedy(params):
        key.update(temperature=params.temperature, top_p=params.top_p)
    return stable_hash(key)


def _apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; return the text and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _scan_row(tokens: Sequence[int], eos_ids: frozenset[int]) -> tuple[int, int, bool]:
    """Find where one generated sequence ends.

    Args:
        tokens: The tokens generated for the sequence (the batch's output minus the
            prompt; after the sequence's end-of-sequence token it holds padding).
        eos_ids: Token ids that end a sequence.

    Returns:
        ``(text_tokens, completion_tokens, hit_eos)``: tokens to decode (before the EOS),
        tokens counted as completion (including the EOS), and whether an EOS was produced.
    """
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return i, i + 1, True
    return len(tokens), len(tokens), False


@functools.cache
def _step_timer_class() -> type:
    """A ``StoppingCriteria`` that never stops and stamps ``perf_counter`` at each step.

    Built on first use so that importing this module does not import ``transformers``.
    ``on_step`` (optional) runs after each stamp on the model thread: the CPU thread
    governor uses it to adapt the thread count between decoding steps.
    """
    import torch
    from transformers import StoppingCriteria

    class StepTimer(StoppingCriteria):
        def __init__(self, sync_cuda: bool, on_step: Callable[[], None] | None = None) -> None:
            self.sync_cuda = sync_cuda
            self.on_step = on_step
            self.stamps: list[float] = []

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            # CUDA kernels run asynchronously: without a sync the stamp could precede the
            # token's computation (generate syncs every step anyway, so this costs ~nothing).
            if self.sync_cuda:
                torch.cuda.synchronize(input_ids.device)
            self.stamps.append(time.perf_counter())
            if self.on_step is not None:
                self.on_step()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StepTimer


#: Sampling keys of ``params.extra`` the per-call sampler applies itself (``generate``
#: would ignore them: it decodes greedily over the sampler's one-hot scores).
_SAMPLER_EXTRA_KEYS = ("top_k", "min_p")


#: Sampling warpers the per-call sampler does not implement; refused rather than ignored.
_UNSUPPORTED_SAMPLING_KEYS = ("typical_p", "epsilon_cutoff", "eta_cutoff", "top_h")


def call_generator_seed(params: GenerationParams) -> int:
    """The seed of a call's own random stream: ``params.seed``, or a fresh random one."""
    if params.seed is not None:
        return int(params.seed) & 0xFFFF_FFFF_FFFF_FFFF
    # No seed: not reproducible, by the caller's choice (rai run always sets one).
    return int.from_bytes(os.urandom(8), "little")


@functools.cache
def _row_sampler_class() -> type:
    """A ``LogitsProcessor`` that samples each row from its own generator.

    ``generate`` then runs with ``do_sample=False``: the processor returns scores that
    are ``-inf`` everywhere except the drawn token, which greedy decoding picks. The
    filtering uses ``transformers``' own warpers (same semantics as ``do_sample=True``);
    the draw is one uniform number in (0, 1] per row and step from the row's CPU
    generator, mapped through the row's cumulative distribution. Rows therefore never
    share random numbers, whatever the batch (and CPU and CUDA draw the same numbers).
    """
    import torch
    from transformers import LogitsProcessor
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    class RowSampler(LogitsProcessor):
        def __init__(
            self,
            seeds: Sequence[int],
            temperature: float,
            top_p: float,
            top_k: int | None,
            min_p: float | None,
        ) -> None:
            self.generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
            self.warpers: list[Any] = [TemperatureLogitsWarper(temperature)]
            if top_k:
                self.warpers.append(TopKLogitsWarper(top_k))
            if top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(top_p))
            if min_p:
                self.warpers.append(MinPLogitsWarper(min_p))

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if scores.shape[0] != len(self.generators):
                raise RuntimeError(
                    f"the sampler has {len(self.generators)} generators for {scores.shape[0]} rows"
                )
            scores = scores.float()
            for warper in self.warpers:
                scores = warper(input_ids, scores)
            probs = torch.softmax(scores, dim=-1)
            cdf = probs.cumsum(dim=-1)
            # 1 - U[0, 1) is in (0, 1]: the first index whose cdf reaches it has probability > 0.
            draws = torch.stack([1.0 - torch.rand((), generator=g) for g in self.generators])
            targets = (draws.to(cdf.device).unsqueeze(1) * cdf[:, -1:]).contiguous()
            chosen = torch.searchsorted(cdf.contiguous(), targets).clamp_(max=cdf.shape[-1] - 1)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, chosen, 0.0)

    return RowSampler


@dataclass
class _RowResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    hit_eos: bool
    first_at: float  # perf_counter of the batch's first decoding step
    end_at: float  # perf_counter of this sequence's last decoding step


@dataclass
class _Stats:
    generate_calls: int = 0  # model.generate invocations (warm-up excluded)
    batches: int = 0  # batches formed by the worker
    requests: int = 0  # calls answered successfully
    max_batch: int = 0  # largest batch formed
    oom_splits: int = 0  # batches halved after a CUDA out-of-memory error
    batch_sizes: list[int] = field(default_factory=list)  # last 1000 batch sizes, oldest first
    steps_by_threads: dict[int, int] = field(default_factory=dict)  # decoding steps per CPU thread count


def _as_provider_error(exc: BaseException) -> ProviderError:
    """Local failures are not retryable: the same batch would fail the same way."""
    if isinstance(exc, ProviderError):
        return exc
    error = ProviderError(
        f"hf-local generation failed: {type(exc).__name__}: {exc}", retryable=False, error_type="local_error"
    )
    error.__cause__ = exc
    return error


def render_prompt(loaded: _Loaded, request: ChatRequest) -> str:
    """The prompt text: the chat template when the tokenizer has one, else ``role: content`` lines."""
    if loaded.uses_chat_template:
        text = loaded.tokenizer.apply_chat_template(
            request.messages_as_dicts(), tokenize=False, add_generation_prompt=True
        )
        return str(text)
    lines = [f"{m.role}: {m.content}" for m in request.messages]
    return "\n".join([*lines, "assistant:"])


def generate_rows(
    loaded: _Loaded, stats: _Stats, requests: list[ChatRequest], params: GenerationParams, count: bool
) -> list[_RowResult | BaseException]:
    """Run one ``model.generate`` for ``requests`` (equal settings ``params``) on the model thread.

    Args:
        loaded: The model.
        stats: Counters to update (decoding steps per thread count; ``generate_calls`` if ``count``).
        requests: The calls, one row each.
        params: Their shared generation settings (seeds and stop strings stay per call).
        count: Count this ``generate`` (the warm-up is not counted).

    Returns:
        One row per request, in order; a request the model cannot take gets its error instead.
    """
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    tokenizer, model = loaded.tokenizer, loaded.model
    # The chat template already holds the special tokens (BOS...) the model expects.
    add_special = not loaded.uses_chat_template
    max_new = params.max_tokens or DEFAULT_MAX_NEW_TOKENS
    results: list[_RowResult | BaseException | None] = [None] * len(requests)
    prompts: list[str] = []
    slots: list[int] = []
    for i, request in enumerate(requests):
        # A call the model cannot take (a role the template refuses, a prompt too long
        # for the context) fails alone instead of failing its whole batch.
        try:
            prompt = render_prompt(loaded, request)
            length = len(tokenizer(prompt, add_special_tokens=add_special)["input_ids"])
        except Exception as exc:
            results[i] = exc
            continue
        if loaded.context is not None and length + max_new > loaded.context:
            results[i] = ProviderError(
                f"the prompt ({length} tokens) plus max_tokens ({max_new}) exceeds the model's "
                f"context of {loaded.context} tokens",
                retryable=False,
                error_type="bad_request",
            )
            continue
        prompts.append(prompt)
        slots.append(i)
    if prompts:
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special)
        input_ids = encoded["input_ids"].to(model.device)
        attention = encoded["attention_mask"].to(model.device)
        prompt_lens = [int(n) for n in attention.sum(dim=1).tolist()]
        kwargs = generation_kwargs(loaded, params)
        if not _is_greedy(params):
            sampler = row_sampler(params, [requests[i].params for i in slots])
            # Last, after any processors of params.extra: it draws from their scores.
            kwargs["logits_processor"] = LogitsProcessorList(
                [*(kwargs.get("logits_processor") or ()), sampler]
            )
        on_cpu = loaded.device == "cpu"
        governor = _cpu_governor() if loaded.adaptive_threads else None
        steps = stats.steps_by_threads

        def on_step() -> None:
            threads = governor.step() if governor is not None else torch.get_num_threads()
            steps[threads] = steps.get(threads, 0) + 1

        timer = _step_timer_class()(
            sync_cuda=loaded.device.startswith("cuda"), on_step=on_step if on_cpu else None
        )
        # One CPU generate at a time in the process (see _CPU_LOCK), whatever the model.
        with _CPU_LOCK if on_cpu else contextlib.nullcontext():
            if governor is not None:
                governor.begin()
            try:
                with torch.inference_mode():
                    output = model.generate(
                        input_ids=input_ids,
                        attention_mask=attention,
                        stopping_criteria=StoppingCriteriaList([timer]),
                        **kwargs,
                    )
            finally:
                if governor is not None:
                    governor.end()
        if count:
            stats.generate_calls += 1
        generated = output[:, input_ids.shape[1] :].tolist()
        stamps = timer.stamps or [time.perf_counter()]
        for slot, tokens, prompt_len in zip(slots, generated, prompt_lens, strict=True):
            n_text, n_completion, hit_eos = _scan_row(tokens, loaded.eos_ids)
            results[slot] = _RowResult(
                text=tokenizer.decode(tokens[:n_text], skip_special_tokens=True),
                prompt_tokens=prompt_len,
                completion_tokens=n_completion,
                hit_eos=hit_eos,
                first_at=stamps[0],
                end_at=stamps[min(max(n_completion - 1, 0), len(stamps) - 1)],
            )
    return [r if r is not None else RuntimeError("no result") for r in results]


def generation_kwargs(loaded: _Loaded, params: GenerationParams) -> dict[str, Any]:
    """``model.generate`` keyword arguments for a batch with settings ``params``."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_tokens or DEFAULT_MAX_NEW_TOKENS,
        "pad_token_id": loaded.pad_id,
        "eos_token_id": sorted(loaded.eos_ids) or None,
    }
    # Sampling too decodes "greedily": the per-call sampler (see row_sampler) has
    # already drawn the token and left it the only finite score. Its own keys are
    # not passed on (generate would warn that they are unused without do_sample).
    kwargs["do_sample"] = False
    kwargs.update(params.extra)
    if not _is_greedy(params):
        for key in _SAMPLER_EXTRA_KEYS:
            kwargs.pop(key, None)
        # params.extra must not turn transformers' own (batch-wide RNG) sampling back on.
        kwargs["do_sample"] = False
    return kwargs


def row_sampler(batch: GenerationParams, rows: Sequence[GenerationParams]) -> Any:
    """The per-call sampler of a sampled batch (settings shared, seeds per row).

    OpenAI semantics: the whole distribution unless ``top_p`` (or ``top_k``/``min_p``
    in ``params.extra``) narrows it; transformers' default ``top_k=50`` is not applied.
    """
    extra = dict(batch.extra)
    unsupported = sorted(k for k in _UNSUPPORTED_SAMPLING_KEYS if k in extra)
    if unsupported:
        raise ProviderError(
            f"hf-local sampling does not support params.extra {', '.join(unsupported)}; "
            f"use top_p, or top_k/min_p in params.extra",
            retryable=False,
            error_type="bad_request",
        )
    top_k = extra.get("top_k")
    min_p = extra.get("min_p")
    assert batch.temperature is not None  # not greedy
    return _row_sampler_class()(
        [call_generator_seed(p) for p in rows],
        temperature=float(batch.temperature),
        top_p=float(batch.top_p) if batch.top_p is not None else 1.0,
        top_k=int(top_k) if top_k else None,
        min_p=float(min_p) if min_p else None,
    )
