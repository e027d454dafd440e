"""``rai report``: golden-structure tests on a fixed synthetic run (HTML, Markdown, JSON, CLI).

The run comes from :mod:`rai_harness.testing.synthetic_run`: four providers (a small model
with and without a guard, a hosted model, and an unpriced, non-streaming one), all nine
suites, one suite whose scoring failed, failed calls, and hostile outputs.
"""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rai_harness.cli import app
from rai_harness.errors import ConfigError
from rai_harness.record import MetricSpec, RunRecord
from rai_harness.report import build_report, load_run, render_report
from rai_harness.report.charts import pareto_front
from rai_harness.report.fmt import fmt_diff, fmt_duration, fmt_estimate, fmt_p, fmt_seconds, fmt_usd
from rai_harness.report.redaction import Redactor, regex_spans
from rai_harness.report.samples import scan_samples
from rai_harness.stats import Estimate
from rai_harness.testing.synthetic_run import (
    DEFAULT_PROVIDERS,
    HOSTILE_STRINGS,
    SUITE_NAMES,
    SyntheticProvider,
    write_synthetic_run,
)

ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = (
    *DEFAULT_PROVIDERS,
    SyntheticProvider("llama-local", model="llama-3.1-8b", pricing="none", stream=False),
)
runner = CliRunner()


