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

Opt-in int8 (``precision="int8"``, the classifier's ``runtime: onnx-int8``):
:func:`quantize_rowwise_int8` rewrites the checked fp32 graph so that every matrix product
with constant weights runs on int8 (MLAS's VNNI/AMX kernels), with **per-row** activation
scales. ``onnxruntime.quantization.quantize_dynamic`` is not used because it quantises each
activation tensor with *one* scale for the whole batch: a text's score then depends on the
other texts it is batched with (measured: pooled values moved by up to 0.11 between a text
alone and the same text in a batch of 64), and a guard's verdict must not depend on load.
With one scale per token row, every row is computed from its own values only, so the
batched and unbatched paths give the same scores (to ~1e-7), as in fp32. The int8 graph is
cached beside the fp32 one and checked at load against torch (cosine of the pooled vectors,
:data:`MIN_INT8_COSINE`) and for that batch independence; how far its scores and verdicts
move from fp32 is measured by ``benchmarks/onnx_agreement.py``.

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
    "INT8_FORMAT",
    "KEEP_GRAPHS",
    "MAX_ABS_DIFF",
    "MIN_INT8_COSINE",
    "ONNX_FORMAT",
    "PRECISIONS",
    "OrtEncoder",
    "build_ort_encoder",
    "default_onnx_cache_dir",
    "encoder_fingerprint",
    "export_encoder",
    "ort_available",
    "quantize_rowwise_int8",
]

logger = logging.getLogger(__name__)

#: Bumped when the exported graph changes meaning (inputs, outputs, pooling): part of the cache key.
ONNX_FORMAT = "rai-harness-pooled-encoder/1"
#: Largest difference between a pooled value of torch and of ONNX Runtime accepted at load.
#: Pooled MiniLM values are of order 0.1-1; fp32 kernels that fuse differently differ by ~1e-6.
MAX_ABS_DIFF = 1e-4
#: Bumped when :func:`quantize_rowwise_int8` changes what it writes: part of the int8 graph's name.
INT8_FORMAT = "rai-harness-rowwise-int8/1"
#: Precisions of the ONNX Runtime graph: ``fp32`` (the export itself) and ``int8`` (rewritten).
PRECISIONS = ("fp32", "int8")
#: Smallest cosine similarity between a pooled vector of torch (fp32) and of the int8 graph
#: accepted at load. A broken rewrite (wrong scales, a transposed weight) gives ~0-0.9; int8
#: noise on MiniLM gives > 0.999. The accuracy of the scores is measured, not assumed:
#: ``benchmarks/onnx_agreement.py``.
MIN_INT8_COSINE = 0.99
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
    model: torch.nn.Module,
    pooling: str,
    tokenizer: Any,
    cache_dir: Path | None,
    precision: str = "fp32",
) -> bytes | Path:
    """The cached graph file for these weights and precision, built first if needed (bytes if unwritable).

    The int8 graph is derived from the fp32 one (which is exported and cached on the way);
    its name adds :data:`INT8_FORMAT`, so a change of the rewrite never reuses an old file.
    """
    key = encoder_fingerprint(model, pooling)
    folder = default_onnx_cache_dir() if cache_dir is None else Path(cache_dir)
    if precision == "fp32":
        path = folder / f"encoder-{key[:24]}.onnx"
    else:
        variant = hashlib.sha256(f"{key}\0{INT8_FORMAT}".encode()).hexdigest()
        path = folder / f"encoder-{key[:24]}-int8-{variant[:12]}.onnx"
    if precision == "int8":
        source = _cached_graph(model, pooling, tokenizer, cache_dir, "fp32")
    with _EXPORT_LOCK:
        if path.is_file():
            with contextlib.suppress(OSError):
                os.utime(path)  # most recently used: the last one pruning removes
            return path
        if precision == "int8":
            logger.info("quantising the ONNX encoder to int8 once for these weights: %s", path)
            graph = quantize_rowwise_int8(source.read_bytes() if isinstance(source, Path) else source)
        else:
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


