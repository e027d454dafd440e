"""Guard policy files: which classifiers, which rails, which thresholds and actions.

A policy is YAML validated with pydantic (``extra="forbid"``); every problem is a
:class:`~rai_harness.errors.ConfigError` naming the file, the key path
(``output[1].threshold``) and the fix, with "did you mean" for misspelt keys and
classifier names. The format (see ``guardrails/README.md``)::

    name: default
    description: balanced policy
    max_chars: 20000        # longer texts: over_max_chars decides (block, or head_tail)
    over_max_chars: block
    classifiers:            # named classifier specs, shared by rails, loaded once by the pool
      toxicity: {backend: minilm-toxicity}
      pii: {backend: presidio, options: {entities: [EMAIL_ADDRESS, PHONE_NUMBER]}}
    input:
      - {name: toxic-input, classifier: toxicity, labels: [toxic], threshold: 0.8,
         action: block, on_error: block, timeout_ms: 2000}
      - {name: pii-input, classifier: pii, threshold: 0.5, action: redact, on_error: allow}
    output:
      - {name: toxic-output, classifier: toxicity, threshold: 0.5, action: block}
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from rai_harness.classifiers.base import Classifier, ClassifierSpec, Embedder
from rai_harness.errors import ConfigError
from rai_harness.guardrails.guard import DEFAULT_MAX_CHARS, Guard
from rai_harness.guardrails.rails import ClassifierRunner, Rail
from rai_harness.validation import format_validation_error, read_yaml_file

__all__ = [
    "ClassifierSource",
    "GuardPolicy",
    "RailSpec",
    "build_guard",
    "load_policy",
    "parse_policy",
]

#: Backends known to return no spans: a ``redact`` rail on them is rejected at load time.
#: (Backends not listed are checked when built, through a classifier's ``produces_spans``.)
NON_SPAN_BACKENDS = frozenset({"minilm-toxicity", "hf", "detoxify", "embedding"})


class ClassifierSource(Protocol):
    """Where a guard gets its classifiers (the process-wide pool, or a test double)."""

    def get(self, spec: ClassifierSpec) -> Classifier | Embedder:
        """Return the (shared) classifier described by ``spec``."""
        ...


class RailSpec(BaseModel):
    """One rail as written in a policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, description="Name shown in verdicts and reports.")
    classifier: str = Field(..., min_length=1, description="A key of the policy's `classifiers`.")
    labels: list[str] | None = Field(
        None, description="Labels `threshold` applies to (default: all the classifier's labels)."
    )
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="One threshold for `labels`.")
    thresholds: dict[str, float] | None = Field(None, description="Per-label thresholds instead.")
    action: Literal["block", "redact", "flag"] = Field(..., description="What to do when triggered.")
    on_error: Literal["block", "allow"] = Field(
        "block", description="Classifier failed or timed out: block (fail closed) or allow (fail open)."
    )
    timeout_ms: float = Field(1000.0, gt=0, le=600_000, description="Longest wait for the classifier.")
    description: str | None = None

    @model_validator(mode="after")
    def _one_threshold_form(self) -> RailSpec:
        if (self.threshold is None) == (self.thresholds is None):
            raise ValueError("give exactly one of `threshold` (with optional `labels`) or `thresholds`")
        if self.thresholds is not None:
            if self.labels is not None:
                raise ValueError("`labels` goes with `threshold`; with `thresholds` the keys are the labels")
            for label, value in self.thresholds.items():
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"threshold for '{label}' must be within [0, 1], got {value}")
        return self


class GuardPolicy(BaseModel):
    """A whole policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("guard", min_length=1)
    description: str | None = None
    max_chars: int | None = Field(
        DEFAULT_MAX_CHARS,
        ge=2,
        description="Longest text checked whole, characters (null: no limit, unbounded work per text).",
    )
    over_max_chars: Literal["block", "head_tail"] = Field(
        "block",
        description="A longer text is blocked unchecked, or only its first and last max_chars/2 "
        "characters are checked and the verdict is at least flag.",
    )
    classifiers: dict[str, ClassifierSpec] = Field(default_factory=dict)
    input: list[RailSpec] = Field(default_factory=list, description="Rails run on prompts.")
    output: list[RailSpec] = Field(default_factory=list, description="Rails run on model answers.")

    #: The file the policy came from (for error messages raised after loading).
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file this policy was loaded from, if any."""
        return self._source


