"""Batch-first local classifiers and embedders that own their device.

* :mod:`~rai_harness.classifiers.base`: the interfaces (:class:`Classifier`,
  :class:`Embedder`, :class:`LabelScores`, :class:`ClassifierSpec`).
* :mod:`~rai_harness.classifiers.engine`: the one batching engine of every torch backend.
* Backends: :class:`HFClassifier` (any sequence-classification model),
  :class:`DetoxifyClassifier`, :class:`MiniLMEmbedder`, :class:`KeywordClassifier`; the
  ``minilm-toxicity`` and ``presidio`` backends load through the pool's registry.
* :class:`ClassifierPool` / :func:`default_pool`: each model once per process.
* :class:`MicroBatcher`: concurrent inline calls share batches.

Importing this package does not import torch or transformers; loading a model does.
"""

from __future__ import annotations

from rai_harness.classifiers.base import Classifier, ClassifierSpec, Embedder, LabelScores, Span
from rai_harness.classifiers.detoxify_backend import DetoxifyClassifier
from rai_harness.classifiers.embedding import MiniLMEmbedder
from rai_harness.classifiers.engine import BatchEngine, ChunkOutputs, aggregate_max, aggregate_mean
from rai_harness.classifiers.hf import HFClassifier, SequenceClassifier
from rai_harness.classifiers.keyword import KeywordClassifier
from rai_harness.classifiers.microbatch import MicroBatcher
from rai_harness.classifiers.pool import BACKENDS, ClassifierPool, default_pool, register_backend
from rai_harness.device import resolve_device, resolve_dtype

__all__ = [
    "BACKENDS",
    "BatchEngine",
    "ChunkOutputs",
    "Classifier",
    "ClassifierPool",
    "ClassifierSpec",
    "DetoxifyClassifier",
    "Embedder",
    "HFClassifier",
    "KeywordClassifier",
    "LabelScores",
    "MicroBatcher",
    "MiniLMEmbedder",
    "SequenceClassifier",
    "Span",
    "aggregate_max",
    "aggregate_mean",
    "default_pool",
    "register_backend",
    "resolve_device",
    "resolve_dtype",
]
