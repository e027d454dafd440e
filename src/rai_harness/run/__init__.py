"""Plan -> generate -> score -> aggregate -> record: the run pipeline.

:func:`plan_run` validates a config and freezes the requests; :func:`execute_run` (or the
blocking :func:`run_sync`) generates, journals, scores and writes ``run.json`` and
``samples.jsonl`` (schema and reader in :mod:`rai_harness.record`). :func:`generate_calls`
is the generate stage alone, for one provider; :func:`score_run` (``rai score``) re-scores a
finished run without calling a model. This package orchestrates
:mod:`rai_harness.suites`; the suites never import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rai_harness.run.execute import RunPlan, execute_run, plan_run, run_sync
    from rai_harness.run.rescore import score_run
    from rai_harness.run.runner import RetryPolicy, generate_calls

#: Public name -> the module that defines it, imported on first use (PEP 562). So a worker process
#: (:mod:`rai_harness.run.shards`) imports the runner without the whole pipeline (config, suites, scipy).
_LAZY: dict[str, str] = {
    "RetryPolicy": "rai_harness.run.runner",
    "RunPlan": "rai_harness.run.execute",
    "execute_run": "rai_harness.run.execute",
    "generate_calls": "rai_harness.run.runner",
    "plan_run": "rai_harness.run.execute",
    "run_sync": "rai_harness.run.execute",
    "score_run": "rai_harness.run.rescore",
}

__all__ = [
    "RetryPolicy",
    "RunPlan",
    "execute_run",
    "generate_calls",
    "plan_run",
    "run_sync",
    "score_run",
]


def __getattr__(name: str) -> Any:
    """Load a public name on first use and cache it on the package."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