def parse_policy(data: Any, *, file: str | None = None) -> GuardPolicy:
    """Validate an already-parsed YAML document as a :class:`GuardPolicy`.

    Sections are validated one by one so that a bad key inside ``classifiers.<name>`` gets
    the same "did you mean" as one inside a rail.

    Raises:
        ConfigError: naming the file, the key path and the fix.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("a policy must be a mapping with `classifiers`, `input` and `output`", file=file)
    raw_classifiers = data.get("classifiers") or {}
    if not isinstance(raw_classifiers, Mapping):
        raise ConfigError("must map classifier names to specs", file=file, key_path="classifiers")
    classifiers: dict[str, ClassifierSpec] = {}
    for cname, spec in raw_classifiers.items():
        key_path = f"classifiers.{cname}"
        if not isinstance(spec, Mapping):
            raise ConfigError(
                "must be a mapping such as {backend: minilm-toxicity}", file=file, key_path=key_path
            )
        try:
            classifiers[str(cname)] = ClassifierSpec.model_validate(dict(spec))
        except ValidationError as exc:
            raise _validation_error(exc, file, key_path, ClassifierSpec) from exc
        _check_backend(classifiers[str(cname)], file=file, key_path=key_path)
    stages: dict[str, list[RailSpec]] = {}
    for stage in ("input", "output"):
        raw = data.get(stage) or []
        if not isinstance(raw, list):
            raise ConfigError("must be a list of rails", file=file, key_path=stage)
        rails = []
        for i, item in enumerate(raw):
            key_path = f"{stage}[{i}]"
            if not isinstance(item, Mapping):
                raise ConfigError(
                    "each rail must be a mapping with name, classifier, threshold and action",
                    file=file,
                    key_path=key_path,
                )
            try:
                rails.append(RailSpec.model_validate(dict(item)))
            except ValidationError as exc:
                raise _validation_error(exc, file, key_path, RailSpec) from exc
        stages[stage] = rails
    body = {k: v for k, v in data.items() if k not in ("classifiers", "input", "output")}
    try:
        policy = GuardPolicy.model_validate({**body, "classifiers": classifiers, **stages})
    except ValidationError as exc:
        raise _validation_error(exc, file, "", GuardPolicy) from exc
    policy._source = file
    _check_references(policy, file)
    return policy


def _validation_error(
    exc: ValidationError, file: str | None, prefix: str, model: type[BaseModel]
) -> ConfigError:
    """The config module's error format, minus pydantic's noise for our own cross-field checks."""
    first = exc.errors()[0]
    if first["type"] == "value_error" and not first["loc"]:
        # A model validator: its message is already the whole explanation ("Value error, ..."
        # and "(got dict)" would only repeat pydantic's wrapping).
        message = str(first["msg"]).removeprefix("Value error, ")
        return ConfigError(message, file=file, key_path=prefix or None)
    return format_validation_error(exc, file, prefix, model)


def _check_backend(spec: ClassifierSpec, *, file: str | None, key_path: str) -> None:
    """Fail at load time, before any model loads, on a backend name nobody registered."""
    from rai_harness.classifiers.pool import validate_spec

    try:
        validate_spec(spec)
    except ConfigError as exc:
        raise _relocated(exc, file, key_path) from exc


def _relocated(exc: ConfigError, file: str | None, prefix: str) -> ConfigError:
    """The same error, placed under ``prefix`` in ``file``."""
    key_path = f"{prefix}.{exc.key_path}" if exc.key_path else prefix
    return ConfigError(exc.detail, file=file, key_path=key_path)


def _check_references(policy: GuardPolicy, file: str | None) -> None:
    """Cross-field checks: rail names unique, classifiers exist, redact only on span backends."""
    names: dict[str, str] = {}
    for stage in ("input", "output"):
        for i, rail in enumerate(getattr(policy, stage)):
            key_path = f"{stage}[{i}]"
            if rail.name in names:
                raise ConfigError(
                    f"the rail name '{rail.name}' is already used by {names[rail.name]}; rail names "
                    "must be unique in a policy (verdicts and audits are keyed by them)",
                    file=file,
                    key_path=f"{key_path}.name",
                )
            names[rail.name] = key_path
            spec = policy.classifiers.get(rail.classifier)
            if spec is None:
                known = sorted(policy.classifiers)
                hint = difflib.get_close_matches(rail.classifier, known, n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                listed = ", ".join(known) if known else "none are defined; add a `classifiers:` section"
                raise ConfigError(
                    f"unknown classifier '{rail.classifier}'{suggestion}; classifiers defined: {listed}",
                    file=file,
                    key_path=f"{key_path}.classifier",
                )
            if rail.action == "redact" and spec.backend in NON_SPAN_BACKENDS:
                raise ConfigError(
                    f"action 'redact' needs a classifier that returns spans, but '{rail.classifier}' "
                    f"(backend {spec.backend}) only returns label scores; use block or flag, or a span "
                    "backend such as presidio",
                    file=file,
                    key_path=f"{key_path}.action",
                )


def load_policy(path: str | Path) -> GuardPolicy:
    """Read and validate a policy YAML file.

    Raises:
        ConfigError: naming the file, the key path and the fix.
    """
    return parse_policy(read_yaml_file(path, what="policy file"), file=str(path))


def build_guard(
    policy: GuardPolicy, *, pool: ClassifierSource | None = None, micro_batch: bool = True
) -> Guard:
    """Load the classifiers a policy's rails use (once each) and build its :class:`Guard`.

    Only classifiers some rail references are loaded. Labels are checked against each
    loaded classifier here, since only the loaded model knows its labels.

    Raises:
        ConfigError: naming the file and key path (unknown backend, unknown label...).
    """
    file = policy.source
    if pool is None:
        from rai_harness.classifiers.pool import default_pool

        pool = default_pool()
    used = [name for name in policy.classifiers if any(r.classifier == name for r in _all_rails(policy))]
    loaded: dict[str, Classifier] = {}
    for name in used:
        try:
            instance = pool.get(policy.classifiers[name])
        except ConfigError as exc:
            raise _relocated(exc, file, f"classifiers.{name}") from exc
        if not isinstance(instance, Classifier):
            raise ConfigError(
                f"backend '{policy.classifiers[name].backend}' gives an embedder, not a classifier; "
                "rails need per-label scores",
                file=file,
                key_path=f"classifiers.{name}.backend",
            )
        loaded[name] = instance
    # One runner per loaded instance: two names with identical specs get the same instance
    # from the pool, and then also share one micro-batcher.
    runners: dict[int, ClassifierRunner] = {}
    for classifier in loaded.values():
        runners.setdefault(id(classifier), ClassifierRunner(classifier, micro_batch=micro_batch))

    def make(stage: str) -> list[Rail]:
        rails = []
        for i, spec in enumerate(getattr(policy, stage)):
            classifier = loaded[spec.classifier]
            try:
                rails.append(
                    Rail(
                        spec.name,
                        classifier,
                        action=spec.action,
                        threshold=spec.threshold,
                        labels=spec.labels,
                        thresholds=spec.thresholds,
                        on_error=spec.on_error,
                        timeout_ms=spec.timeout_ms,
                        runner=runners[id(classifier)],
                    )
                )
            except ConfigError as exc:
                raise _relocated(exc, file, f"{stage}[{i}]") from exc
        return rails

    try:
        return Guard(
            make("input"),
            make("output"),
            name=policy.name,
            micro_batch=micro_batch,
            owned_runners=list(runners.values()),
            max_chars=policy.max_chars,
            over_max_chars=policy.over_max_chars,
        )
    except BaseException:
        for runner in runners.values():
            runner.close()
        raise


def _all_rails(policy: GuardPolicy) -> list[RailSpec]:
    return [*policy.input, *policy.output]
