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
    assert "not listed" in out and str(junit) in out.replace("\n", "")
    assert "\u2026 " in out  # the rest is counted, not silently dropped
    assert "..." not in out


def test_safety_scores_split_over_tables_instead_of_cropping(tmp_path: Path) -> None:
    from rai_harness.report.console import safety_tables

    # Six providers with long ids cannot share one 80-column table: rich would crop the last
    # columns (``gpt-``); the scores are split over several tables, each whole.
    ids = [f"vendor-{i}/a-rather-long-model-name-{i}-instruct" for i in range(6)]
    providers = tuple(
        SyntheticProvider(pid, model=f"m{i}", pricing="none", stream=False) for i, pid in enumerate(ids)
    )
    write_synthetic_run(tmp_path, n_samples=40, providers=providers, seed=3, hostile=False)
    record = load_run(tmp_path)
    tables = safety_tables(record, 80)
    assert len(tables) >= 2
    # Every id, whole, heads a column, each provider once, in run order.
    assert [str(c.header) for t in tables for c in t.columns[1:]] == ids

    def render(width: int) -> str:
        console = Console(width=width, record=True, color_system=None, force_terminal=False)
        for table in tables:
            console.print(table)
        return "\n".join(line.rstrip() for line in console.export_text().splitlines())

    out = render(80)
    assert max(len(line) for line in out.splitlines()) <= 80
    # Nothing cropped: a console far wider than the tables prints exactly the same.
    assert out == render(240)
    assert "\u2026" not in out and "..." not in out
    for pid in ids:
        leak = record.suites["pii.leakage"].results[pid].metrics["leak_rate"]
        assert f"n={leak.n}" in out