def quantize_rowwise_int8(graph: bytes) -> bytes:
    """Rewrite an fp32 ONNX graph so its weight matrix products run on int8, row by row.

    Every ``MatMul`` whose second input is a constant 2-D float weight ``W`` (``K x N``)
    becomes:

    * weights: symmetric int8 per output column (``scale_n = max|W[:, n]| / 127``), stored
      in the graph (a quarter of the fp32 bytes);
    * activations: the input is viewed as rows of ``K`` values (one per token), and each
      row gets its own symmetric scale ``max|x_row| / 127``, applied with ``QuantizeLinear``
      along the row axis (uint8 with zero point 128: the u8 x s8 product is the one MLAS
      runs on VNNI and AMX);
    * ``MatMulIntegerToFloat`` (an ONNX Runtime contrib op) multiplies in int8 with int32
      accumulation and scales back to fp32 by the row's and the column's scale.

    A row's result depends only on that row, so padding and batch neighbours cannot change
    a text's output (unlike per-tensor dynamic quantisation; see the module docstring).
    Products of two activations (attention scores), layer norms, GELU and softmax stay fp32.
    Inputs that feed several products (query, key and value) are quantised once.

    Args:
        graph: The serialised fp32 model (e.g. :func:`export_encoder`'s output).

    Returns:
        The serialised rewritten model.

    Raises:
        ValueError: The graph has no matrix product with constant weights to quantise.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(graph)
    g = model.graph
    initializers = {t.name: t for t in g.initializer}
    added: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        added.append(numpy_helper.from_array(value, name))
        return name

    eps = const("rowq/eps", np.array(1e-12, dtype=np.float32))
    q_max = const("rowq/127", np.array(127.0, dtype=np.float32))
    zero_u8 = const("rowq/zp", np.array(128, dtype=np.uint8))
    all_but_last = (
        const("rowq/0", np.array([0], dtype=np.int64)),
        const("rowq/-1", np.array([-1], dtype=np.int64)),
    )
    weights: dict[str, tuple[str, str]] = {}  # weight name -> (int8 weight, column scales)
    # (input, K) -> (its uint8 rows, their scales as a column, its leading shape)
    rows: dict[tuple[str, int], tuple[str, str, str]] = {}
    nodes: list[Any] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), _OPSET)

    def row_max(tag: str) -> Any:
        # ReduceMax took its axes as an attribute up to opset 17 and as an input since 18.
        if opset >= 18:
            axis = const(f"{tag}/axis", np.array([1], dtype=np.int64))
            return helper.make_node("ReduceMax", [f"{tag}/abs", axis], [f"{tag}/amax"], keepdims=0)
        return helper.make_node("ReduceMax", [f"{tag}/abs"], [f"{tag}/amax"], axes=[1], keepdims=0)

    for node in g.node:
        init = initializers.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        w = numpy_helper.to_array(init) if init is not None else None
        if w is None or w.ndim != 2 or w.dtype != np.float32:
            nodes.append(node)
            continue
        k, n = w.shape
        if node.input[1] not in weights:
            scale = np.maximum(np.abs(w).max(axis=0), np.float32(1e-12)) / np.float32(127.0)
            q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            tag = f"rowq/w{len(weights)}"
            weights[node.input[1]] = (const(f"{tag}/q", q), const(f"{tag}/scale", scale.astype(np.float32)))
        w_q, w_scale = weights[node.input[1]]
        x = node.input[0]
        if (x, k) not in rows:
            tag = f"rowq/x{len(rows)}"
            shape_2d = const(f"{tag}/shape", np.array([-1, k], dtype=np.int64))
            nodes += [
                helper.make_node("Reshape", [x, shape_2d], [f"{tag}/rows"]),
                helper.make_node("Abs", [f"{tag}/rows"], [f"{tag}/abs"]),
                row_max(tag),
                # An all-zero row gets a tiny scale instead of a division by zero; it quantises to 0.
                helper.make_node("Max", [f"{tag}/amax", eps], [f"{tag}/amax_pos"]),
                helper.make_node("Div", [f"{tag}/amax_pos", q_max], [f"{tag}/scale"]),
                helper.make_node("Shape", [f"{tag}/scale"], [f"{tag}/n_rows"]),
                helper.make_node("Expand", [zero_u8, f"{tag}/n_rows"], [f"{tag}/zp"]),
                helper.make_node(
                    "QuantizeLinear", [f"{tag}/rows", f"{tag}/scale", f"{tag}/zp"], [f"{tag}/q"], axis=0
                ),
                helper.make_node("Unsqueeze", [f"{tag}/scale", all_but_last[1]], [f"{tag}/scale_col"]),
                helper.make_node("Shape", [x], [f"{tag}/in_shape"]),
                helper.make_node("Slice", [f"{tag}/in_shape", *all_but_last], [f"{tag}/lead"]),
            ]
            rows[(x, k)] = (f"{tag}/q", f"{tag}/scale_col", f"{tag}/lead")
        x_q, x_scale, lead = rows[(x, k)]
        out = f"rowq/y{len(nodes)}"
        nodes += [
            helper.make_node(
                "MatMulIntegerToFloat",
                [x_q, w_q, x_scale, w_scale, zero_u8],
                [f"{out}/rows"],
                domain="com.microsoft",
            ),
            helper.make_node(
                "Concat", [lead, const(f"{out}/n", np.array([n], dtype=np.int64))], [f"{out}/shape"], axis=0
            ),
            helper.make_node("Reshape", [f"{out}/rows", f"{out}/shape"], [node.output[0]], name=node.name),
        ]
    if not weights:
        raise ValueError("no MatMul with constant 2-D float weights in the graph: nothing to quantise")
    used = {name for node in nodes for name in node.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(kept + [t for t in added if t.name in used])
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model.SerializeToString()


class OrtEncoder:
    """An ONNX Runtime session with the engine's forward signature.

    Called with the batch the :class:`~rai_harness.classifiers.engine.BatchEngine` builds
    (``input_ids`` and ``attention_mask``, int64 CPU tensors) and returns the pooled
    ``(batch, dim)`` float32 tensor, as the torch forward does.

    Args:
        graph: Path of an ONNX file, or its bytes.
        threads: ORT intra-op threads.
        source: Where the graph came from, for :meth:`info`.
        precision: ``fp32`` or ``int8`` (what the graph computes in), for :meth:`info`.
    """

    def __init__(
        self, graph: bytes | Path, *, threads: int, source: str = "memory", precision: str = "fp32"
    ) -> None:
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
        self.precision = precision
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
        """Runtime, version, precision, threads and graph source, for a run record."""
        return {
            "runtime": "onnxruntime",
            "version": self.version,
            "precision": self.precision,
            "threads": self.threads,
            "graph": self.source,
        }


def _pooled_pairs(
    torch_forward: Any, ort_forward: OrtEncoder, batches: Sequence[dict[str, torch.Tensor]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(torch, ORT)`` pooled outputs of each batch."""
    import torch

    with torch.inference_mode():
        return [(torch_forward(b).float().numpy(), ort_forward(b).numpy()) for b in batches]


