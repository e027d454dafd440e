"""Loading an ``hf-local`` model on the model thread: its source (embedded GGUF, Hub id, local
folder, a GGUF inside either), device and dtype, and the tokenizer set up for left-padded batches.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rai_harness.device import quiet_progress_bars
from rai_harness.device import resolve_device as _resolve_device
from rai_harness.device import resolve_dtype as _resolve_dtype
from rai_harness.providers.hf_local.config import HFLocalConfig
from rai_harness.providers.hf_local.gguf import (
    _EMBEDDED_PACKAGE,
    EMBEDDED_GGUF_FILE,
    GGUFLoader,
    _version,
    _version_tuple,
    convert_gguf,
    default_cache_dir,
    find_embedded_gguf,
)

log = logging.getLogger(__name__)


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


#: Loads (and GGUF conversions) run one at a time in the process.
_LOAD_LOCK = threading.Lock()


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


def _resolve_source(
    cfg: HFLocalConfig, gguf_loader: GGUFLoader | None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Where ``from_pretrained`` reads from: ``(path_or_id, load kwargs, info for describe)``."""
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
        folder, manifest, hit = convert_gguf(gguf_path, cache_root, loader=gguf_loader)
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


def load_model(cfg: HFLocalConfig, gguf_loader: GGUFLoader | None = None) -> _Loaded:
    """Load the model ``cfg`` names (converting a GGUF on first use) on the calling thread.

    Run it on the model thread: the model then belongs to that thread and its device.
    """
    # transformers builds models under process-wide switches (meta device, default
    # dtype): two loads at once in two model threads corrupt each other.
    with _LOAD_LOCK:
        return _load_locked(cfg, gguf_loader)


def _load_locked(cfg: HFLocalConfig, gguf_loader: GGUFLoader | None) -> _Loaded:
    started = time.perf_counter()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.num_threads is not None:
        import torch

        # Process-wide in torch; the model is the process's main CPU consumer when asked for.
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    # transformers < 4.56 names the argument torch_dtype.
    dtype_arg = "dtype" if _version_tuple(_version("transformers")) >= (4, 56) else "torch_dtype"
    with quiet_progress_bars():
        path, kwargs, info = _resolve_source(cfg, gguf_loader)
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
    log.info(
        "hf-local: loaded %s (%s) on %s as %s in %.1f s",
        cfg.model,
        info.get("source"),
        loaded.device,
        loaded.dtype,
        info["load_s"],
    )
    return loaded


def release_device_memory(device: str) -> None:
    """After the last reference to a model on ``device`` is gone, give its GPU memory back."""
    if device.startswith("cuda"):
        import gc

        import torch

        # Reference cycles inside transformers modules would keep GPU memory until
        # the next collection, and the caching allocator keeps freed blocks reserved.
        gc.collect()
        torch.cuda.empty_cache()
