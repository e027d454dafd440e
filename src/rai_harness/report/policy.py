"""Colouring the scorecard by a gate policy (``--policy``): the hook between report and gate.

The report never decides pass or fail itself: it asks :mod:`rai_harness.gate` (the same
code ``rai gate`` runs) and maps each result onto the scorecard cell of its provider and
metric. Metric addresses are the gate's: ``"<suite>:<metric>"`` for suite metrics and
plain names such as ``"latency.p95_s"`` for efficiency metrics.

The gate is imported by name at call time, so the report keeps working (uncoloured, with
a note saying why) in a build where the gate is missing or its API moved.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rai_harness.errors import ConfigError
from rai_harness.record import RunRecord

__all__ = ["CellVerdict", "PolicyView", "RuleRow", "evaluate_policy"]

_RANK = {"pass": 0, "fail": 1, "error": 2}


@dataclass(frozen=True)
class CellVerdict:
    """The gate's verdict on one scorecard cell (the worst of the rules on it)."""

    status: str
    messages: tuple[str, ...]


@dataclass(frozen=True)
class RuleRow:
    """One gate result, for the policy table under the scorecard."""

    rule_id: str
    provider: str | None
    metric: str
    status: str
    message: str


@dataclass
class PolicyView:
    """A policy's verdict as the report shows it.

    Attributes:
        path: The policy file.
        name: The policy's name.
        status: ``"pass"``, ``"fail"`` or ``"error"``; ``None`` when the gate could not run.
        cells: (provider id, metric address) -> verdict.
        rows: Every result, in the gate's order.
        note: Why nothing is coloured, when the gate is unavailable.
    """

    path: str
    name: str = ""
    status: str | None = None
    cells: dict[tuple[str, str], CellVerdict] = field(default_factory=dict)
    rows: list[RuleRow] = field(default_factory=list)
    note: str | None = None

    def cell(self, provider: str, metric: str) -> CellVerdict | None:
        """The verdict on one cell, or ``None`` when no rule covers it."""
        return self.cells.get((provider, metric))


def _gate_api() -> tuple[Callable[[Any], Any], Callable[[RunRecord, Any], Any]] | None:
    """``(load_policy, evaluate)`` from the gate, wherever this version keeps them."""
    for module_name in ("rai_harness.gate", "rai_harness.gate.evaluate"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        evaluate = getattr(module, "evaluate", None)
        loader = getattr(module, "load_gate_policy", None) or getattr(module, "load_policy", None)
        if loader is None:
            try:
                loader = importlib.import_module("rai_harness.gate.policy").load_gate_policy
            except (ImportError, AttributeError):
                loader = None
        if callable(evaluate) and callable(loader):
            return loader, evaluate
    return None


def evaluate_policy(record: RunRecord, policy_path: str | Path) -> PolicyView:
    """Evaluate ``policy_path`` on the record with the gate and index the results by cell.

    Args:
        record: The run record.
        policy_path: The gate policy YAML.

    Returns:
        The view; when the gate is not installed, an empty view with a note.

    Raises:
        ConfigError: The policy file is missing or invalid (the gate's own message).
    """
    path = Path(policy_path)
    if not path.is_file():
        raise ConfigError(
            "policy file not found; pass a gate policy YAML (see evals/policies/) or leave out --policy",
            file=str(path),
        )
    api = _gate_api()
    view = PolicyView(path=str(path), name=path.stem)
    if api is None:
        view.note = "the gate module is not available in this build, so no cell is coloured"
        return view
    load, evaluate = api
    verdict = evaluate(record, load(path))
    view.name = str(getattr(verdict, "policy_name", None) or path.stem)
    status = getattr(verdict, "status", None)
    view.status = str(status) if status is not None else None
    merged: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for r in getattr(verdict, "results", ()):
        provider = getattr(r, "provider", None)
        metric = str(getattr(r, "metric", ""))
        st = str(getattr(r, "status", "error"))
        message = str(getattr(r, "message", ""))
        view.rows.append(RuleRow(str(getattr(r, "rule_id", metric)), provider, metric, st, message))
        if provider is not None and metric:
            merged.setdefault((str(provider), metric), []).append((st, message))
    for key, results in merged.items():
        worst = max((s for s, _ in results), key=lambda s: _RANK.get(s, 2))
        view.cells[key] = CellVerdict(worst, tuple(m for _, m in results))
    return view