def _max_abs_difference(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Largest absolute difference over ``pairs`` (``inf`` when shapes differ)."""
    worst = 0.0
    for expected, got in pairs:
        if expected.shape != got.shape:
            return float("inf")
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def _min_cosine(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Smallest row-wise cosine similarity over ``pairs`` (``-inf`` when shapes differ)."""
    worst = 1.0
    for expected, got in pairs:
        if expected.shape != got.shape:
            return float("-inf")
        dot = (expected * got).sum(axis=1)
        norms = np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1)
        worst = min(worst, float((dot / np.maximum(norms, 1e-12)).min()))
    return worst


def _check_graph(encoder: OrtEncoder, torch_forward: Any, tokenizer: Any, precision: str) -> str | None:
    """Why the graph does not reproduce the torch model, or ``None`` when it does.

    fp32: every pooled value within :data:`MAX_ABS_DIFF` of torch's. int8: every pooled
    vector at cosine >= :data:`MIN_INT8_COSINE` of torch's. Both: a text alone and the same
    text inside a padded batch give the same output to :data:`MAX_ABS_DIFF` (a verdict must
    not depend on what the text was batched with).
    """
    probe = _probe_batch(tokenizer)
    length = int(probe["attention_mask"][1].sum())
    single = {k: v[1:2, :length] for k, v in probe.items()}
    pairs = _pooled_pairs(
        lambda b: torch_forward(b["input_ids"], b["attention_mask"]), encoder, [probe, single]
    )
    # Checked first: it is a property of the graph's structure (per-row work only), whatever
    # the precision. Per-tensor activation quantisation fails it.
    alone, in_batch = pairs[1][1], pairs[0][1][1:2]
    drift = _max_abs_difference([(in_batch, alone)])
    if not drift <= MAX_ABS_DIFF:
        return f"the ONNX graph gives a text alone and in a padded batch outputs {drift:.2e} apart"
    if precision == "fp32":
        diff = _max_abs_difference(pairs)
        if not diff <= MAX_ABS_DIFF:
            return f"the ONNX graph differs from the torch encoder by {diff:.2e} (> {MAX_ABS_DIFF:.0e})"
    else:
        cosine = _min_cosine(pairs)
        if not cosine >= MIN_INT8_COSINE:
            return (
                f"the int8 ONNX graph's pooled vectors are at cosine {cosine:.4f} of the torch "
                f"encoder's (< {MIN_INT8_COSINE})"
            )
    return None


