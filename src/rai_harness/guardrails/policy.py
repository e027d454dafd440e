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

A policy is data: this module reads and validates it and builds nothing.
:meth:`Guard.from_policy <rai_harness.guardrails.guard.Guard.from_policy>` turns one into
a guard. Everything that can be checked without loading a model is checked here, once, at
load time (so ``rai run`` fails at plan time); what only a loaded model knows (its labels,
whether it returns spans) is checked when the guard is built, by the same rules
(:func:`~rai_harness.guardrails.rails.check_rail_settings`,
:func:`~rai_harness.guardrails.rails.check_redact_support`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictFloat, ValidationError, model_validator

from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.errors import ConfigError, did_you_mean
from rai_harness.guardrails.rails import check_rail_settings, check_redact_support
from rai_harness.guardrails.textprep import DEFAULT_MAX_CHARS
from rai_harness.validation import format_validation_error, read_yaml_document

__all__ = [
    "GuardPolicy",
    "RailSpec",
    "load_policy",
    "parse_policy",
]


class RailSpec(BaseModel):
    """One rail as written in a policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, description="Name shown in verdicts and reports.")
    classifier: str = Field(..., min_length=1, description="A key of the policy's `classifiers`.")
    labels: list[str] | None = Field(
        None,
        min_length=1,
        description="Labels `threshold` applies to (default: all the classifier's labels); at least one.",
    )
    # Strict numbers: YAML's `true`/`yes` would otherwise become a threshold of 1.0 (never
    # triggers) without a word, and a quoted "0.5" is a typo worth naming.
    threshold: StrictFloat | None = Field(None, description="One threshold for `labels`, within [0, 1].")
    thresholds: dict[str, StrictFloat] | None = Field(None, description="Per-label thresholds instead.")
    action: Literal["block", "redact", "flag"] = Field(..., description="What to do when triggered.")
    on_error: Literal["block", "allow"] = Field(
        "block", description="Classifier failed or timed out: block (fail closed) or allow (fail open)."
    )
    # The cap is the file's (a policy asking for ten minutes is a typo); code may lift it
    # (a run waits for rails up to its call deadline).
    timeout_ms: StrictFloat = Field(1000.0, le=600_000, description="Longest wait for the classifier.")
    description: str | None = None

    @model_validator(mode="after")
    def _rail_rules(self) -> RailSpec:
        # The rules every rail obeys, shared with ``Rail`` (one implementation). They raise
        # ConfigError with a key path inside the rail; parse_policy puts it under the rail's.
        check_rail_settings(
            name=self.name,
            action=self.action,
            on_error=self.on_error,
            timeout_ms=self.timeout_ms,
            threshold=self.threshold,
            labels=self.labels,
            thresholds=self.thresholds,
        )
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
    #: sha256 of the file's bytes, read once by :func:`load_policy`.
    _sha256: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file this policy was loaded from, if any."""
        return self._source

    @property
    def sha256(self) -> str | None:
        """sha256 of the bytes this policy was parsed from (``None`` when not from a file).

        A run puts it in every guarded call's key: the policy's content, not its path,
        decides the outputs (paths differ between clones).
        """
        return self._sha256

    def with_rail_timeouts(self, at_least_ms: float) -> GuardPolicy:
        """This policy with every rail's ``timeout_ms`` raised to at least ``at_least_ms``.

        Used by a run (evaluation mode: a slow check must not turn into a rail's
        ``on_error``); keeps :attr:`source` and :attr:`sha256`, since the file is the same.
        """
        lifted = self.model_copy(
            update={
                stage: [
                    rail.model_copy(update={"timeout_ms": max(rail.timeout_ms, at_least_ms)})
                    for rail in getattr(self, stage)
                ]
                for stage in ("input", "output")
            }
        )
        lifted._source, lifted._sha256 = self._source, self._sha256
        return lifted


def parse_policy(data: Any, *, file: str | None = None) -> GuardPolicy:
    """Validate an already-parsed YAML document as a :class:`GuardPolicy`.

    Sections are validated one by one so that a bad key inside ``classifiers.<name>`` gets
    the same "did you mean" as one inside a rail.

    Raises:
        ConfigError: naming the file, the key path and the fix.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("a policy must be a mapping with `classifiers`, `input` and `output`", file=file)
    if {"rules", "regressions", "budgets", "max_error_rate"} & data.keys() and not (
        {"classifiers", "input", "output"} & data.keys()
    ):
        # The likely mistake: the two kinds of policy share a word and a file format.
        raise ConfigError(
            "this is a gate policy (rules, budgets, regressions), not a guard policy: the guard takes "
            "a policy with classifiers and input/output rails, such as guardrails/default.yaml",
            file=file,
        )
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
        raw = data.get(stage)
        if raw is None:  # absent or empty (`input:`): no rails at this stage
            raw = []
        if not isinstance(raw, list):
            # `input: false` or `{}` loaded as "no rails" would switch the stage off unsaid.
            raise ConfigError(
                f"must be a list of rails (got {type(raw).__name__}); leave the key out for no rails",
                file=file,
                key_path=stage,
            )
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
            except ConfigError as exc:  # a rail rule (check_rail_settings)
                raise _relocated(exc, file, key_path) from exc
        stages[stage] = rails
    if not stages["input"] and not stages["output"]:
        # A guard without rails allows every text: in CI (`rai guard check --fail-on`) or in
        # front of a model that is a silent pass, never what a policy file means.
        raise ConfigError(
            "the policy has no rails: add at least one under `input` or `output` "
            "(see guardrails/default.yaml)",
            file=file,
            key_path="input",
        )
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
    from rai_harness.classifiers.pool import backend_produces_spans

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
                suggestion = did_you_mean(rail.classifier, known)
                listed = ", ".join(known) if known else "none are defined; add a `classifiers:` section"
                raise ConfigError(
                    f"unknown classifier '{rail.classifier}'{suggestion}; classifiers defined: {listed}",
                    file=file,
                    key_path=f"{key_path}.classifier",
                )
            # The registry declares span support per backend, so this is known before any
            # model loads; a backend that does not say is checked when the guard is built.
            spans = backend_produces_spans(spec.backend)
            if spans is not None:
                try:
                    check_redact_support(rail.action, spans, f"'{rail.classifier}' (backend {spec.backend})")
                except ConfigError as exc:
                    raise _relocated(exc, file, key_path) from exc


def load_policy(path: str | Path) -> GuardPolicy:
    """Read and validate a policy YAML file (read once; :attr:`GuardPolicy.sha256` is of those bytes).

    Raises:
        ConfigError: naming the file, the key path and the fix.
    """
    document = read_yaml_document(path, what="policy file")
    policy = parse_policy(document.data, file=str(path))
    policy._sha256 = document.sha256
    return policy
