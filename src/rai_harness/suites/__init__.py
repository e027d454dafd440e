"""Eval suites, registered by name and loaded lazily.

``SUITES`` maps a suite name to ``"module:Class"``; the module is imported only when a
run or ``rai suites`` asks for it, so ``import rai_harness`` stays light. Other packages
add suites through the ``rai_harness.suites`` entry-point group or :func:`register_suite`.

Suites (each a :class:`~rai_harness.suites.base.Suite`):

========================== ============ ===============================================
name                       concern      measures
========================== ============ ===============================================
toxicity                   toxicity     RealToxicityPrompts continuations (Gehman et al.)
bias.bbq                   bias         BBQ accuracy and bias scores (Parrish et al.)
bias.counterfactual        bias         per-group gaps on demographic-swapped prompts
bias.stereotype            bias         stereotype agreement (DecodingTrust style)
pii.leakage                pii          planted synthetic secrets extracted by attacks
pii.emission               pii          PII in outputs to benign prompts (presidio)
factuality.truthfulqa_mc1  factuality   TruthfulQA MC1 accuracy (Lin et al.)
factuality.truthfulqa_gen  factuality   TruthfulQA generation, similarity scoring
factuality.short_qa        factuality   SimpleQA-style correct / incorrect / not attempted
========================== ============ ===============================================
"""

from __future__ import annotations

from typing import Any

from rai_harness.registry import Registry

__all__ = ["ENTRY_POINT_GROUP", "SUITES", "get_suite_class", "known_suites", "make_suite", "register_suite"]

#: Entry-point group through which other packages register suites.
ENTRY_POINT_GROUP = "rai_harness.suites"

#: Suite name -> ``"module:Class"`` (imported on first use), plus plugins.
SUITES: Registry[type[Any]] = Registry(
    "suite",
    {
        "toxicity": "rai_harness.suites.toxicity:ToxicitySuite",
        "bias.bbq": "rai_harness.suites.bias_bbq:BBQSuite",
        "bias.counterfactual": "rai_harness.suites.bias_counterfactual:CounterfactualSuite",
        "bias.stereotype": "rai_harness.suites.bias_stereotype:StereotypeSuite",
        "pii.leakage": "rai_harness.suites.pii_leakage:LeakageSuite",
        "pii.emission": "rai_harness.suites.pii_emission:EmissionSuite",
        "factuality.truthfulqa_mc1": "rai_harness.suites.factuality_truthfulqa:TruthfulQAMC1Suite",
        "factuality.truthfulqa_gen": "rai_harness.suites.factuality_truthfulqa:TruthfulQAGenSuite",
        "factuality.short_qa": "rai_harness.suites.factuality_short_qa:ShortQASuite",
    },
    entry_point_group=ENTRY_POINT_GROUP,
    key_path="name",
    check=lambda obj: isinstance(obj, type),
    expected="a class",
)


def known_suites() -> list[str]:
    """Every suite name: built-in, registered and from entry points."""
    return SUITES.names()


def register_suite(name: str, target: str | type[Any], *, replace: bool = False) -> None:
    """Add a suite: ``target`` is ``"module:Class"`` or the class itself.

    Raises:
        ValueError: ``name`` is taken and ``replace`` is false.
    """
    SUITES.register(name, target, replace=replace)


def get_suite_class(name: str) -> type[Any]:
    """The suite class registered as ``name``.

    Raises:
        ConfigError: Unknown name (with a "did you mean").
    """
    return SUITES.get(name)


def make_suite(
    name: str,
    params: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    base_dir: Any = None,
    key_path: str = "params",
) -> Any:
    """Validate ``params`` with the suite's ``Params`` model and build the suite.

    ``key_path`` is where ``params`` sits in the config file (``suites[0].params``), so every
    problem a message lists names its full path.

    Raises:
        ConfigError: Unknown suite or bad parameters (naming the key and the allowed keys).
    """
    from pydantic import ValidationError

    from rai_harness.validation import format_validation_error

    cls = get_suite_class(name)
    try:
        validated = cls.Params.model_validate(params or {})
    except ValidationError as exc:
        raise format_validation_error(exc, None, key_path, cls.Params) from exc
    return cls(validated, seed=seed, base_dir=base_dir)
