"""Plan -> generate -> score -> aggregate -> record: the run pipeline.

:func:`plan_run` validates a config and freezes the requests; :func:`execute_run` (or the
blocking :func:`run_sync`) generates, journals, scores and writes ``run.json`` and
``samples.jsonl`` (schema and reader in :mod:`rai_harness.record`). :func:`generate_calls`
is the generate stage alone, for one provider; :func:`score_run` (``rai score``) re-scores a
finished run without calling a model. This package orchestrates
:mod:`rai_harness.suites`; the suites never import it.
"""

from __future__ import annotations

from rai_harness.run.execute import RunPlan, execute_run, plan_run, run_sync
from rai_harness.run.rescore import score_run
from rai_harness.run.runner import RetryPolicy, generate_calls

__all__ = [
    "RetryPolicy",
    "RunPlan",
    "execute_run",
    "generate_calls",
    "plan_run",
    "run_sync",
    "score_run",
]
