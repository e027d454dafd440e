"""Console output at 80 columns (CI logs): the run summary and the gate summary."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from rai_harness.cli import _print_summary
from rai_harness.report import load_run
from rai_harness.report.fmt import fmt_value
from rai_harness.testing.synthetic_run import DEFAULT_PROVIDERS, SyntheticProvider, write_synthetic_run

ROOT = Path(__file__).resolve().parents[1]
LONG_ID = "HuggingFaceTB/SmolLM2-360M-Instruct+guard"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("console-run")
    providers = (
        *DEFAULT_PROVIDERS,
        SyntheticProvider(LONG_ID, model="smollm2-360m", pricing="none", stream=False),
    )
    write_synthetic_run(folder, n_samples=120, providers=providers, seed=7, hostile=False)
    return folder


def _console() -> Console:
    return Console(width=80, record=True, color_system=None, force_terminal=False)


def _column(lines: list[str], header: str, next_header: str) -> str:
    """The text of one column (between two header names), rows joined: folded ids come back whole."""
    head = next(i for i, line in enumerate(lines) if header in line and next_header in line)
    start, end = lines[head].index(header), lines[head].index(next_header)
    cells = []
    for line in lines[head + 2 :]:
        if not line.strip():
            break
        cells.append(line[start:end].strip())
    return "".join(cells)


def test_run_summary_fits_80_columns_with_full_ids_and_scores(run_dir: Path) -> None:
    record = load_run(run_dir)
    console = _console()
    _print_summary(record, run_dir, console)
    out = console.export_text()
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "\u2026" not in out and "..." not in out  # nothing truncated
    providers = _column(lines, "provider", "calls")
    for pid in record.providers:
        assert pid in providers, pid
    # Headline safety scores, each with n and its interval.
    assert "headline safety scores" in out
    leak = record.suites["pii.leakage"].results["smollm2"].metrics["leak_rate"]
    assert f"{fmt_value(leak.value, 'rate')} n={leak.n}" in out
    assert "Leak rate" in out and "Expected" in out
    assert re.search(r"\[\d+\.\d, \d+\.\d\]", out)


def test_gate_summary_is_short_and_points_to_the_files(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("rai_harness.gate.evaluate")
    from rai_harness.cli_gate import MAX_CONSOLE_LINES, run_gate_cli

    console = _console()
    junit = tmp_path / "gate.xml"
    policy = tmp_path / "strict.yaml"
    # A policy that fails nearly everything, for every provider: far more results than 40 lines.
    policy.write_text(
        "rules:\n"
        + "".join(
            f"  - {{metric: '{m}', max: 0.0, bound: value}}\n"
            for m in (
                "toxicity:expected_max_toxicity",
                "toxicity:toxicity_probability",
                "pii.leakage:leak_rate",
                "pii.emission:emission_rate",
                "bias.stereotype:agreement_index",
                "bias.counterfactual:negative_gap",
                "factuality.short_qa:incorrect_rate",
                "latency.p95_s",
                "latency.p50_s",
                "error_rate",
            )
        ),
        encoding="utf-8",
    )
    code = run_gate_cli(run_dir, policy, junit=junit, console=console)
    out = console.export_text()
    lines = out.splitlines()
    assert code in (1, 2)
    total = int(ET.parse(junit).getroot().get("tests") or 0)
    assert total > MAX_CONSOLE_LINES  # the files hold every result...
    assert len(lines) <= MAX_CONSOLE_LINES, out  # ...the log a short summary
    assert max(len(line) for line in lines) <= 80
    assert re.search(r"gate (FAIL|ERROR): policy", out)
    assert "more failed or errored check" in out and str(junit) in out.replace("\n", "")
    assert "\u2026 " in out  # the rest is counted, not silently dropped
    assert "..." not in out
