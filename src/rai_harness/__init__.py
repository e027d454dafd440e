"""rai-harness: Responsible-AI evaluation and guardrail harness.

The names a library user needs, importable from the top level. ``import rai_harness`` stays
light: everything except the error tree loads on first use (PEP 562), so importing the
package never loads the runner, a provider, a classifier or torch.

Run an audit, gate it and render its report::

    import rai_harness as rai

    plan = rai.plan_run(rai.load_run_config("evals/quickstart.yaml"), config_path="evals/quickstart.yaml")
    record = rai.run_sync(plan)                      # writes run.json and samples.jsonl
    verdict = rai.evaluate_run_dir(plan.out_dir, "evals/policies/default.yaml")
    rai.render_report(plan.out_dir)                   # report.html in the run folder
    raise SystemExit(verdict.exit_code)

(:func:`rai_harness.gate.evaluate` is the pure form: an in-memory record and policy -> verdict.)

Re-score a finished run with the current scorers (no model is called)::

    rai.score_run("reports/quickstart", out_dir="reports/quickstart-rescored")

Guard an application::

    with rai.Guard.from_policy("guardrails/default.yaml") as guard:
        result = guard.check_input(user_text)

Every error raised on purpose derives from :class:`RaiError` (the tree is drawn in
:mod:`rai_harness.errors`). Sub-packages (``rai_harness.suites``, ``rai_harness.classifiers``,
``rai_harness.providers``...) hold the extension points: registries and base classes.
"""

# No ``from __future__ import annotations`` here: it would add a public ``annotations``
# attribute to the package, and tests/test_exported_members.py checks that every public
# attribute is in ``__all__``.
import typing

from rai_harness.errors import (
    ConfigError,
    MissingDependencyError,
    MissingSecretError,
    ProviderError,
    ProviderTimeoutError,
    RaiError,
    RunError,
)
from rai_harness.lazy import lazy_exports as _lazy_exports

if typing.TYPE_CHECKING:
    from rai_harness.config import RunConfig, load_run_config
    from rai_harness.gate import GatePolicy, GateVerdict, evaluate_run_dir, load_gate_policy
    from rai_harness.guardrails import Guard, GuardedProvider, GuardResult
    from rai_harness.record import RunRecord, read_run_record, read_samples
    from rai_harness.report import build_report, render_report
    from rai_harness.run import RunPlan, execute_run, plan_run, run_sync, score_run

__version__ = "0.1.0"

#: Lazily loaded public names -> the module that defines them.
_LAZY: dict[str, str] = {
    # Plan and execute a run; re-score one.
    "RunConfig": "rai_harness.config",
    "load_run_config": "rai_harness.config",
    "RunPlan": "rai_harness.run",
    "plan_run": "rai_harness.run",
    "execute_run": "rai_harness.run",
    "run_sync": "rai_harness.run",
    "score_run": "rai_harness.run",
    # The run record.
    "RunRecord": "rai_harness.record",
    "read_run_record": "rai_harness.record",
    "read_samples": "rai_harness.record",
    # The CI gate.
    "GatePolicy": "rai_harness.gate",
    "GateVerdict": "rai_harness.gate",
    "load_gate_policy": "rai_harness.gate",
    "evaluate_run_dir": "rai_harness.gate",
    # Reports.
    "build_report": "rai_harness.report",
    "render_report": "rai_harness.report",
    # Inline guardrails.
    "Guard": "rai_harness.guardrails",
    "GuardResult": "rai_harness.guardrails",
    "GuardedProvider": "rai_harness.guardrails",
}

__all__ = [
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


__getattr__, __dir__ = _lazy_exports(globals(), _LAZY)
