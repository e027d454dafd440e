"""Any Hugging Face sequence-classification model as a batch-first :class:`Classifier`.

:class:`SequenceClassifier` wraps an already-loaded model and tokenizer in the batching
engine (the Detoxify backend reuses it); :class:`HFClassifier` loads one by hub id or local
folder with ``AutoModelForSequenceClassification``. Probabilities come from a sigmoid for
multi-label models (``config.problem_type == "multi_label_classification"``, or the
``multi_label`` option) and a softmax otherwise. A text longer than the model window is
scored chunk by chunk and each label gets its maximum over the chunks (for a softmax model
the per-label maxima then need not sum to 1).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rai_harness.classifiers.base import ClassifierSpec, LabelScores
from rai_harness.classifiers.engine import DEFAULT_OVERLAP, BatchEngine, aggregate_max, prepare_model
from rai_harness.device import quiet_progress_bars, resolve_device, resolve_dtype

if TYPE_CHECKING:
    import torch

__all__ = [
    "HFClassifier",
    "SequenceClassifier",
    "dtype_kwarg",
    "from_spec",
    "library_versions",
    "model_window",
    "weights_fingerprint",
]

logger = logging.getLogger(__name__)

#: Model types whose learned position embeddings start after ``pad_token_id + 1`` slots
#: (RoBERTa's offset), so ``max_position_embeddings`` overstates the window by that much.
_PADDING_OFFSET_TYPES = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text", "ibert", "mpnet"}
)
#: Files whose bytes define a model's weights, hashed for :func:`weights_fingerprint`.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".pth")
#: tokenizer.model_max_length is this huge sentinel (int(1e30)) when unknown.
_UNKNOWN_LENGTH = 1_000_000


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a local classifier's numbers."""
    out: dict[str, str] = {}
    for dist in ("rai-harness", "torch", "transformers", "tokenizers", "detoxify", "sentence-transformers"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def dtype_kwarg(dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained``'s dtype argument: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    # Typed Any: transformers' stubs type every from_pretrained keyword, and the key is chosen at run time.
    from packaging.version import Version

    name = (
        "dtype" if Version(importlib.metadata.version("transformers")) >= Version("4.56") else "torch_dtype"
    )
    return {name: dtype}


def weights_fingerprint(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 over a local model's weight files (or of one file), ``None`` if none exist.

    Identifies a local model in the run record when there is no hub commit hash. Files are
    read in 1 MiB blocks, so memory stays flat for multi-GB checkpoints.
    """
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    else:
        return None
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() if root.is_dir() else b"")
        with file.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def model_window(config: Any, tokenizer: Any, default: int = 512) -> int:
    """The longest input the model takes, special tokens included, in tokens.

    The smaller of the tokenizer's ``model_max_length`` (when set) and the config's
    ``max_position_embeddings`` (less RoBERTa's padding offset); ``default`` if neither is
    known.
    """
    candidates: list[int] = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < _UNKNOWN_LENGTH:
        candidates.append(tok_max)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", None) in _PADDING_OFFSET_TYPES:
            positions -= int(getattr(config, "pad_token_id", 1) or 1) + 1
        candidates.append(positions)
    return min(candidates) if candidates else default


class SequenceClassifier:
    """A loaded sequence-classification model run through the :class:`BatchEngine`.

    Args:
        model: A ``*ForSequenceClassification`` module (its output has ``.logits`` or is a
            tuple whose first item is the logits). Moved to ``device`` in ``dtype`` here.
        tokenizer: Its tokenizer.
        labels: Label names, in logit order.
        name: Stable name for reports.
        multi_label: Sigmoid per label (independent labels) instead of a softmax.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... or a ``torch.device``.
        dtype: ``"auto"`` (bf16/fp16 on CUDA, fp32 on CPU), a name or a ``torch.dtype``.
        max_length: Model window in tokens; ``None`` reads it from config and tokenizer.
        max_tokens_per_batch: Token budget per batch (see :class:`BatchEngine`).
        max_batch_size: Most chunks per batch.
        overlap: Tokens shared by neighbouring chunks of a long text.
        info: Extra facts for :meth:`info` (model id, revision...).
    """

    #: Document-level label scores only: ``redact`` rails cannot use it.
    produces_spans = False

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        labels: Sequence[str],
        name: str,
        multi_label: bool,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        max_length: int | None = None,
        max_tokens_per_batch: int | None = None,
        max_batch_size: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.labels = tuple(labels)
        self.multi_label = multi_label
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, dtype)
        self.model = prepare_model(model, self.device, self.dtype)
        self.tokenizer = tokenizer
        num_labels = getattr(getattr(model, "config", None), "num_labels", len(self.labels))
        if num_labels != len(self.labels):
            raise ValueError(f"{len(self.labels)} label names for a model with {num_labels} outputs")
        self.engine = BatchEngine(
            tokenizer,
            self._forward,
            max_length=max_length or model_window(getattr(model, "config", None), tokenizer),
            device=self.device,
            dtype=self.dtype,
            max_tokens_per_batch=max_tokens_per_batch,
            max_batch_size=max_batch_size,
            overlap=overlap,
        )
        self._info = dict(info or {})
        # Hashing a multi-GB checkpoint takes seconds: done on the first info() call only.
        self._weights_path: str | None = self._info.pop("weights_path", None)

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(**batch)
        logits = out.logits if hasattr(out, "logits") else out[0]
        # Probabilities in fp32: a bf16 sigmoid would round 0.999 and 0.996 together.
        logits = logits.float()
        return logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Score every text; one :class:`LabelScores` per input, in input order.

        Args:
            texts: Any strings; long ones are chunked and scored by their worst chunk.

        Returns:
            Per-label probabilities (max over chunks) and the chunk count of each text.
        """
        if not texts:
            return []
        outputs = self.engine.run(texts)
        scores = aggregate_max(outputs)
        counts = outputs.chunks_per_text()
        return [
            LabelScores(
                scores={label: float(v) for label, v in zip(self.labels, row, strict=True)},
                chunks=int(n),
            )
            for row, n in zip(scores, counts, strict=True)
        ]

    def info(self) -> dict[str, Any]:
        """Model id, revision or weights hash, labels, device, dtype, window and versions."""
        if self._weights_path is not None:
            self._info["weights_sha256"] = weights_fingerprint(self._weights_path)
            self._weights_path = None
        return {
            "name": self.name,
            **self._info,
            "labels": list(self.labels),
            "activation": "sigmoid" if self.multi_label else "softmax",
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_length": self.engine.max_length,
            "overlap": self.engine.overlap,
            "max_tokens_per_batch": self.engine.max_tokens_per_batch,
            "versions": library_versions(),
        }


class HFClassifier(SequenceClassifier):
    """Load an ``AutoModelForSequenceClassification`` by hub id or local folder.

    Args:
        model: Hub id (``"unitary/toxic-bert"``) or path to a saved model folder.
        revision: Hub branch, tag or commit to pin (recorded in :meth:`info`).
        trust_remote_code: Allow the repository's own Python code to run. Off by default:
            a classifier needs no custom code, and running a repository's code is running
            someone else's program.
        multi_label: Force sigmoid (``True``) or softmax (``False``); ``None`` follows
            ``config.problem_type``.
        name: Report name; defaults to ``hf:<model>``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``.
        max_length: Override the model window, tokens.
        max_tokens_per_batch: Token budget per batch.
        max_batch_size: Most chunks per batch.
        overlap: Tokens shared by neighbouring chunks of a long text.
    """

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        trust_remote_code: bool = False,
        multi_label: bool | None = None,
        name: str | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        max_length: int | None = None,
        max_tokens_per_batch: int | None = None,
        max_batch_size: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        resolved_device = resolve_device(device)
        resolved_dtype = resolve_dtype(resolved_device, dtype)
        with quiet_progress_bars():
            hf_model = AutoModelForSequenceClassification.from_pretrained(
                model, revision=revision, trust_remote_code=trust_remote_code, **dtype_kwarg(resolved_dtype)
            )
            tokenizer = AutoTokenizer.from_pretrained(
                model, revision=revision, trust_remote_code=trust_remote_code
            )
        config = hf_model.config
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            # Decoder-style classifiers (GPT-2...) have no pad token; they find the last real
            # token through config.pad_token_id, so padding with EOS on the right is safe.
            tokenizer.pad_token = tokenizer.eos_token
            if config.pad_token_id is None:
                config.pad_token_id = tokenizer.eos_token_id
        labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        if multi_label is None:
            multi_label = config.problem_type == "multi_label_classification"
        commit = getattr(config, "_commit_hash", None)
        info: dict[str, Any] = {"backend": "hf", "model": model, "revision": revision, "commit": commit}
        if commit is None and Path(model).exists():
            info["weights_path"] = model
        super().__init__(
            hf_model,
            tokenizer,
            labels=labels,
            name=name or f"hf:{model}",
            multi_label=multi_label,
            device=resolved_device,
            dtype=resolved_dtype,
            max_length=max_length,
            max_tokens_per_batch=max_tokens_per_batch,
            max_batch_size=max_batch_size,
            overlap=overlap,
            info=info,
        )


#: Options a spec may carry for the torch backends (besides backend-specific ones).
ENGINE_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "dtype": str,
    "max_length": int,
    "max_tokens_per_batch": int,
    "max_batch_size": int,
    "overlap": int,
    "name": str,
}


def from_spec(spec: ClassifierSpec) -> HFClassifier:
    """Build an :class:`HFClassifier` from a spec (``backend: hf``, ``model: <id or folder>``).

    Options: ``revision``, ``trust_remote_code``, ``multi_label``, ``dtype``, ``max_length``,
    ``max_tokens_per_batch``, ``max_batch_size``, ``overlap``, ``name``.
    """
    from rai_harness.classifiers.pool import check_options
    from rai_harness.errors import ConfigError

    if not spec.model:
        raise ConfigError("the hf backend needs `model`: a hub id or a local folder", key_path="model")
    options = check_options(
        spec,
        {**ENGINE_OPTIONS, "revision": str, "trust_remote_code": bool, "multi_label": bool},
    )
    return HFClassifier(spec.model, device=spec.device, **options)
