"""``rai run --gate`` as a CI log shows it: the real CLI in a subprocess at ``COLUMNS=80``.

Complements ``test_report_console.py`` (which renders the same tables on a synthetic record):
here the command line itself runs suites against the local fake server and gates the run, and
the test reads what a CI engineer would read in the log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from rai_harness.cli_gate import MAX_CONSOLE_LINES
from rai_harness.record import read_run_record
from rai_harness.testing import FakeOpenAIServer, FaultConfig

pytestmark = pytest.mark.slow  # one real `rai run` subprocess, shared by the module

ROOT = Path(__file__).resolve().parents[1]
# Longer than any column an 80-column table can give it: it must be folded, never cut.
LONG_IDS = (
    "HuggingFaceTB/SmolLM2-360M-Instruct-with-a-long-suffix",
    "HuggingFaceTB/SmolLM2-360M-Instruct-with-a-long-suffix+guard",
)
SUITES = ("bias.bbq", "bias.stereotype", "pii.leakage", "factuality.truthfulqa_mc1")
# A policy that fails (or errors) nearly every check for both providers, on the point value
# and on the conservative bound: far more results than the console summary may show.
FLOOR_RULES = (
    "bias.bbq:accuracy_ambiguous",
    "bias.bbq:accuracy_disambiguated",
    "factuality.truthfulqa_mc1:mc1_accuracy",
)
CAPPED_RULES = (
    "bias.bbq:bias_score_ambiguous",
    "bias.bbq:bias_score_disambiguated",
    "bias.stereotype:agreement_index",
    "bias.stereotype:no_verdict_rate",
    "pii.leakage:leak_rate",
    "pii.leakage:leaked_value_share",
    "pii.leakage:output_leak_rate",
    "factuality.truthfulqa_mc1:unparsed_rate",
    "latency.p95_s",
    "latency.p50_s",
    "error_rate",
)


def _column(lines: list[str], header: str, next_header: str) -> str:
    """One column's text (between two header names), rows joined: folded ids come back whole."""
    head = next(i for i, line in enumerate(lines) if header in line and next_header in line)
    start, end = lines[head].index(header), lines[head].index(next_header)
    cells = []
    for line in lines[head + 2 :]:
        if not line.strip():
            break
        cells.append(line[start:end].strip())
    return "".join(cells)


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp = tmp_path_factory.mktemp("cli80")
    policy = tmp / "strict.yaml"
    rules = [
        f"  - {{id: r{i}-{name}, metric: '{m}', {limit}{bound}}}\n"
        for name, bound in (("point", ", bound: value"), ("bound", ""))
        for i, (m, limit) in enumerate(
            [(m, "min: 1.0") for m in FLOOR_RULES] + [(m, "max: 0.0") for m in CAPPED_RULES]
        )
    ]
    policy.write_text("rules:\n" + "".join(rules), encoding="utf-8")
    with FakeOpenAIServer(FaultConfig()) as srv:
        provider = {
            "kind": "openai",
            "model": "gpt-4o-mini",
            "base_url": srv.base_url,
            "api_key_env": "RAI_TEST_API_KEY",
            "concurrency": 8,
            "timeout_s": 10.0,
            "params": {"max_tokens": 16},
        }
        config = {
            "name": "cli80",
            "seed": 3,
            "providers": [dict(provider, id=pid) for pid in LONG_IDS],
            "suites": [{"name": s, "params": {"limit": 6}} for s in SUITES],
        }
        cfg = tmp / "run.yaml"
        cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
        out = tmp / "out"
        env = {
            **os.environ,
            "COLUMNS": "80",
            "RAI_TEST_API_KEY": "sk-test-cli80",
            "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        env.pop("GITHUB_STEP_SUMMARY", None)  # never append to a real CI job summary
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "rai_harness",
                "run",
                str(cfg),
                "--out",
                str(out),
                "--quiet",
                "--no-report",
                "--gate",
                str(policy),
                "--junit",
                str(tmp / "gate.xml"),
                "--markdown",
                str(tmp / "gate.md"),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            timeout=600,
        )
    (tmp / "console.log").write_text(result.stderr + result.stdout, encoding="utf-8")
    return result, tmp


def test_cli_output_fits_80_columns_with_full_ids(
    gated_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, tmp = gated_run
    assert result.returncode in (1, 2), result.stdout + result.stderr
    log = result.stderr + result.stdout
    lines = log.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide
    assert "\u2026" not in log.split("gate ")[0] and "..." not in log  # the run summary cuts nothing
    # Every provider id, whole, in the efficiency table (folded over lines, never truncated).
    providers = _column(lines, "provider", "calls")
    for pid in LONG_IDS:
        assert pid in providers, providers
    record = read_run_record(tmp / "out" / "run.json")
    assert set(record.providers) == set(LONG_IDS)


def test_cli_run_summary_shows_headline_safety_scores(
    gated_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, tmp = gated_run
    log = result.stderr
    assert "headline safety scores" in log
    record = read_run_record(tmp / "out" / "run.json")
    for suite in SUITES:
        assert suite in log, suite  # each suite's headline row names its suite
    # The headline numbers as run.json has them, with n and an interval.
    leak = record.suites["pii.leakage"].results[LONG_IDS[0]].metrics["leak_rate"]
    assert leak.value is not None
    assert f"n={leak.n}" in log
    assert re.search(r"\[\d+\.\d, \d+\.\d\]", log)


def test_cli_gate_summary_is_short_and_points_to_the_files(
    gated_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, tmp = gated_run
    gate_log = result.stderr[result.stderr.index("gate ") :]
    lines = gate_log.splitlines()
    assert re.match(r"gate (FAIL|ERROR): policy", lines[0]), lines[0]
    assert len(lines) <= MAX_CONSOLE_LINES, gate_log
    total = int(ET.parse(tmp / "gate.xml").getroot().get("tests") or 0)
    assert total > MAX_CONSOLE_LINES  # the files hold every check...
    assert "more failed or errored check" in gate_log  # ...the log counts the rest
    # Checks are grouped under each provider's id, printed whole on a line of its own.
    assert LONG_IDS[0] in lines or LONG_IDS[1] in lines, gate_log
    flat = gate_log.replace("\n", "")
    assert str(tmp / "gate.xml") in flat and str(tmp / "gate.md") in flat
    md = (tmp / "gate.md").read_text(encoding="utf-8")
    for pid in LONG_IDS:
        assert pid in md
