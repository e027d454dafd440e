"""Pick the torch device and dtype a local model runs on: the project's one resolver.

Used by every local classifier and by the ``hf-local`` provider, so "auto" means the same
everywhere.

``"auto"`` means: the first CUDA device when one is visible, else the CPU. On CUDA the
default dtype is bfloat16 where the card supports it (Ampere and later: same exponent
range as fp32, so no overflow in logits), else float16; on the CPU it is float32, since
CPU half-precision matmuls are slow or unsupported on most machines and the models we
run there are small.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rai_harness.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["quiet_progress_bars", "resolve_device", "resolve_dtype"]

logger = logging.getLogger(__name__)

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn a device spec into a :class:`torch.device`.

    Args:
        spec: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``, or a ``torch.device``.

    Returns:
        The device.

    Raises:
        ConfigError: The spec is not a device name, or names CUDA on a machine without it.
    """
    import torch

    if isinstance(spec, torch.device):
        return spec
    name = spec.strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(
            f"unknown device {spec!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'", key_path="device"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {spec!r} asked for, but CUDA is not available here; use device: auto or cpu",
            key_path="device",
        )
    return device


def resolve_dtype(device: torch.device, dtype: str | torch.dtype = "auto") -> torch.dtype:
    """The compute dtype for ``device``.

    Args:
        device: Where the model runs.
        dtype: ``"auto"`` (bf16 on CUDA when supported, else fp16; fp32 elsewhere), a name
            (``"float32"``, ``"bf16"``, ``"fp16"``...) or a ``torch.dtype``.

    Returns:
        The dtype.

    Raises:
        ConfigError: The name is not a floating dtype we support.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype.strip().lower()
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in _DTYPES:
        raise ConfigError(
            f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16", key_path="options.dtype"
        )
    resolved: torch.dtype = getattr(torch, _DTYPES[name])
    if device.type == "cpu" and resolved is not torch.float32:
        logger.warning("running %s on the CPU: usually slower than float32 and less accurate", resolved)
    return resolved


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide ``transformers``' tqdm bars (weights loading, GGUF conversion) while a local model loads.

    Every local model (classifiers, embedders, ``hf-local``) loads through this, so a guard built
    in an application, ``rai guard check`` or a run's progress display is not interleaved with a
    "Loading weights" bar on stderr. The switch is process-wide, so it is restored only if it was on.
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
