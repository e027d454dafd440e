"""Classifier interfaces: batch-first scorers that own their device and hold no thresholds.

Thresholds live in guardrail rails and in eval metrics, never here, so an eval measures
exactly the model the inline filter ships, and a guard's precision/recall can be audited
against the same scores.

* :class:`Classifier` maps texts to per-label probabilities (and, for PII, character
  spans). ``predict`` takes a whole batch; single-text use is a wrapper over it.
* :class:`Embedder` maps texts to L2-normalised vectors (similarity-based factuality,
  semantic rails).
* :class:`ClassifierSpec` is the YAML/pydantic description of a classifier that the
  pool (:mod:`rai_harness.classifiers.pool`) turns into one shared instance per process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Classifier",
    "ClassifierSpec",
    "Embedder",
    "LabelScores",
    "Span",
]


@dataclass(frozen=True, slots=True)
class Span:
    """A labelled character range of the input text (``text[start:end]``), e.g. a PII entity.

    The matched text itself is not stored, so findings can be logged or reported
    without copying personal data around; use the offsets on the original text.
    """

    start: int
    end: int
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class LabelScores:
    """Per-label probabilities in [0, 1] for one text, plus spans for span-level classifiers.

    For multi-label models (sigmoid heads, e.g. toxicity with ``toxic``, ``insult``...)
    labels are independent; for single-label models (softmax) they sum to 1.
    """

    scores: Mapping[str, float]
    spans: tuple[Span, ...] = ()
    #: Number of chunks the text was split into (1 when it fit the model's window).
    chunks: int = 1
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, label: str) -> float:
        return self.scores[label]

    def get(self, label: str, default: float = 0.0) -> float:
        """Score of ``label`` or ``default``."""
        return self.scores.get(label, default)

    @property
    def top(self) -> tuple[str, float]:
        """The highest-scoring label and its score."""
        label = max(self.scores, key=lambda k: self.scores[k])
        return label, self.scores[label]


@runtime_checkable
class Classifier(Protocol):
    """A batch-first text classifier."""

    #: Stable name used in reports ("minilm-toxicity", "detoxify:original"...).
    name: str
    #: The labels every result carries, in a fixed order.
    labels: tuple[str, ...]
    #: Whether results carry character spans (``LabelScores.spans``): a ``redact`` rail needs
    #: them. Declared (a class attribute), never guessed from the results.
    produces_spans: bool

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Score every text; the result has one entry per input, in input order."""
        ...

    def info(self) -> dict[str, Any]:
        """Model id, revision/hash, device, dtype and library versions (for the run record)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """A batch-first sentence embedder."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dim) with L2-normalised rows."""
        ...

    def info(self) -> dict[str, Any]:
        """Model id, revision/hash, device, dtype."""
        ...


class ClassifierSpec(BaseModel):
    """Which classifier to load, as written in eval configs and guard policies.

    ``backend`` picks the implementation (``minilm-toxicity``, ``hf``, ``detoxify``,
    ``presidio``, ``embedding``...); ``model`` its model id, local folder or variant;
    ``options`` backend-specific settings (entities for presidio, ``max_tokens_per_batch``
    for torch backends...). Two identical specs share one loaded instance in the pool.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field(..., description="Classifier backend name.")
    model: str | None = Field(None, description="Model id, local folder, or backend variant.")
    device: str = Field(
        "auto", description="'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'..."
    )
    options: dict[str, Any] = Field(default_factory=dict)

    def key(self) -> str:
        """Identity of the loaded model (what the pool caches on)."""
        import json

        return json.dumps(self.model_dump(mode="json"), sort_keys=True)
