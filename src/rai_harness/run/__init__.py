"""Plan -> generate -> score -> aggregate -> record: the run pipeline.

:func:`plan_run` validates a config and freezes the requests; :func:`execute_run` (or the
blocking :func:`run_sync`) generates, journals, scores and writes ``run.json`` and
``samples.jsonl`` (schema and reader in :mod:`rai_harness.record`). :func:`generate_calls`
is the generate stage alone, for one provider; :func:`score_run` (``rai score``) re-scores a
finished run without calling a model. This package orchestrates
:mod:`rai_harness.suites`; the suites never import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rai_harness.lazy import lazy_exports as _lazy_exports

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


__getattr__, __dir__ = _lazy_exports(globals(), _LAZY)
