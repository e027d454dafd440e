"""The ``hf-local`` provider: the runner's interface over the shared model (load, describe,
generate, close).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref
from typing import Any

from rai_harness.errors import ProviderError, RaiError
from rai_harness.providers.base import BaseProvider
from rai_harness.providers.hf_local.config import HFLocalConfig
from rai_harness.providers.hf_local.generation import (
    _batch_key,
    _is_greedy,
    _RowResult,
    _Stats,
    generate_rows,
    render_prompt,
)
from rai_harness.providers.hf_local.gguf import GGUFLoader, _version
from rai_harness.providers.hf_local.model import _Loaded
from rai_harness.providers.hf_local.shared import (
    _attach,
    _closed_error,
    _Pending,
    _release,
    _release_unclosed,
)
from rai_harness.types import ChatRequest, Generation, GenerationParams

log = logging.getLogger(__name__)


#: Unique batch keys for sampled calls that generate alone, and the size that makes such a
#: call a full batch by itself (larger than any ``max_batch_size``).
_ALONE = itertools.count()
_FILLS_A_BATCH = 1 << 30


class HFLocalProvider(BaseProvider):
    """Micro-batching in-process generator; see the package docstring (:mod:`rai_harness.providers.hf_local`).

    Use from one event loop at a time. ``build()`` is cheap: the model is loaded by
    :meth:`load` (or :meth:`warmup`, or lazily by the first call) on the model thread.
    Providers of the same model (see :func:`_share_key`) share one loaded model and one
    batch queue while they are open.

    Args:
        config: The provider's settings.
        gguf_loader: Replaces the GGUF loader (tests); only providers given the same
            loader share a model.
    """

    def __init__(self, config: HFLocalConfig, *, gguf_loader: GGUFLoader | None = None) -> None:
        self.config = config
        self._gguf_loader = gguf_loader
        self._shared, self._token = _attach(config, gguf_loader)
        # A provider dropped without aclose() must not keep the model loaded for good.
        self._finalizer = weakref.finalize(self, _release_unclosed, self._shared, self._token)
        self._finalizer.atexit = False
        self._closed = False

    # ------------------------------------------------------------------ public API

    @property
    def stats(self) -> dict[str, Any]:
        """Counters of the shared model: ``generate_calls``, ``batches``, ``requests``, ``max_batch``..."""
        s = self._shared.stats
        return {
            "generate_calls": s.generate_calls,
            "batches": s.batches,
            "requests": s.requests,
            "max_batch": s.max_batch,
            "oom_splits": s.oom_splits,
            "mean_batch": (sum(s.batch_sizes) / len(s.batch_sizes)) if s.batch_sizes else 0.0,
        }

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._shared.loaded is not None

    @property
    def _loaded(self) -> _Loaded | None:
        return self._shared.loaded

    @property
    def _stats(self) -> _Stats:
        return self._shared.stats

    async def load(self) -> None:
        """Load the model (converting a GGUF on first use) on the model thread; idempotent.

        Raises:
            ConfigError: a missing optional package (the embedded model's, say).
            ProviderError: any other load failure (``local_error``, not retryable); the
                failure is remembered, later calls fail the same way at once.
        """
        self._check_open()
        try:
            await self._shared.load()
        except RaiError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"could not load hf-local model {self.config.model!r}: {type(exc).__name__}: {exc}",
                retryable=False,
                error_type="local_error",
            ) from exc

    async def warmup(self) -> None:
        """Load the model and run one tiny generation, so the first measured call is not slower."""
        await self.load()
        loop = asyncio.get_running_loop()
        request = ChatRequest.from_prompt("warmup", "Hello", params=GenerationParams(max_tokens=2))
        await loop.run_in_executor(
            self._shared.executor, self._generate_batch, [request], request.params, False
        )

    def describe(self) -> dict[str, Any]:
        """What the run record should say about the model (path, source, hashes, device, versions)."""
        shared = self._shared
        out: dict[str, Any] = {
            "kind": self.config.kind,
            "model": self.config.model,
            "loaded": shared.loaded is not None,
            "revision": self.config.revision,
            "gguf_file": self.config.gguf_file,
            "device_requested": self.config.device,
            "dtype_requested": self.config.dtype,
            "max_batch_size": self.config.max_batch_size,
            "batch_wait_ms": self.config.batch_wait_ms,
            "versions": {"transformers": _version("transformers"), "torch": _version("torch")},
            "stats": self.stats,
            # Providers (in this process) using the same loaded model and batch queue.
            "shared_by": max(len(shared.users), 1),
        }
        if shared.loaded is not None:
            out.update(shared.loaded.info)
            out["device"] = shared.loaded.device
            out["dtype"] = shared.loaded.dtype
            if shared.loaded.device == "cpu":
                out["cpu_threads"] = {
                    "policy": "adaptive"
                    if shared.loaded.adaptive_threads
                    else f"fixed ({self.config.num_threads})",
                    "steps_by_threads": {str(k): v for k, v in sorted(shared.stats.steps_by_threads.items())},
                }
        return out

    async def generate(self, request: ChatRequest) -> Generation:
        """Queue one call for the next batch and wait for its completion.

        Raises:
            ProviderError: ``local_error`` (not retryable) when loading or generation failed.
        """
        self._check_open()
        key, size = _batch_key(request.params), 1
        if not self.config.batch_sampled and not _is_greedy(request.params):
            # A sampled call generates alone: in a batch, other rows' padding changes its logits
            # in the last bits, enough to flip a draw now and then (the embedded model's
            # toxicity continuations changed in 2 of 7 batch compositions), so a rerun that
            # batched differently would not repeat it. A key of its own, and a size that fills
            # a batch, so it does not wait out the gathering window for company it cannot have.
            key, size = f"{key}:alone:{next(_ALONE)}", _FILLS_A_BATCH
        try:
            future = self._shared.batcher.submit(
                _Pending(request, time.perf_counter(), self), key=key, size=size
            )
        except RuntimeError as exc:  # closed by another provider sharing the model, meanwhile
            raise _closed_error() from exc
        # Cancelling the caller cancels the future; the engine then skips or drops it.
        return await asyncio.wrap_future(future)

    async def aclose(self) -> None:
        """Fail this provider's calls still queued; the last provider of a model also frees it."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        shared = self._shared
        if _release(shared, self._token):
            await shared.aclose()
        else:
            shared.drop_calls_of(self)

    # ------------------------------------------------------------------ model thread

    def _check_open(self) -> None:
        if self._closed or self._shared.closed:
            raise ProviderError("the hf-local provider is closed", retryable=False, error_type="local_error")

    def _render(self, loaded: _Loaded, request: ChatRequest) -> str:
        return render_prompt(loaded, request)

    def _generate_sync(
        self, requests: list[ChatRequest], params: GenerationParams
    ) -> list[_RowResult | BaseException]:
        """Run one batch; on CUDA out-of-memory, halve it once and run both halves."""
        import torch

        oom: type[BaseException] = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
        try:
            return self._generate_batch(requests, params, True)
        except oom:
            if len(requests) < 2:
                raise
            self._stats.oom_splits += 1
            log.warning("hf-local: out of memory with a batch of %d; retrying in two halves", len(requests))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = (len(requests) + 1) // 2
            return [
                *self._generate_batch(requests[:half], params, True),
                *self._generate_batch(requests[half:], params, True),
            ]

    def _generate_batch(
        self, requests: list[ChatRequest], params: GenerationParams, count: bool
    ) -> list[_RowResult | BaseException]:
        """One ``model.generate`` on the model thread (an attribute, so tests can wrap it)."""
        loaded = self._loaded
        if loaded is None:
            raise RuntimeError("the model is not loaded")
        return generate_rows(loaded, self._stats, requests, params, count)
