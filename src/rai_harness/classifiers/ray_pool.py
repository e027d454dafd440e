"""Classifiers on Ray Data: the same models, scoring large text sets across a Ray cluster.

:class:`RayDataPool` is a drop-in :class:`~rai_harness.classifiers.pool.ClassifierPool` for
batch scoring (suite scoring of a run with ``runner.engine: ray``, ``rai guard audit --engine
ray``). Its classifiers are proxies: ``predict(texts)`` (and ``embed`` for embedders) sends the
texts through ``ray.data ... map_batches`` to a pool of Ray Data actors, each of which loads
the real classifier **once** from its own process-wide pool and runs its usual batch engine
(length-sorted, token-budget batches) on every block it receives. The results come back in
input order, pickled whole (scores, spans, chunk counts): the classifier in the actor is the
very one a local run uses, so a text gets the same scores as in a local run up to float
rounding of batch composition (padding): identical for exact backends (keyword, presidio),
within 1e-5 absolute for the transformer heads (see ``tests/test_ray_engine.py``).

Texts are sorted by length before they are cut into Ray blocks, so each actor's batches are
of similar lengths (the local engine's own trick); ``num_gpus`` per actor is used when the
cluster has GPUs. Small inputs (fewer than ``min_texts``) are scored in this process: Ray
Data's start-up costs seconds. ``ray`` is imported lazily.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rai_harness.classifiers.base import ClassifierSpec, LabelScores
from rai_harness.classifiers.pool import ClassifierPool, Loaded, default_pool

__all__ = ["RayDataClassifier", "RayDataEmbedder", "RayDataPool"]

log = logging.getLogger(__name__)

#: Texts per Ray block handed to one actor call (the classifier re-batches inside it by tokens).
DEFAULT_BLOCK = 256


class _BatchScorer:
    """A Ray Data actor: loads the classifier once, then scores every block it is given."""

    def __init__(self, spec_json: str, method: str) -> None:
        spec = ClassifierSpec.model_validate_json(spec_json)
        # One typed instance per method: an "embed" actor loads an embedder, a "predict" one a classifier.
        self._embedder = default_pool().embedder(spec) if method == "embed" else None
        self._classifier = None if method == "embed" else default_pool().classifier(spec)
        self._info = json.dumps(default_pool().info_of(spec), default=str)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        if self._embedder is not None:
            vectors = self._embedder.embed(texts)
            blobs = [pickle.dumps(np.asarray(v)) for v in vectors]
        else:
            assert self._classifier is not None
            results = self._classifier.predict(texts)
            if len(results) != len(texts):
                raise RuntimeError(f"the classifier returned {len(results)} results for {len(texts)} texts")
            blobs = [pickle.dumps(r) for r in results]
        return {
            "i": np.asarray(batch["i"]),
            "out": np.asarray(blobs, dtype=object),
            "info": np.asarray([self._info] * len(texts), dtype=object),
        }


class _RayDataProxy:
    """What both proxies share: the spec, the actor settings and the Ray Data round trip.

    Args:
        spec: The model to load in each actor.
        actors: Ray Data actors (each loads the model once).
        block: Texts per block handed to an actor.
        min_texts: Below this many texts, run the model loaded in this process.
        connect: Called before Ray is used (joins or starts the cluster).
    """

    def __init__(
        self,
        spec: ClassifierSpec,
        *,
        actors: int,
        block: int = DEFAULT_BLOCK,
        min_texts: int = 0,
        connect: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.name = f"{spec.backend}:{spec.model}" if spec.model else spec.backend
        self._actors = actors
        self._block = block
        self._min_texts = min_texts
        self._connect = connect
        self._info: dict[str, Any] = {}
        self._calls = {"ray-data": 0, "in-process": 0}

    def _local(self) -> Any:
        """The same model loaded in this process (small inputs score here)."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """The model's ``info()`` (weights, hashes, versions) and how its calls ran.

        Inputs below ``min_texts`` score in this process, so a run may never reach Ray Data:
        its record must still name the model that scored it, and not claim Ray Data.
        """
        model = self._info or dict(self._local().info())
        on_ray = self._calls["ray-data"] > 0
        return {
            **model,
            "engine": "ray-data" if on_ray else "in-process",
            "actors": self._actors if on_ray else 0,
            "calls": dict(self._calls),
        }

    def _run(self, texts: Sequence[str], method: str) -> list[Any]:
        if not texts:
            return []
        self._calls["ray-data"] += 1
        if self._connect is not None:
            self._connect()
        import ray

        # Ray Data's own progress bars and per-operator logs are console noise in a library call.
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        # One GPU per actor when the cluster has one for every actor, else CPU actors.
        num_gpus = 1.0 if gpus >= self._actors else None
        # Longest first, so each block holds texts of similar length and the longest start first.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        ds = ray.data.from_items([{"i": i, "text": texts[i]} for i in order])
        scored = ds.map_batches(
            _BatchScorer,
            fn_constructor_kwargs={"spec_json": self.spec.model_dump_json(), "method": method},
            batch_size=self._block,
            batch_format="numpy",
            concurrency=self._actors,
            num_gpus=num_gpus,
        )
        out: list[Any] = [None] * len(texts)
        for row in scored.iter_rows():
            out[int(row["i"])] = pickle.loads(row["out"])  # our own actors wrote these bytes
            if not self._info:
                self._info = json.loads(row["info"])
        missing = sum(1 for r in out if r is None)
        if missing:
            raise RuntimeError(f"Ray Data returned no result for {missing} of {len(texts)} texts")
        return out


class RayDataClassifier(_RayDataProxy):
    """A classifier whose ``predict`` runs on Ray Data actors (see :class:`_RayDataProxy`)."""

    def __init__(self, spec: ClassifierSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self._labels: tuple[str, ...] | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """The classifier's labels (from the first scored text, else from a local load)."""
        if self._labels is None:
            self._labels = tuple(default_pool().classifier(self.spec).labels)
        return self._labels

    @property
    def produces_spans(self) -> bool:
        """Whether results carry spans: a property of the backend, read from a local instance."""
        return default_pool().classifier(self.spec).produces_spans

    def _local(self) -> Any:
        return default_pool().classifier(self.spec)

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Score every text on the cluster; one result per input, in input order."""
        if len(texts) < self._min_texts:
            self._calls["in-process"] += 1
            return list(self._local().predict(texts))
        results: list[LabelScores] = self._run(texts, "predict")
        if results and self._labels is None:
            self._labels = tuple(results[0].scores)
        return results


class RayDataEmbedder(_RayDataProxy):
    """An embedder whose ``embed`` runs on Ray Data actors (see :class:`_RayDataProxy`)."""

    @property
    def dim(self) -> int:
        """Vector size, read from a local instance."""
        return default_pool().embedder(self.spec).dim

    def _local(self) -> Any:
        return default_pool().embedder(self.spec)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed every text on the cluster: shape (len(texts), dim)."""
        if len(texts) < self._min_texts:
            self._calls["in-process"] += 1
            return self._local().embed(texts)
        rows = self._run(texts, "embed")
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)


class RayDataPool(ClassifierPool):
    """A classifier pool whose classifiers score on Ray Data (see the module docstring).

    Args:
        actors: Ray Data actors per classifier.
        block: Texts per block handed to an actor.
        min_texts: Inputs smaller than this are scored in this process.
        connect: Called before Ray is used (joins or starts the cluster).
    """

    def __init__(
        self,
        *,
        actors: int,
        block: int = DEFAULT_BLOCK,
        min_texts: int = 0,
        connect: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(loader=self._proxy)
        self._n = actors
        self._block = block
        self._min_texts = min_texts
        self._connect = connect

    def _proxy(self, spec: ClassifierSpec) -> Loaded:
        # The proxy's kind is the model's: a local instance says which (the driver needs its
        # labels or dim anyway), so the typed accessors check a classifier as a classifier.
        kind = RayDataEmbedder if default_pool().embeds(spec) else RayDataClassifier
        # (mypy reads the protocols' ``labels``/``dim`` attributes as writable; the proxies' are properties.)
        return kind(  # type: ignore[return-value]
            spec, actors=self._n, block=self._block, min_texts=self._min_texts, connect=self._connect
        )
