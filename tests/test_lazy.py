"""The one lazy-export helper behind the packages' PEP 562 ``__getattr__``."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from rai_harness.lazy import lazy_exports


def test_a_name_is_imported_on_first_use_and_cached() -> None:
    ns: dict = {"__name__": "pkg", "__all__": ["sqrt"]}
    getattr_, dir_ = lazy_exports(ns, {"sqrt": "math"})
    assert "sqrt" not in ns
    import math

    assert getattr_("sqrt") is math.sqrt
    assert ns["sqrt"] is math.sqrt  # cached: the next lookup never reaches __getattr__
    assert "sqrt" in dir_()
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'nope'"):
        getattr_("nope")


def test_packages_use_it_and_stay_lazy() -> None:
    # Importing rai_harness.run must not import the pipeline's heavy modules until asked.
    code = (
        "import sys, rai_harness.run as r; assert 'scipy' not in sys.modules, 'scipy'; "
        "r.RetryPolicy; assert 'rai_harness.run.runner' in sys.modules; "
        "import rai_harness.guardrails as g; assert 'sklearn' not in sys.modules, 'sklearn'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    import rai_harness.guardrails as g

    assert isinstance(g, types.ModuleType) and "audit_guard" in dir(g)
