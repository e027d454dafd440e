"""Inline guardrails: rails (classifier + threshold + action) over prompts and answers.

* :class:`Guard` runs input rails on prompts and output rails on answers, sync, batched,
  async (micro-batched) and streaming (:meth:`Guard.stream_output`), and returns a typed
  :class:`GuardResult` per text.
* :class:`Rail` is one classifier with its threshold(s), action (``block``, ``redact``,
  ``flag``), ``on_error`` policy and timeout.
* :func:`load_policy` / :meth:`Guard.from_policy` read a policy YAML file
  (``guardrails/default.yaml``, ``guardrails/strict.yaml``).
* :class:`GuardedProvider` puts a guard in front of any provider.
* :func:`audit_guard` measures a guard's rails on labelled data: precision, recall, F1,
  ROC-AUC, latency and the Borkan et al. unintended-bias AUCs.

Example::

    from rai_harness.guardrails import Guard

    with Guard.from_policy("guardrails/default.yaml") as guard:
        verdict = guard.check_input("email me at jane@example.com")
        print(verdict.action, verdict.redacted_text)   # redact  email me at <EMAIL_ADDRESS>
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rai_harness.guardrails.guard import Guard, GuardResult
from rai_harness.guardrails.policy import GuardPolicy, RailSpec, load_policy, parse_policy
from rai_harness.guardrails.provider import GuardedProvider, GuardRailError, GuardVerdict
from rai_harness.guardrails.rails import (
    Action,
    ClassifierRunner,
    GuardClosedError,
    Rail,
    RailResult,
    Stage,
    strongest,
)
from rai_harness.guardrails.streaming import GuardBlocked
from rai_harness.lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from rai_harness.guardrails.audit import AuditReport, audit_guard

__all__ = [
    "Action",
    "AuditReport",
    "ClassifierRunner",
    "Guard",
    "GuardBlocked",
    "GuardClosedError",
    "GuardPolicy",
    "GuardRailError",
    "GuardResult",
    "GuardVerdict",
    "GuardedProvider",
    "Rail",
    "RailResult",
    "RailSpec",
    "Stage",
    "audit_guard",
    "load_policy",
    "parse_policy",
    "strongest",
]

# The audit pulls in scikit-learn; load it only when asked for, so an inline guard starts fast.
_LAZY = {"AuditReport": "rai_harness.guardrails.audit", "audit_guard": "rai_harness.guardrails.audit"}

__getattr__, __dir__ = _lazy_exports(globals(), _LAZY)