def build_ort_encoder(
    model: torch.nn.Module,
    pooling: str,
    tokenizer: Any,
    *,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    required: bool = False,
    precision: str = "fp32",
) -> OrtEncoder | None:
    """An :class:`OrtEncoder` equal to ``model`` + ``pooling``, or ``None`` to stay on torch.

    The fp32 export is always checked against torch first (every pooled value within
    :data:`MAX_ABS_DIFF`); an int8 graph is derived from that checked export and must then
    pass its own check (see :func:`_check_graph`).

    Args:
        model: The torch encoder (on the CPU, fp32).
        pooling: ``mean``, ``cls`` or ``max``.
        tokenizer: Its tokenizer (builds the probe batch).
        threads: ORT intra-op threads; ``None``: torch's intra-op thread count, so one
            setting (``torch.set_num_threads``, ``OMP_NUM_THREADS``) governs both paths.
        cache_dir: Folder of exported graphs; ``None``: :func:`default_onnx_cache_dir`.
        required: Raise instead of returning ``None`` when ONNX Runtime is missing or
            the exported graph does not reproduce ``model``.
        precision: ``fp32`` (the same scores as torch to ~1e-6) or ``int8``
            (:func:`quantize_rowwise_int8`: faster, scores measurably different).

    Raises:
        ValueError: Unknown ``precision``.
        MissingDependencyError: ``required`` and onnxruntime (or onnx export support) is missing.
        ConfigError: ``required`` and the graph does not match the torch model.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not ort_available():
        if required:
            raise MissingDependencyError("onnxruntime", extra="onnx", feature="runtime: onnx")
        return None
    if threads is None:
        threads = torch.get_num_threads()
    folder = Path(cache_dir) if cache_dir else None
    torch_forward = _pooled_module(model, pooling)
    encoder: OrtEncoder | None = None
    for step in ("fp32", "int8") if precision == "int8" else ("fp32",):
        try:
            graph = _cached_graph(model, pooling, tokenizer, folder, step)
            encoder = OrtEncoder(
                graph,
                threads=threads,
                source=str(graph) if isinstance(graph, Path) else "memory",
                precision=step,
            )
        except Exception as exc:  # export, rewrite or session failure: torch still works
            if required:
                raise ConfigError(
                    f"cannot run the encoder on ONNX Runtime ({step}): {type(exc).__name__}: {exc}",
                    key_path="options.runtime",
                ) from exc
            logger.warning("ONNX Runtime path unavailable (%s: %s); using torch", type(exc).__name__, exc)
            return None
        problem = _check_graph(encoder, torch_forward, tokenizer, step)
        if problem is not None:
            if required:
                raise ConfigError(problem, key_path="options.runtime")
            logger.warning("%s; using torch", problem)
            return None
    logger.debug("ONNX Runtime encoder ready (%s, checked against torch on the probe)", precision)
    return encoder
