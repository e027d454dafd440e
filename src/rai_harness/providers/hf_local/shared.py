"""One loaded model per process, shared by providers, and its batch queue.

Micro-batching
    The runner calls :meth:`HFLocalProvider.generate` concurrently (``concurrency``
    calls in flight, by default ``max_batch_size``). Calls go through the project's one
    micro-batching engine (:class:`~rai_harness.batching.MicroBatchEngine`), keyed by
    their generation settings (stop strings excepted: they are applied per call after
    decoding): the oldest call waits at most ``batch_wait_ms`` for up to
    ``max_batch_size`` calls with the same settings, and one ``model.generate`` runs
    them on a single dedicated thread that owns the model and the device. Prompts are left
    padded. A cancelled call (runner timeout) is skipped if it has not started, or
    its result dropped if its batch is running; the other calls are unaffected.

Sharing
    Providers of the same model in one process (same ``model``, ``gguf_file``,
    ``revision``, ``device``, ``dtype``, ``trust_remote_code`` and ``cache_dir``; a run
    listing the model twice, once guarded, say) share one loaded model, one model thread
    and one queue while they are open: their calls are batched together, and the model
    is freed when the last of them closes. The batch limit is the sum of their
    ``max_batch_size`` (on a CPU, 16 + 8 calls in two batches took 1.5x as long as the
    24 in one), the gathering window the longest of theirs, ``num_threads`` the first
    one's. Whatever the models, only one ``generate`` runs on the CPU at a time in the
    process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rai_harness.batching import MicroBatchEngine
from rai_harness.errors import ProviderError
from rai_harness.providers.hf_local.config import HFLocalConfig
from rai_harness.providers.hf_local.generation import _apply_stop, _as_provider_error, _Stats
from rai_harness.providers.hf_local.gguf import EMBEDDED_MODEL_ALIAS, GGUFLoader
from rai_harness.providers.hf_local.governor import _name_model_thread
from rai_harness.providers.hf_local.model import _Loaded, load_model, release_device_memory
from rai_harness.types import ChatRequest, Generation, Usage, stable_hash

if TYPE_CHECKING:
    from rai_harness.providers.hf_local.provider import HFLocalProvider

log = logging.getLogger(__name__)


#: Seconds aclose() waits for the model thread to finish its batch and free the model.
_CLOSE_WAIT_S = 30.0


@dataclass(eq=False)
class _Pending:
    request: ChatRequest
    submitted: float  # perf_counter when generate() was called
    provider: HFLocalProvider  # the provider the call came through


def _share_key(config: HFLocalConfig, gguf_loader: GGUFLoader | None) -> tuple[str, Any]:
    """Providers with equal keys share one loaded model (and one batch queue) per process.

    The key is what decides the weights and where they run: the model (a local folder by
    its resolved path), GGUF file, revision, device, dtype, remote code and cache folder.
    Batching, threads and runner settings do not count.
    """
    model = config.model.strip()
    if config.is_embedded:
        model = EMBEDDED_MODEL_ALIAS
    else:
        local = Path(model).expanduser()
        if local.is_dir():
            model = str(local.resolve())
    identity = {
        "model": model,
        "gguf_file": config.gguf_file,
        "revision": config.revision,
        "device": config.device,
        "dtype": config.dtype,
        "trust_remote_code": config.trust_remote_code,
        "cache_dir": str(Path(config.cache_dir).expanduser().resolve()) if config.cache_dir else None,
    }
    return stable_hash(identity), gguf_loader


_SHARED: dict[tuple[str, Any], _SharedModel] = {}


_SHARED_LOCK = threading.Lock()


def _attach(config: HFLocalConfig, gguf_loader: GGUFLoader | None) -> tuple[_SharedModel, int]:
    """The shared model for ``config`` (created if none is open) and a token for the new user."""
    key = _share_key(config, gguf_loader)
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SHARED[key] = _SharedModel(key, config, gguf_loader)
        token = shared.next_token
        shared.next_token += 1
        shared.users[token] = config
        shared.retune()
        return shared, token


def _release(shared: _SharedModel, token: int) -> bool:
    """Remove a user; True when it was the last one (the model is then no longer shared)."""
    with _SHARED_LOCK:
        shared.users.pop(token, None)
        if shared.users:
            shared.retune()
            return False
        if _SHARED.get(shared.key) is shared:
            del _SHARED[shared.key]
        return True


def _release_unclosed(shared: _SharedModel, token: int) -> None:
    """A provider was garbage-collected without ``aclose()``: free the model if it was the last user."""
    if _release(shared, token):
        shared.close_soon()


class _SharedModel:
    """One loaded model, its model thread and its batch queue, shared by providers.

    Owned by the providers attached to it (see :func:`_attach`); the last one to close
    stops the worker and frees the model. Use from one event loop at a time.
    """

    def __init__(self, key: tuple[str, Any], config: HFLocalConfig, gguf_loader: GGUFLoader | None) -> None:
        self.key = key
        self.config = config  # the first user's settings load the model (same identity for all)
        self.gguf_loader = gguf_loader
        self.users: dict[int, HFLocalConfig] = {}
        self.next_token = 0
        # One thread owns the model and the device: torch releases the GIL inside
        # kernels, so the event loop stays responsive while a batch runs.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rai-hf-local", initializer=_name_model_thread
        )
        self.load_future: concurrent.futures.Future[_Loaded] | None = None
        self._load_lock = threading.Lock()  # the event loop and the batching thread both start the load
        self.loaded: _Loaded | None = None
        # Calls wait for a batch here; the engine's worker thread hands each batch to the
        # model thread. The first call does not go alone at once: the runner submits a
        # burst, and the window lets it form one batch.
        self.batcher: MicroBatchEngine[_Pending, Generation] = MicroBatchEngine(
            self._run_batch,
            max_wait_ms=config.batch_wait_ms,
            max_batch_size=config.max_batch_size,
            lone_goes_at_once=False,
            name=f"hf-local batcher for {config.model}",
        )
        self.closed = False
        self.stats = _Stats()

    # ------------------------------------------------------------------ batching settings

    def batch_limit(self) -> int:
        """Largest batch: the sum of the sharing providers' ``max_batch_size`` (each keeps its share).

        On a CPU one batch of 24 costs about as much as 16 (each decoding step reads all
        the weights once), so two providers' calls are worth one batch, not two.
        """
        sizes = [c.max_batch_size for c in list(self.users.values())]
        return sum(sizes) if sizes else self.config.max_batch_size

    def batch_window_s(self) -> float:
        """Gathering window: the longest ``batch_wait_ms`` of the providers sharing the model."""
        waits = [c.batch_wait_ms for c in list(self.users.values())]
        return max(waits, default=self.config.batch_wait_ms) / 1000.0

    def retune(self) -> None:
        """Give the batcher the limit and window of the providers now sharing the model."""
        self.batcher.configure(max_wait_ms=self.batch_window_s() * 1000.0, max_batch_size=self.batch_limit())

    # ------------------------------------------------------------------ loading

    def start_load(self) -> concurrent.futures.Future[_Loaded]:
        """The load on the model thread, started by the first caller (any thread)."""
        with self._load_lock:
            if self.load_future is None:
                self.load_future = self.executor.submit(self._load_sync)
            return self.load_future

    async def load(self) -> None:
        # shield: a caller's timeout must not cancel a load that other calls await.
        await asyncio.shield(asyncio.wrap_future(self.start_load()))

    def _load_sync(self) -> _Loaded:
        """Load on the model thread (the executor's one thread)."""
        self.loaded = load_model(self.config, self.gguf_loader)
        return self.loaded

    def _unload_sync(self) -> None:
        loaded, self.loaded = self.loaded, None
        if loaded is None:
            return
        device = loaded.device
        del loaded  # on CPU, reference counting frees the weights right here
        release_device_memory(device)

    # ------------------------------------------------------------------ batches (batching thread)

    def _run_batch(self, batch: list[_Pending]) -> list[Generation | BaseException]:
        """The engine's batch function: one ``model.generate`` on the model thread for ``batch``.

        Every call of a batch has the same generation settings (the engine's key), so the
        first call's settings serve them all; failures come back per call, as errors.
        """
        stats = self.stats
        stats.batches += 1
        stats.max_batch = max(stats.max_batch, len(batch))
        stats.batch_sizes = [*stats.batch_sizes[-999:], len(batch)]
        try:
            self.start_load().result()
        except Exception as exc:
            return [_as_provider_error(exc)] * len(batch)
        params = batch[0].request.params
        try:
            rows = self.executor.submit(
                batch[0].provider._generate_sync, [p.request for p in batch], params
            ).result()
        except Exception as exc:
            log.warning("hf-local: a batch of %d failed: %s: %s", len(batch), type(exc).__name__, exc)
            return [_as_provider_error(exc)] * len(batch)
        name = self.loaded.name if self.loaded is not None else self.config.model
        out: list[Generation | BaseException] = []
        for item, row in zip(batch, rows, strict=True):
            if isinstance(row, BaseException):
                out.append(_as_provider_error(row))
                continue
            text, stopped = _apply_stop(row.text, item.request.params.stop)
            out.append(
                Generation(
                    text=text,
                    usage=Usage(prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens),
                    latency_s=row.end_at - item.submitted,
                    ttft_s=row.first_at - item.submitted,
                    finish_reason="stop" if (row.hit_eos or stopped) else "length",
                    model=name,
                    streamed=False,
                )
            )
            stats.requests += 1
        return out

    # ------------------------------------------------------------------ closing

    def drop_calls_of(self, provider: HFLocalProvider) -> None:
        """Fail the queued and running calls of one provider (it is closing; others go on)."""
        self.batcher.fail(lambda p: p.provider is provider, _closed_error())

    async def aclose(self) -> None:
        """Fail calls still queued or running, stop the batcher, and free the model (and GPU memory)."""
        if self.closed:
            return
        self.closed = True
        self.batcher.close(0, error=_closed_error())
        unload = self.executor.submit(self._unload_sync)
        self.executor.shutdown(wait=False)
        try:
            # The thread finishes a running batch first; do not wait forever for it.
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(unload)), _CLOSE_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("hf-local: the model thread is still busy; the model is freed when it finishes")

    def close_soon(self) -> None:
        """Close without an event loop (the last user was garbage-collected unclosed)."""
        if self.closed:
            return
        self.closed = True
        self.batcher.close(0, error=_closed_error())
        with contextlib.suppress(RuntimeError):  # interpreter shutting down
            self.executor.submit(self._unload_sync)
        self.executor.shutdown(wait=False)


def _closed_error() -> ProviderError:
    return ProviderError("the hf-local provider was closed", retryable=False, error_type="local_error")
