"""An ONNX Runtime copy of a torch encoder: the CPU fast path of ``minilm-toxicity``.

For one short prompt the encoder forward *is* the inline guard's latency, and on the CPU
most of a 6-layer MiniLM forward over ~10 tokens is per-operator overhead of eager torch,
not arithmetic. ONNX Runtime runs the same graph with fused kernels (attention, GELU,
layer norm) and far less dispatch: on the project's 2-core box the forward of one short
prompt costs about half of torch's (``benchmarks/guard_inline.py``).

How it stays the same model:

* The graph is exported from the very module torch runs (the overlay of the fine-tuned
  layers on the bundled encoder) *and* the pooling that follows it, with ``torch.onnx``;
  nothing is downloaded and no other weights are involved.
* It is exported once per set of weights and cached on disk (``$RAI_HARNESS_CACHE/onnx``,
  else ``~/.cache/rai-harness/onnx``) under a key made of the SHA-256 of every weight, the
  pooling and the torch/transformers versions (which decide the traced graph). A folder
  that cannot be written is no error: the graph is then kept in memory for the process.
* Before it is used, :func:`build_ort_encoder` runs a probe batch (texts of different
  lengths, so padding and the attention mask are exercised) through both and refuses the
  graph if any pooled value differs by more than :data:`MAX_ABS_DIFF`; the caller then keeps
  torch. Scores of the two paths agree to ~1e-6 (see the ``guard_inline`` benchmark and
  ``tests/test_onnx_encoder.py``).

``onnxruntime`` is optional: without it (or with ``options: {runtime: torch}``) the
classifier runs on torch as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rai_harness.errors import ConfigError, MissingDependencyError
from rai_harness.types import cache_root

if TYPE_CHECKING:
    import torch

__all__ = [
    "KEEP_GRAPHS",
    "MAX_ABS_DIFF",
    "ONNX_FORMAT",
    "OrtEncoder",
    "build_ort_encoder",
    "default_onnx_cache_dir",
    "encoder_fingerprint",
    "export_encoder",
    "ort_available",
]

logger = logging.getLogger(__name__)

#: Bumped when the exported graph changes meaning (inputs, outputs, pooling): part of the cache key.
ONNX_FORMAT = "rai-harness-pooled-encoder/1"
#: Largest difference between a pooled value of torch and of ONNX Runtime accepted at load.
#: Pooled MiniLM values are of order 0.1-1; fp32 kernels that fuse differently differ by ~1e-6.
MAX_ABS_DIFF = 1e-4
#: ONNX opset of the export: 17 has LayerNormalization, which ORT fuses best.
_OPSET = 17
#: Probe texts for the load-time check: different lengths, so one batch has padding.
_PROBE_TEXTS = (
    "ok",
    "How do I reset my router without losing my settings?",
    "Thanks!",
)
#: Graphs kept in the cache folder (most recently used first); each is ~90 MB for MiniLM, and
#: every retrained head has its own.
KEEP_GRAPHS = 4
# One export at a time per process (two classifiers over the same weights share the file).
_EXPORT_LOCK = threading.Lock()


def ort_available() -> bool:
    """Whether ``onnxruntime`` can be imported (found without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def default_onnx_cache_dir() -> Path:
    """``$RAI_HARNESS_CACHE/onnx``, else ``$XDG_CACHE_HOME/rai-harness/onnx`` (``~/.cache``)."""
    return cache_root() / "onnx"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def encoder_fingerprint(model: torch.nn.Module, pooling: str) -> str:
    """SHA-256 of everything the exported graph depends on.

    Every parameter and buffer (names, shapes, bytes), the pooling, the export format and
    the torch and transformers versions (their code is what gets traced). About 0.2 s for
    MiniLM's 90 MB.
    """
    import torch

    digest = hashlib.sha256()
    for part in (ONNX_FORMAT, pooling, str(_OPSET), _version("torch"), _version("transformers")):
        digest.update(part.encode())
        digest.update(b"\0")
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().to("cpu")
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.contiguous().view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def _pooled_module(model: torch.nn.Module, pooling: str) -> torch.nn.Module:
    """The module exported: encoder forward then pooling, ``(input_ids, attention_mask) -> (batch, dim)``."""
    import torch

    from rai_harness.classifiers.embedding import pool_hidden_states

    class PooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return pool_hidden_states(hidden, attention_mask, pooling)

    return PooledEncoder().eval()


def _probe_batch(tokenizer: Any) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(_PROBE_TEXTS), padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def export_encoder(model: torch.nn.Module, pooling: str, tokenizer: Any) -> bytes:
    """Export ``model`` followed by ``pooling`` to an ONNX graph (bytes).

    Traced on a padded probe batch, so the attention mask is a real input of the graph
    (traced on one unpadded text, ``transformers`` may drop an all-ones mask and the
    graph would then ignore padding). Batch size and length are dynamic.
    """
    import torch

    wrapper = _pooled_module(model, pooling)
    batch = _probe_batch(tokenizer)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter warns about every shape-dependent Python branch it traces
        # (all of them constant for an encoder) and about its own deprecation.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (batch["input_ids"], batch["attention_mask"]),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
            input_names=["input_ids", "attention_mask"],
            output_names=["pooled"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length"},
                "pooled": {0: "batch"},
            },
            opset_version=_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def _cached_graph(
    model: torch.nn.Module, pooling: str, tokenizer: Any, cache_dir: Path | None
) -> bytes | Path:
    """The cached graph file for these weights, exporting it first if needed (bytes if unwritable)."""
    key = encoder_fingerprint(model, pooling)
    folder = default_onnx_cache_dir() if cache_dir is None else Path(cache_dir)
    path = folder / f"encoder-{key[:24]}.onnx"
    with _EXPORT_LOCK:
        if path.is_file():
            with contextlib.suppress(OSError):
                os.utime(path)  # most recently used: the last one pruning removes
            return path
        logger.info("exporting the encoder to ONNX once for these weights (a few seconds): %s", path)
        graph = export_encoder(model, pooling, tokenizer)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Written beside the target and renamed: a reader never sees half a file, and two
            # processes exporting at once both end with one whole file.
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(graph)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("cannot cache the ONNX graph in %s (%s); keeping it in memory", folder, exc)
            return graph
        _prune(folder, keep=path)
        return path


def _prune(folder: Path, keep: Path) -> None:
    """Delete all but the :data:`KEEP_GRAPHS` most recently used graphs (never ``keep``)."""
    graphs = sorted(folder.glob("encoder-*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [g for g in graphs if g != keep][KEEP_GRAPHS - 1 :]:
        # A process that is loading it right now already has it open or falls back to torch.
        with contextlib.suppress(OSError):
            old.unlink()


class OrtEncoder:
    """An ONNX Runtime session with the engine's forward signature.

    Called with the batch the :class:`~rai_harness.classifiers.engine.BatchEngine` builds
    (``input_ids`` and ``attention_mask``, int64 CPU tensors) and returns the pooled
    ``(batch, dim)`` float32 tensor, as the torch forward does.

    Args:
        graph: Path of an ONNX file, or its bytes.
        threads: ORT intra-op threads.
        source: Where the graph came from, for :meth:`info`.
    """

    def __init__(self, graph: bytes | Path, *, threads: int, source: str = "memory") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # ORT's threads busy-wait between operators by default. On a CPU shared with the
        # PII rail (which runs at the same time) and with other processes, spinning steals
        # the very cores the other work needs: measured slower under load, equal when idle.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        self.session = ort.InferenceSession(
            str(graph) if isinstance(graph, Path) else graph, options, providers=["CPUExecutionProvider"]
        )
        self.threads = threads
        self.source = source
        self.version = ort.__version__

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        feeds = {
            "input_ids": batch["input_ids"].numpy(),
            "attention_mask": batch["attention_mask"].numpy(),
        }
        (pooled,) = self.session.run(["pooled"], feeds)
        return torch.from_numpy(np.ascontiguousarray(pooled, dtype=np.float32))

    def info(self) -> dict[str, Any]:
        """Runtime, version, threads and graph source, for a run record."""
        return {
            "runtime": "onnxruntime",
            "version": self.version,
            "threads": self.threads,
            "graph": self.source,
        }


def _max_abs_difference(
    torch_forward: Any, ort_forward: OrtEncoder, batches: Sequence[dict[str, torch.Tensor]]
) -> float:
    """Largest absolute difference of the two forwards' outputs over ``batches``."""
    import torch

    worst = 0.0
    with torch.inference_mode():
        for batch in batches:
            expected = torch_forward(batch).float().numpy()
            got = ort_forward(batch).numpy()
            if expected.shape != got.shape:
                return float("inf")
            worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def build_ort_encoder(
    model: torch.nn.Module,
    pooling: str,
    tokenizer: Any,
    *,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    required: bool = False,
) -> OrtEncoder | None:
    """An :class:`OrtEncoder` equal to ``model`` + ``pooling``, or ``None`` to stay on torch.

    Args:
        model: The torch encoder (on the CPU, fp32).
        pooling: ``mean``, ``cls`` or ``max``.
        tokenizer: Its tokenizer (builds the probe batch).
        threads: ORT intra-op threads; ``None``: torch's intra-op thread count, so one
            setting (``torch.set_num_threads``, ``OMP_NUM_THREADS``) governs both paths.
        cache_dir: Folder of exported graphs; ``None``: :func:`default_onnx_cache_dir`.
        required: Raise instead of returning ``None`` when ONNX Runtime is missing or
            the exported graph does not reproduce ``model``.

    Raises:
        MissingDependencyError: ``required`` and onnxruntime (or onnx export support) is missing.
        ConfigError: ``required`` and the graph does not match the torch model.
    """
    import torch

    if not ort_available():
        if required:
            raise MissingDependencyError("onnxruntime", extra="onnx", feature="runtime: onnx")
        return None
    if threads is None:
        threads = torch.get_num_threads()
    try:
        graph = _cached_graph(model, pooling, tokenizer, Path(cache_dir) if cache_dir else None)
        encoder = OrtEncoder(
            graph, threads=threads, source=str(graph) if isinstance(graph, Path) else "memory"
        )
    except Exception as exc:  # export or session failure: torch still works
        if required:
            raise ConfigError(
                f"cannot run the encoder on ONNX Runtime: {type(exc).__name__}: {exc}",
                key_path="options.runtime",
            ) from exc
        logger.warning("ONNX Runtime path unavailable (%s: %s); using torch", type(exc).__name__, exc)
        return None
    torch_forward = _pooled_module(model, pooling)
    probe = _probe_batch(tokenizer)
    single = {k: v[1:2, : int(probe["attention_mask"][1].sum())] for k, v in probe.items()}
    diff = _max_abs_difference(
        lambda b: torch_forward(b["input_ids"], b["attention_mask"]), encoder, [probe, single]
    )
    if not diff <= MAX_ABS_DIFF:
        message = f"the ONNX graph differs from the torch encoder by {diff:.2e} (> {MAX_ABS_DIFF:.0e})"
        if required:
            raise ConfigError(message, key_path="options.runtime")
        logger.warning("%s; using torch", message)
        return None
    logger.debug("ONNX Runtime encoder ready (max abs diff %.2e on the probe)", diff)
    return encoder