def _text(page: str) -> str:
    """Visible text: tags dropped, entities decoded, whitespace collapsed."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    write_synthetic_run(folder, n_samples=360, providers=PROVIDERS, seed=3, status="incomplete")
    return folder


@pytest.fixture(scope="module")
def record(run_dir: Path) -> RunRecord:
    return load_run(run_dir)


@pytest.fixture(scope="module")
def page(run_dir: Path) -> str:
    return build_report(run_dir, fmt="html")


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def _spec(unit: str = "rate", direction: str = "lower") -> MetricSpec:
    return MetricSpec(name="m", display="M", direction=direction, unit=unit, definition="d")  # type: ignore[arg-type]


def test_number_formats() -> None:
    est = Estimate(value=0.123, ci_low=0.091, ci_high=0.160, n=300, method="wilson")
    assert fmt_estimate(est, _spec()) == "12.3% [9.1, 16.0]"
    assert (
        fmt_estimate(Estimate(value=0.0, ci_low=0.0, ci_high=0.0004, n=9000), _spec()) == "0.0% [0.0, <0.1]"
    )
    bias = Estimate(value=0.05, ci_low=-0.02, ci_high=0.12, n=80)
    assert fmt_estimate(bias, _spec("score", "neutral")) == "+0.050 [\u22120.020, +0.120]"
    assert fmt_estimate(Estimate(value=0.4, n=10), _spec("score")) == "0.400"
    assert fmt_estimate(Estimate.empty("no items"), _spec()) == "n/a (no items)"
    assert fmt_estimate(None, _spec()) == "n/a (not computed)"
    assert (
        fmt_diff(Estimate(value=-0.032, ci_low=-0.051, ci_high=-0.01, n=5), "rate")
        == "\u22123.2 pp [\u22125.1, \u22121.0]"
    )
    assert fmt_usd(0.00423) == "$0.00423" and fmt_usd(1.234) == "$1.23" and fmt_usd(1234.5) == "$1,234"
    assert fmt_usd(None, "not priced") == "n/a (not priced)"
    assert fmt_seconds(0.34) == "340 ms" and fmt_seconds(1.234) == "1.23 s" and fmt_seconds(12.34) == "12.3 s"
    assert fmt_p(0.0001) == "< 0.001" and fmt_p(0.0344) == "0.034" and fmt_p(None) == "n/a"
    assert fmt_duration(185) == "3 min 05 s" and fmt_duration(7440) == "2 h 04 min"


def test_pareto_front_respects_direction() -> None:
    pts = [(1.0, 0.30), (2.0, 0.10), (3.0, 0.20), (1.0, 0.40)]
    assert pareto_front(pts, "lower") == [True, True, False, False]
    assert pareto_front(pts, "higher") == [False, False, False, True]
    assert pareto_front([(1.0, -0.3), (2.0, 0.05), (3.0, 0.2)], "neutral") == [True, True, False]


# ---------------------------------------------------------------------------------------------
# The HTML report
# ---------------------------------------------------------------------------------------------


def test_sections_and_suites_present(page: str, record: RunRecord) -> None:
    for anchor in ("scorecard", "tradeoffs", "guard", "suites", "efficiency", "evidence", "method", "repro"):
        assert f'<section id="{anchor}">' in page
    text = _text(page)
    for name in SUITE_NAMES:
        assert name in text
    for pid in record.providers:
        assert pid in text
    assert page.count("<h2>") >= 8
    assert "Content warning." in text
    # Method: definitions, sources and deviations of every metric, and scorer versions.
    for suite in record.suites.values():
        for spec in suite.metrics:
            assert spec.definition in text
    assert "Gehman et al. 2020" in text and "Deviation:" in text
    assert "minilm-toxicity" in text and "head-2026-11-26" in text
    assert "excluded from every metric's denominator" in text
    # Reproducibility: config snapshot with env var names, dataset hashes, packages, seed.
    assert "api_key_env: OPENAI_API_KEY" in text
    assert record.datasets[0].sha256 in text
    assert "presidio-analyzer" in text and "Seed 3" in text


def test_scorecard_numbers(page: str, record: RunRecord) -> None:
    text = _text(page)
    tox = record.suites["toxicity"]
    spec = next(m for m in tox.metrics if m.name == "expected_max_toxicity")
    for pid in ("smollm2", "gpt-4o-mini"):
        assert fmt_estimate(tox.results[pid].metrics["expected_max_toxicity"], spec) in text
    assert re.search(r"\d+\.\d% \[\d+\.\d, \d+\.\d\]", text)
    s = record.providers["gpt-4o-mini"]
    assert fmt_seconds(s.ttft_s.p95) in text and fmt_usd(s.cost.per_1k_calls_usd) in text
    assert "tok/s" in text


def test_missing_values_say_why(page: str) -> None:
    text = _text(page)
    assert "n/a (not priced)" in text  # llama-local has no price
    assert "n/a (not streamed)" in text  # ... and no TTFT
    assert "n/a (scoring failed)" in text  # factuality.truthfulqa_gen
    assert "Not plotted: llama-local (not priced)" in text


def test_incomplete_run_lists_its_problems(page: str) -> None:
    problems = re.search(
        r'<section class="problems incomplete" id="problems" role="alert">(.*?)</section>', page, re.S
    )
    assert problems is not None
    text = _text(problems.group(1))
    assert "This run is incomplete: 1 problem" in text
    assert "factuality.truthfulqa_gen: scoring failed" in text
    assert "Incomplete" in _text(page.split('id="run-status"', 1)[1][:200])


def test_failed_run_header(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path, n_samples=60, seed=1, status="failed", hostile=False)
    text = _text(build_report(tmp_path))
    assert "This run failed: 1 problem" in text and "max_error_rate" in text


def test_charts_are_drawn(page: str) -> None:
    svgs = re.findall(r"<svg\b.*?</svg>", page, re.S)
    # 9 scorecard metrics with values x (cost, latency) + breakdowns + histograms + latency + stacked bars.
    assert len(svgs) >= 30
    titles = set(re.findall(r'<svg[^>]*aria-label="([^"]*)"', page))
    for title in (
        "Expected maximum toxicity vs cost",
        "Leak rate vs p95 latency",
        "Leak rate by attack",
        "Leak rate by data type",
        "Bias score (ambiguous contexts) by category",
        "Answers graded correct / incorrect / not attempted",
        "Distribution of per-sample toxicity",
        "End-to-end latency per provider",
        "Time to first token per provider",
    ):
        assert title in titles, title
    tradeoff = next(s for s in svgs if 'aria-label="Leak rate vs cost"' in s)
    assert tradeoff.count("<line") >= 6 and "\u2605" in tradeoff  # whiskers and a Pareto star
    hist = next(s for s in svgs if 'aria-label="Distribution of per-sample toxicity"' in s)
    assert hist.count("<path") == 4  # one histogram per provider


def test_guarded_vs_unguarded(page: str) -> None:
    section = page.split('<section id="guard">', 1)[1].split("</section>", 1)[0]
    text = _text(section)
    assert "guarded \u2212 unguarded" in text
    assert "smollm2+guard" in text and "better with the guard" in text
    assert re.search(r"[\u2212+]\d+\.\d pp \[[\u2212+]?\d+\.\d, [\u2212+]?\d+\.\d\]", text)
    assert "inputs blocked" in text


def test_untrusted_text_is_inert(page: str) -> None:
    low = page.lower()
    assert "<script" not in low
    assert "onerror=" not in low
    assert 'href="javascript' not in low and "href='javascript" not in low
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src&#61;x onerror&#61;alert(1)&gt;" in page
    # Links only ever point inside the page.
    assert set(re.findall(r'href="([^"#][^"]*)"', page)) == set()
    text = _text(page)
    for hostile in HOSTILE_STRINGS:
        assert hostile in text  # shown, as text
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_redact_masks_pii(run_dir: Path, page: str) -> None:
    assert "jane.doe@example.com" in page
    redacted = build_report(run_dir, redact=True, redactor="regex")
    for secret in ("jane.doe@example.com", "123-45-6789", "4111 1111 1111 1111", "415-555-0123"):
        assert secret not in redacted
    assert "&lt;EMAIL_ADDRESS&gt;" in redacted and "masked (regex)" in _text(redacted)


def test_regex_redactor_shapes() -> None:
    text = "Mail jane.doe@example.com, call +1 (415) 555-0123 or 415-555-0123, card 4111 1111 1111 1111, SSN 123-45-6789."
    labels = sorted({s.label for s in regex_spans(text)})
    assert labels == ["CREDIT_CARD", "EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN"]
    out = Redactor("regex").redact_many([text])[0]
    assert "@" not in out and "555" not in out and "1111" not in out and "6789" not in out
    assert "Mail <EMAIL_ADDRESS>" in out


def test_evidence_is_capped_and_worst_first(run_dir: Path, record: RunRecord) -> None:
    stats = scan_samples(run_dir, record, max_examples=2)
    assert stats.lines == 360 * len(PROVIDERS)
    toxic = next(v for k, v in stats.evidence.items() if k.suite == "toxicity" and k.sample_key == "toxicity")
    for examples in toxic.values():
        assert len(examples) <= 2
        values = [e.value for e in examples]
        assert values == sorted(values, reverse=True)
    leaked = next(v for k, v in stats.evidence.items() if k.suite == "pii.leakage")
    assert all(e.value == 1.0 for exs in leaked.values() for e in exs)  # only actual leaks are evidence
    page = build_report(run_dir, max_examples=1)
    assert page.count('<div class="ex">') <= len(stats.evidence) * len(PROVIDERS)


def test_parallel_scan_matches_serial(run_dir: Path, record: RunRecord) -> None:
    one = scan_samples(run_dir, record, max_examples=3, workers=1)
    two = scan_samples(run_dir, record, max_examples=3, workers=2)
    assert (one.lines, one.bad_lines, one.binary) == (two.lines, two.bad_lines, two.binary)
    assert {k: list(v) for k, v in one.latency.items()} == {k: list(v) for k, v in two.latency.items()}
    assert one.values.keys() == two.values.keys()
    for key, per in one.values.items():
        assert {p: sorted(a) for p, a in per.items()} == {p: sorted(a) for p, a in two.values[key].items()}
    assert one.evidence == two.evidence
    assert one.error_examples == two.error_examples and one.guard_actions == two.guard_actions


def test_long_outputs_are_cut(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path, n_samples=40, seed=2, hostile=False)
    path = tmp_path / "samples.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["output"] = "x" * 5000 + "\x1b[31m"
    first["scores"]["toxicity"] = 0.999
    lines[0] = json.dumps(first)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = _text(build_report(tmp_path))
    assert "4,305 more characters" in text  # 5,005 characters, 700 shown
    assert "\x1b" not in text


def test_without_samples_file(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path, n_samples=40, seed=2, write_samples=False, hostile=False)
    text = _text(build_report(tmp_path))
    assert "samples.jsonl was not found" in text
    assert "Scorecard" in text


def test_size_is_bounded(page: str) -> None:
    assert len(page.encode("utf-8")) < 2_000_000


def test_policy_marks_cells(run_dir: Path) -> None:
    pytest.importorskip("rai_harness.gate.evaluate")
    page = build_report(run_dir, policy=ROOT / "evals" / "policies" / "default.yaml")
    scorecard = page.split('<section id="scorecard">', 1)[1].split("</section>", 1)[0]
    assert re.search(r'<td class="num (pass|fail)"', scorecard)
    assert "&#10003; pass" in scorecard or "&#10007; fail" in scorecard
    assert "Gate policy results" in scorecard


def test_policy_without_gate_module(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rai_harness.report import policy

    monkeypatch.setattr(policy, "_gate_api", lambda: None)
    text = _text(build_report(run_dir, policy=ROOT / "evals" / "policies" / "default.yaml"))
    assert "Gate policy not applied: the gate module is not available" in text


# ---------------------------------------------------------------------------------------------
# Markdown and JSON
# ---------------------------------------------------------------------------------------------


def test_markdown_summary(run_dir: Path, record: RunRecord) -> None:
    md = build_report(run_dir, fmt="md")
    assert md.startswith("## \u26a0\ufe0f Responsible-AI audit: synthetic-audit \u2014 Incomplete")
    assert "> [!WARNING]" in md and "This run is incomplete" in md
    assert "| metric | smollm2 | smollm2\\+guard | gpt-4o-mini | llama-local |" not in md
    assert "| metric | smollm2 | smollm2+guard | gpt-4o-mini | llama-local |" in md
    assert "| **Toxicity** |" in md and "| **Performance and cost** |" in md
    assert re.search(r"\| Leak rate \| \d+\.\d% \\\[\d+\.\d, \d+\.\d\\\]", md)
    assert "### Guarded vs unguarded" in md
    assert "<script" not in md.lower() and "](javascript" not in md
    assert "&lt;script&gt;" in md  # the problem text, escaped


def test_json_summary(run_dir: Path) -> None:
    data = json.loads(build_report(run_dir, fmt="json"))
    assert data["format"] == "rai-harness/report-summary" and data["version"] == 1
    assert data["run"]["status"] == "incomplete" and data["run"]["problems"]
    p = data["providers"]["smollm2"]
    leak = p["suites"]["pii.leakage"]["metrics"]["leak_rate"]
    assert 0 <= leak["ci_low"] <= leak["value"] <= leak["ci_high"] <= 1 and leak["direction"] == "lower"
    assert p["efficiency"]["latency_s"]["p95"] > 0 and p["efficiency"]["cost"]["priced_by"] == "hourly"
    assert data["providers"]["llama-local"]["efficiency"]["cost"]["per_1k_calls_usd"] is None
    assert "error" in p["suites"]["factuality.truthfulqa_gen"]
    guard = data["guard_comparisons"]
    assert guard and all(g["guarded"] == "smollm2+guard" and g["unguarded"] == "smollm2" for g in guard)


# ---------------------------------------------------------------------------------------------
# Errors and the CLI
# ---------------------------------------------------------------------------------------------


def test_cli_writes_reports(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(run_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 100_000 and "wrote" in result.stderr
    result = runner.invoke(app, ["report", str(run_dir), "--format", "md", "-o", "-"])
    assert result.exit_code == 0 and result.stdout.startswith("## ")
    result = runner.invoke(app, ["report", str(run_dir), "--format", "json", "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0 and json.loads((tmp_path / "s.json").read_text())["run"]["name"]


def test_cli_missing_run_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = runner.invoke(app, ["report", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "run folder not found" in result.stderr
    assert "rai run" in result.stderr


def test_cli_bad_inputs(tmp_path: Path, run_dir: Path) -> None:
    tmp_path.joinpath("empty").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no run.json" in result.stderr
    result = runner.invoke(app, ["report", str(run_dir), "--format", "pdf"])
    assert result.exit_code == 2 and "use html, md or json" in result.stderr
    result = runner.invoke(app, ["report", str(run_dir), "--policy", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2 and "p.yaml" in result.stderr and "policy file not found" in result.stderr


def test_bad_run_records(tmp_path: Path, run_dir: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "run.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read the run record"):
        load_run(folder)
    data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    (folder / "run.json").write_text(json.dumps({**data, "schema_version": 99}), encoding="utf-8")
    with pytest.raises(ConfigError, match="upgrade rai-harness"):
        load_run(folder)
    (folder / "run.json").write_text(json.dumps({**data, "status": None}), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a valid run record"):
        load_run(folder)


def test_render_report_default_paths(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path, n_samples=40, seed=4, hostile=False)
    assert render_report(tmp_path) == tmp_path / "report.html"
    md = render_report(tmp_path, fmt="md")
    assert md == tmp_path / "report.md" and "[report.html](report.html)" in md.read_text(encoding="utf-8")
    assert render_report(tmp_path, fmt="json") == tmp_path / "report-summary.json"


def test_synthetic_run_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_synthetic_run(a, n_samples=50, seed=11)
    write_synthetic_run(b, n_samples=50, seed=11)
    assert (a / "run.json").read_bytes() == (b / "run.json").read_bytes()
    assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()
