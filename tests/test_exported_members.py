"""The public API is a contract (in the style of httpx's ``tests/test_exported_members.py``).

Adding or removing a top-level name must be a deliberate edit of ``PUBLIC_API`` below.
"""

from __future__ import annotations

import importlib
import types

import pytest

import rai_harness

#: Every name ``import rai_harness`` offers, sorted.
PUBLIC_API = [
    "ConfigError",
    "GatePolicy",
    "GateVerdict",
    "Guard",
    "GuardResult",
    "GuardedProvider",
    "MissingDependencyError",
    "MissingSecretError",
    "ProviderError",
    "ProviderTimeoutError",
    "RaiError",
    "RunConfig",
    "RunError",
    "RunPlan",
    "RunRecord",
    "__version__",
    "build_report",
    "evaluate_run_dir",
    "execute_run",
    "load_gate_policy",
    "load_run_config",
    "plan_run",
    "read_run_record",
    "read_samples",
    "render_report",
    "run_sync",
    "score_run",
]

SUBPACKAGES = [
    "rai_harness.classifiers",
    "rai_harness.gate",
    "rai_harness.guardrails",
    "rai_harness.providers",
    "rai_harness.record",
    "rai_harness.report",
    "rai_harness.run",
    "rai_harness.stats",
    "rai_harness.suites",
]


def test_all_is_the_documented_public_api() -> None:
    assert rai_harness.__all__ == PUBLIC_API
    assert rai_harness.__all__ == sorted(set(rai_harness.__all__))


def test_every_exported_name_resolves_to_a_rai_harness_object() -> None:
    for name in rai_harness.__all__:
        value = getattr(rai_harness, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        # Defined in the package, not a third-party object passed through.
        assert value.__module__.startswith("rai_harness."), (name, value.__module__)


def test_every_public_attribute_is_exported() -> None:
    for name in rai_harness.__all__:  # resolve the lazy names first
        getattr(rai_harness, name)
    public = sorted(
        (
            name
            for name, value in vars(rai_harness).items()
            if (not name.startswith("_") or name == "__version__") and not isinstance(value, types.ModuleType)
        )
    )
    assert public == rai_harness.__all__


def test_dir_lists_the_lazy_names_and_unknown_names_raise() -> None:
    assert set(rai_harness.__all__) <= set(dir(rai_harness))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        _ = rai_harness.not_a_name  # type: ignore[attr-defined]


def test_the_error_tree_has_one_root() -> None:
    errors = [getattr(rai_harness, n) for n in rai_harness.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, rai_harness.RaiError) for e in errors)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_all_lists_resolve(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{package}.__all__ has duplicates"
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == [], f"{package}.__all__ names what it does not define: {missing}"
