"""What the gate returns: one result per check and provider, and the verdict over them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["EXIT_ERROR", "EXIT_FAIL", "EXIT_PASS", "GateVerdict", "RuleResult", "Status", "num"]

Status = Literal["pass", "fail", "error"]

#: Exit codes: every check passed / a check failed / a check could not be evaluated.
EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
_STATUS_BY_EXIT: tuple[Status, ...] = ("pass", "fail", "error")


def num(value: float | None, unit: str = "") -> str:
    """Format a number for messages and tables (4 significant digits, ``n/a`` for none)."""
    if value is None:
        return "n/a"
    text = f"{value:.4g}"
    return f"{text} {unit}" if unit else text


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one check for one provider.

    The check passes when ``measured op threshold`` holds (``op`` is ``"<="`` or ``">="``).

    Attributes:
        rule_id: The check's id (unique within the policy).
        description: The rule's description.
        kind: ``"run"`` (run status, record problems), ``"rule"`` (threshold) or
            ``"regression"`` (against a baseline).
        provider: Provider id, or ``None`` for a run-level result.
        metric: The metric as written in the policy (``"toxicity:expected_max_toxicity"``).
        status: ``"pass"``, ``"fail"`` or ``"error"`` (could not be evaluated).
        message: One sentence a reviewer can act on.
        measured: The number compared with the threshold.
        bound: Which number ``measured`` is: ``"value"``, ``"ci_low"`` or ``"ci_high"`` (of the
            metric; of ``new - base`` for a regression), or ``"interval gap"``.
        op: The pass condition's operator.
        threshold: The limit (for a regression, the margin signed in the "worse" direction).
        value: The point estimate (for a regression: ``new - base``).
        ci_low: Lower interval bound of ``value``, if any.
        ci_high: Upper interval bound of ``value``, if any.
        confidence: Coverage of that interval.
        baseline_value: For a regression, the baseline's point estimate.
        n: Items (or calls, or pairs) behind the number.
        method: How the number was obtained (``"clopper-pearson"``, ``"paired-bootstrap"``...).
        p_value: For a regression on binary items: McNemar's one-sided p-value.
        source: Key path of the check in the policy file.
    """

    rule_id: str
    description: str
    kind: Literal["run", "rule", "regression"]
    provider: str | None
    metric: str
    status: Status
    message: str
    measured: float | None = None
    bound: str | None = None
    op: Literal["<=", ">="] | None = None
    threshold: float | None = None
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    baseline_value: float | None = None
    n: int | None = None
    method: str | None = None
    p_value: float | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision on a run.

    ``exit_code`` and ``passed`` are derived from the results, never stored, so they cannot
    disagree: 2 when any result is an error (or there is no result at all), else 1 when any
    failed, else 0.

    Attributes:
        results: One result per check and provider, run-level results first.
        policy_name: The policy's name.
        policy_file: The policy file, when loaded from one.
        run_name: The run's name (``None`` when the record could not be read).
        run_id: The run's id.
        run_dir: The run folder, when known.
        baseline_dir: The baseline run folder, when one was given.
    """

    results: tuple[RuleResult, ...]
    policy_name: str
    policy_file: str | None = None
    run_name: str | None = None
    run_id: str | None = None
    run_dir: str | None = None
    baseline_dir: str | None = None

    @property
    def exit_code(self) -> int:
        """0 every check passed, 1 a check failed, 2 a check could not be evaluated."""
        statuses = {r.status for r in self.results}
        # No result at all means nothing was checked: that must not read as a pass.
        if not self.results or "error" in statuses:
            return EXIT_ERROR
        return EXIT_FAIL if "fail" in statuses else EXIT_PASS

    @property
    def passed(self) -> bool:
        """Whether the exit code is 0."""
        return self.exit_code == EXIT_PASS

    @property
    def status(self) -> Status:
        """``"pass"``, ``"fail"`` or ``"error"``, matching :attr:`exit_code`."""
        return _STATUS_BY_EXIT[self.exit_code]

    def count(self, status: Status) -> int:
        """How many results have this status."""
        return sum(1 for r in self.results if r.status == status)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a JSON-ready dict (with the derived fields)."""
        return {
            "status": self.status,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "policy_name": self.policy_name,
            "policy_file": self.policy_file,
            "run_name": self.run_name,
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "baseline_dir": self.baseline_dir,
            "counts": {s: self.count(s) for s in ("pass", "fail", "error")},
            "results": [r.to_dict() for r in self.results],
        }
