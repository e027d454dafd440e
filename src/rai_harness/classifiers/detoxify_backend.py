"""Detoxify's toxicity models (original, unbiased, multilingual...) through our batching engine.

``Detoxify.predict`` pads a whole list into one batch and truncates every text at the
model window; here only Detoxify's loader is used (it knows the checkpoint format: a dict
with ``state_dict`` and ``config.arch.args`` naming the transformers class, tokenizer and
base model), and the model and tokenizer it builds run through :class:`BatchEngine`:
sorted token-budget batches, long texts chunked and scored by their worst chunk. Outputs
are sigmoids, as in Detoxify, with its standardised class names (``toxicity``,
``severe_toxicity``, ``identity_attack``...).

Offline use: Detoxify downloads its released checkpoints and then the base model's config
and tokenizer from the hub. Without network, pass ``checkpoint`` (a local ``.ckpt``) whose
``config.arch.args.model_type`` is a local folder holding the base model's config and
tokenizer, or ``huggingface_config_path`` naming such a folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.classifiers.engine import DEFAULT_OVERLAP
from rai_harness.classifiers.hf import ENGINE_OPTIONS, SequenceClassifier
from rai_harness.device import resolve_device, resolve_dtype
from rai_harness.errors import ConfigError, MissingDependencyError, did_you_mean

if TYPE_CHECKING:
    import torch

__all__ = ["MODEL_TYPES", "DetoxifyClassifier", "from_spec"]

#: Detoxify's released models (see ``detoxify.detoxify.MODEL_URLS``).
MODEL_TYPES = ("original", "unbiased", "multilingual", "original-small", "unbiased-small")


class DetoxifyClassifier(SequenceClassifier):
    """A Detoxify model, released or a local checkpoint, batched by our engine.

    Args:
        model_type: One of :data:`MODEL_TYPES` (ignored when ``checkpoint`` is given).
        checkpoint: Path to a local Detoxify checkpoint (``.ckpt``).
        huggingface_config_path: Local folder with the base model's config and tokenizer
            files, for offline loading of a released checkpoint.
        name: Report name; defaults to ``detoxify:<model_type>`` or ``detoxify:<file stem>``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``.
        max_length: Override the model window, tokens.
        max_tokens_per_batch: Token budget per batch.
        max_batch_size: Most chunks per batch.
        overlap: Tokens shared by neighbouring chunks of a long text.

    Raises:
        ConfigError: Unknown model type or missing checkpoint file.
        MissingDependencyError: ``detoxify`` is not installed.
    """

    def __init__(
        self,
        model_type: str = "original",
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        huggingface_config_path: str | None = None,
        name: str | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        max_length: int | None = None,
        max_tokens_per_batch: int | None = None,
        max_batch_size: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
    ) -> None:
        try:
            from detoxify import Detoxify
        except ModuleNotFoundError as exc:
            raise MissingDependencyError("detoxify", feature="the detoxify classifier backend") from exc

        if checkpoint is None and model_type not in MODEL_TYPES:
            raise ConfigError(
                f"unknown Detoxify model '{model_type}'{did_you_mean(model_type, MODEL_TYPES)} (known: {', '.join(MODEL_TYPES)}, or a "
                "path to a local .ckpt)",
                key_path="model",
            )
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise ConfigError(f"Detoxify checkpoint {checkpoint} does not exist", key_path="model")
        resolved_device = resolve_device(device)
        # Detoxify loads the state dict onto `device` directly; we cast after loading.
        detox = Detoxify(
            model_type=model_type,
            checkpoint=None if checkpoint is None else str(checkpoint),
            device=str(resolved_device),
            huggingface_config_path=huggingface_config_path,
        )
        info: dict[str, Any] = {"backend": "detoxify"}
        if checkpoint is None:
            from detoxify.detoxify import MODEL_URLS

            info.update(model=model_type, checkpoint_url=MODEL_URLS[model_type])
            default_name = f"detoxify:{model_type}"
        else:
            # Hashed on the first info() call (as weights_sha256), not at load.
            info.update(model=str(checkpoint), weights_path=str(checkpoint))
            default_name = f"detoxify:{Path(checkpoint).stem}"
        super().__init__(
            detox.model,
            detox.tokenizer,
            labels=list(detox.class_names),
            name=name or default_name,
            multi_label=True,
            device=resolved_device,
            dtype=resolve_dtype(resolved_device, dtype),
            max_length=max_length,
            max_tokens_per_batch=max_tokens_per_batch,
            max_batch_size=max_batch_size,
            overlap=overlap,
            info=info,
        )


def from_spec(spec: ClassifierSpec) -> DetoxifyClassifier:
    """Build a :class:`DetoxifyClassifier` (``backend: detoxify``).

    ``model`` is a Detoxify model type (default ``original``) or a path to a local
    ``.ckpt``. Options: ``checkpoint``, ``huggingface_config_path``, ``dtype``,
    ``max_length``, ``max_tokens_per_batch``, ``max_batch_size``, ``overlap``, ``name``.
    """
    from rai_harness.classifiers.pool import check_options

    options = check_options(spec, {**ENGINE_OPTIONS, "checkpoint": str, "huggingface_config_path": str})
    model = spec.model or "original"
    if "checkpoint" not in options and (model.endswith((".ckpt", ".pt", ".pth")) or os.sep in model):
        options["checkpoint"] = model
    return DetoxifyClassifier(model, device=spec.device, **options)
