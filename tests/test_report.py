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
    # The scorers' info(): the synthetic run's stand-in for minilm-toxicity says what it is.
    assert "minilm-toxicity" in text and "synthetic stand-in (toxicity lexicon)" in text
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
        "Leak rate by attack type",
        "Leak rate by data type (share of prompts leaking a value of that type)",
        "Bias score, ambiguous contexts (s_AMB) by category",
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
    assert "&lt;EMAIL_ADDRESS&gt;" in redacted
    # Regex alone cannot find names: the banner says so instead of claiming all PII is masked.
    assert "person names are NOT masked" in _text(redacted)


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
    assert "### Executive summary" in md and "No gate policy was applied" in md
    assert "### Limitations" in md and "Guard/scorer overlap" in md
    # n beside every interval (the suites' rates get exact Clopper-Pearson intervals)
    assert re.search(r"\(\d+/\d+; 95% Clopper-Pearson \(exact\)\)", md)


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
    elsewhere = render_report(tmp_path, tmp_path / "out" / "summary.md", fmt="md")
    assert str(tmp_path) not in elsewhere.read_text(encoding="utf-8")  # no absolute path of the machine
    assert render_report(tmp_path, fmt="json") == tmp_path / "report-summary.json"


def test_synthetic_run_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_synthetic_run(a, n_samples=50, seed=11)
    write_synthetic_run(b, n_samples=50, seed=11)
    assert (a / "run.json").read_bytes() == (b / "run.json").read_bytes()
    assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()


# ---------------------------------------------------------------------------------------------
# Issue 10: n beside intervals, significant Pareto marks, summary, limitations, redaction, paths
# ---------------------------------------------------------------------------------------------


def test_n_and_method_beside_every_interval(page: str, record: RunRecord, run_dir: Path) -> None:
    from rai_harness.report.fmt import interval_label

    scorecard = page.split('<section id="scorecard">', 1)[1].split("</section>", 1)[0]
    # Every scorecard value with an interval has its n in plain sight, not only in a tooltip.
    assert scorecard.count('class="cell-ci"') == scorecard.count('class="cell-n"') > 10
    leak = record.suites["pii.leakage"].results["smollm2"].metrics["leak_rate"]
    assert interval_label(leak, "rate") in _text(scorecard)
    assert re.search(r"\d+/\d+; 95% Clopper-Pearson \(exact\)", _text(scorecard))
    # Breakdown tables and bar labels carry n too.
    assert re.search(r"\d+\.\d% \[\d+\.\d, \d+\.\d\] \(\d+/\d+; 95% Clopper-Pearson \(exact\)\)", _text(page))
    assert re.search(r">[^<]*%  n&#61;\d+<", page)
    md = build_report(run_dir, fmt="md")
    assert re.search(
        r"\| Leak rate \| \d+\.\d% \\\[[\d.]+, [\d.]+\\\] \(\d+/\d+; 95% Clopper-Pearson \(exact\)\)", md
    )


def test_zero_width_interval_never_reads_as_certainty() -> None:
    spec = _spec("rate", "lower")
    zero = Estimate(value=0.0, ci_low=0.0, ci_high=0.0, n=6, successes=0, method="bootstrap")
    # A rate with its count: the exact (Clopper-Pearson) interval is shown, and why.
    text = fmt_estimate(zero, spec, with_n=True)
    assert text.startswith("0.0% [0.0, 45.9] (0/6; 95% Clopper-Pearson (exact);") and "zero width" in text
    assert "[0.0, 0.0]" not in text
    # A clustered rate (older run records): its trials are the clusters, not the outputs.
    clustered = zero.model_copy(update={"n": 48, "n_clusters": 12, "method": "expanded-cluster-bootstrap"})
    assert "[0.0, 26.5]" in fmt_estimate(clustered, spec, with_n=True)
    # A rate without a recorded count (a bootstrap mean may be a gap): no fake k/n, but flagged
    # and with what the result would allow on yes/no items.
    uncounted = fmt_estimate(zero.model_copy(update={"successes": None}), spec, with_n=True)
    assert uncounted.startswith("0.0% [0.0, 0.0] (n = 6;") and "not certainty" in uncounted
    assert "would allow up to 45.9%" in uncounted
    gap = Estimate(value=0.25, ci_low=0.0, ci_high=0.55, n=36, n_clusters=8, method="cluster-bootstrap")
    assert "9/36" not in fmt_estimate(gap, spec, with_n=True)
    # A score without a count: flagged as no spread, with n and the method.
    score = Estimate(value=0.647, ci_low=0.647, ci_high=0.647, n=17, method="bootstrap")
    text = fmt_estimate(score, _spec("score", "neutral"), with_n=True)
    assert "n = 17" in text and "not certainty" in text and "bootstrap" in text
    # Ordinary intervals: k/n for rates, n and clusters otherwise, and the method's name.
    ok = Estimate(value=0.25, ci_low=0.1, ci_high=0.4, n=40, successes=10, method="wilson")
    assert fmt_estimate(ok, spec, with_n=True) == "25.0% [10.0, 40.0] (10/40; 95% Wilson)"
    gap = Estimate(value=0.2, ci_low=0.0, ci_high=0.5, n=34, n_clusters=8, method="cluster-bootstrap")
    assert fmt_estimate(gap, spec, with_n=True).endswith("(n = 34, 8 clusters; 95% cluster bootstrap)")
    # A method the stats package adds later is named, not dropped.
    assert "95% bootstrap t" in fmt_estimate(
        Estimate(value=0.3, ci_low=0.2, ci_high=0.4, n=9, method="bootstrap-t"), _spec("score"), with_n=True
    )


def test_significant_front_marks_only_real_dominance() -> None:
    from rai_harness.report.tradeoffs import significant_front

    # Two providers, differences not significant on either axis: a tie, nobody dominated.
    assert significant_front([[0, 0], [0, 0]], [[0, 0], [0, 0]]) == [[], []]
    # 0 is significantly better on y and tied on x: 1 is dominated by 0.
    assert significant_front([[0, 0], [0, 0]], [[0, 1], [-1, 0]]) == [[], [0]]
    # Better on one axis, worse on the other: a genuine trade-off, both on the front.
    assert significant_front([[0, 1], [-1, 0]], [[0, -1], [1, 0]]) == [[], []]


def _tradeoff_captions(page: str) -> list[str]:
    return [html_lib.unescape(c) for c in re.findall(r"<figcaption>(Suite .*?)</figcaption>", page)]


def test_noise_gives_ties_not_pareto_marks(tmp_path: Path) -> None:
    """Two copies of one model differ only by noise: no chart may crown either of them."""
    twins = (
        SyntheticProvider("model-a", model="m"),
        SyntheticProvider("model-b", model="m"),
    )
    write_synthetic_run(tmp_path, n_samples=80, providers=twins, seed=5, hostile=False)
    page = build_report(tmp_path)
    captions = _tradeoff_captions(page)
    assert captions
    ties = [c for c in captions if "Tie: no provider is significantly better" in c]
    # Synthetic twins share their latency and quality distributions; allow the odd chance finding.
    assert len(ties) >= len(captions) - 2, captions
    for c in ties:
        assert "Pareto-optimal (" not in c and "n: model-a" in c


def test_unpriced_providers_are_explained(page: str) -> None:
    section = _text(page.split('<section id="tradeoffs">', 1)[1].split("</section>", 1)[0])
    assert "Cost charts leave out 1 unpriced provider (llama-local)" in section
    assert "pricing:" in section


def test_executive_summary_and_limitations(page: str, run_dir: Path) -> None:
    assert page.index('<section id="summary">') < page.index('<section id="scorecard">')
    summary = _text(page.split('<section id="summary">', 1)[1].split("</section>", 1)[0])
    assert "The run is incomplete" in summary and "No gate policy was applied" in summary
    assert re.search(
        r"highest is \S+, \d+\.\d% \[[\d.]+, [\d.]+\] \(\d+/\d+; 95% Clopper-Pearson \(exact\)\)", summary
    )
    assert "Guard smollm2+guard vs smollm2: significantly better on" in summary
    assert "calls failed" in summary
    limits = _text(page.split('<section id="limitations">', 1)[1].split("</section>", 1)[0])
    assert "Dataset sizes" in limits and "bias.bbq" in limits and "Small samples" in limits
    assert "scored by an automatic classifier" in limits
    assert "Guard/scorer overlap: smollm2+guard's guard uses minilm-toxicity" in limits
    assert "partly by construction" in limits
    assert re.search(r"comes (entirely )?from blocked answers", limits)
    guard = _text(page.split('<section id="guard">', 1)[1].split("</section>", 1)[0])
    assert "How much comes from blocked answers" in guard
    pytest.importorskip("rai_harness.gate.evaluate")
    with_policy = _text(build_report(run_dir, policy=ROOT / "evals" / "policies" / "default.yaml"))
    assert re.search(r"Gate policy \S+: (PASS|FAIL|ERROR): \d+ of \d+ checks passed", with_policy)


def test_executive_summary_says_when_every_provider_ties() -> None:
    """Two providers with the same value: no "highest is a ... Best: a" for one of them."""
    from types import SimpleNamespace

    from rai_harness.report.findings import executive_summary

    spec = MetricSpec(name="leak_rate", display="Leak rate", direction="lower", definition="d", headline=True)

    def summary(a: float, b: float) -> str:
        results = {
            pid: SimpleNamespace(metrics={"leak_rate": Estimate(value=v, ci_low=0.0, ci_high=0.46, n=6)})
            for pid, v in (("model-a", a), ("model-b", b))
        }
        suite = SimpleNamespace(name="pii.leakage", error=None, metrics=[spec], results=results)
        record = SimpleNamespace(status="complete", problems=[], providers={})
        findings = executive_summary(record, [suite], [], None, [], [])  # type: ignore[arg-type]
        return " ".join(f.text for f in findings if f.text.startswith("Leak rate"))

    tied = summary(0.0, 0.0)
    assert "all 2 providers have the same value; model-a: 0.0%" in tied
    assert "highest" not in tied and "Best" not in tied
    apart = summary(0.0, 0.5)
    assert "highest is model-b, 50.0%" in apart and "Best: model-a, 0.0%" in apart


def test_blocked_share_splits_the_change_exactly() -> None:
    from types import SimpleNamespace

    from rai_harness.report.findings import blocked_shares
    from rai_harness.report.samples import SampleStats

    spec = MetricSpec(
        name="stereotype_rate",
        display="Stereotype rate",
        direction="lower",
        unit="rate",
        definition="d",
        sample_key="stereotyped",
    )
    suite = SimpleNamespace(name="bias.stereotype", error=None, metrics=[spec])
    rec = SimpleNamespace(suites={"bias.stereotype": suite})

    stats = SampleStats(found=True)
    unguarded = {(f"s{i}", 0): (1.0 if i < 2 else 0.0, False) for i in range(6)}
    guarded = {(f"s{i}", 0): (0.0, i < 2) for i in range(6)}  # the two stereotyped answers blocked
    stats.paired = {
        ("bias.stereotype", "stereotyped", "m+guard"): guarded,
        ("bias.stereotype", "stereotyped", "m"): unguarded,
    }
    stats.binary = {("bias.stereotype", "stereotyped")}
    (share,) = blocked_shares(rec, [("m+guard", "m")], stats)  # type: ignore[arg-type]
    assert (share.n, share.blocked) == (6, 2)
    assert share.from_blocked == pytest.approx(-1 / 3) and share.from_answered == pytest.approx(0.0)
    assert share.sentence() == (
        "m+guard vs m, bias.stereotype per-sample stereotyped: 33.3% \u2192 0.0% (\u221233.3 pp over 6 "
        "paired items, 2 blocked by the guard); the change comes entirely from blocked answers."
    )


def test_redact_names_and_partial_contacts(tmp_path: Path) -> None:
    """--redact masks names (presidio) and partial or obfuscated e-mails and phones."""
    secrets = {
        "name": "Margaret Whitfield",
        "partial_email": "m.whitfield@",
        "obfuscated_email": "m dot whitfield at example dot org",
        "domain": "@whitfield-family.net",
        "local_phone": "555-0187",
        "masked_phone": "(415) 555-01XX",
    }
    leaky = (
        f"Sure: {secrets['name']} can be reached at {secrets['partial_email']} (or "
        f"{secrets['obfuscated_email']}, mail {secrets['domain']}), phone {secrets['local_phone']} or "
        f"{secrets['masked_phone']}."
    )
    write_synthetic_run(tmp_path, n_samples=40, seed=2, hostile=False)
    path = tmp_path / "samples.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        d = json.loads(line)
        if d["metadata"]["suite"] == "pii.emission" and d["status"] == "ok" and d.get("scores"):
            d["output"] = leaky + " Ask for Qzorb Vantrellis."
            d["scores"]["pii_score"] = 0.999
            # The suite's own scan found a name no pattern knows: --redact must mask it anyway.
            start = d["output"].index("Qzorb")
            d["scores"]["spans"] = [[start, start + len("Qzorb Vantrellis"), "PERSON"], ["bad"], [5, 2, "X"]]
            lines[i] = json.dumps(d)
            break
    else:  # pragma: no cover - the synthetic run always has pii.emission samples
        pytest.fail("no pii.emission sample")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plain = build_report(tmp_path)
    assert secrets["name"] in plain and secrets["local_phone"] in plain
    regex = build_report(tmp_path, redact=True, redactor="regex")
    for key in ("partial_email", "obfuscated_email", "domain", "local_phone", "masked_phone"):
        assert html_lib.escape(secrets[key]).replace("=", "&#61;") not in regex, key
    assert "Qzorb Vantrellis" in plain and "Qzorb" not in regex and "Vantrellis" not in regex
    pytest.importorskip("presidio_analyzer")
    try:
        full = build_report(tmp_path, redact=True, redactor="presidio")
    except Exception as exc:  # pragma: no cover - spaCy model missing in this environment
        pytest.skip(f"presidio cannot load: {exc}")
    for value in secrets.values():
        assert html_lib.escape(value).replace("=", "&#61;") not in full, value
    assert "Margaret" not in full and "Whitfield" not in full
    assert "&lt;PERSON&gt;" in full and "names, e-mails, phones" in _text(full)


def test_no_absolute_paths_of_the_machine(tmp_path: Path) -> None:
    from rai_harness.report.viewmodel import PathScrubber

    run = tmp_path / "work" / "run"
    write_synthetic_run(run, n_samples=40, seed=2, hostile=False)
    data = json.loads((run / "run.json").read_text(encoding="utf-8"))
    home = "/home/alice/projects/audit"
    data["config_path"] = f"{home}/evals/quickstart.yaml"
    data["problems"] = [f"journal at {run}/journal.sqlite is locked"]
    data["status"] = "incomplete"
    for d in data["datasets"]:
        d["path"] = f"{home}/datasets/{d['name']}.jsonl"
    data["config"]["providers"][1]["guard"]["policy"] = f"{home}/guardrails/default.yaml"
    data["providers"]["smollm2"]["model_info"]["path"] = "C:\\Users\\alice\\models\\smollm2"
    (run / "run.json").write_text(json.dumps(data), encoding="utf-8")
    for fmt in ("html", "md"):
        page = build_report(run, fmt=fmt)  # type: ignore[arg-type]
        assert "/home/alice" not in page and str(tmp_path) not in page and "Users" not in page, fmt
    text = _text(build_report(run))
    assert "quickstart.yaml" in text and "default.yaml" in text and "smollm2" in text
    assert "journal at journal.sqlite is locked" in text  # inside the run folder: relative to it
    scrub = PathScrubber(run)
    assert scrub.text("10 tok/s, 37/300, and/or https://host:8000/v1/chat") == (
        "10 tok/s, 37/300, and/or https://host:8000/v1/chat"
    )
    assert scrub.text(f"see {run}/samples.jsonl") == "see samples.jsonl"


def test_print_stylesheet_keeps_headings_with_evidence(page: str) -> None:
    css = page.split("<style>", 1)[1].split("</style>", 1)[0]
    printing = css.split("@media print", 1)[1]
    assert "break-after: avoid" in printing and "break-inside: avoid" in printing
    # Evidence headings are <summary> elements: printed as headings, never hidden.
    assert re.search(r"details > summary \{[^}]*display: block", printing)
    assert "details > summary { display: none; }" not in printing


def test_guard_rail_health_is_shown(record: RunRecord, run_dir: Path) -> None:
    """Rail errors, timeouts and slow rails (run.json ``providers[*].guard``) appear beside the guard."""
    from types import SimpleNamespace

    from rai_harness.report.html import render_html
    from rai_harness.report.view import build_view

    health = SimpleNamespace(
        rail_errors=2, rail_timeouts=1, failed_calls=3, slow_rails=5, slow_by_rail={"input:toxic-input": 5}
    )
    providers = dict(record.providers)
    providers["smollm2+guard"] = providers["smollm2+guard"].model_copy(update={"guard": health})
    sick = record.model_copy(update={"providers": providers})
    view = build_view(sick, scan_samples(run_dir, sick, max_examples=1), max_examples=1)
    text = _text(render_html(view))
    guard = _text(render_html(view).split('<section id="guard">', 1)[1].split("</section>", 1)[0])
    assert "rail errors" in guard and "slow rail checks" in guard
    assert "smollm2+guard: 3 rail checks failed or timed out (3 calls failed by them)" in text
    assert "never as allowed or blocked" in text
    assert "5 rail checks were slower than the policy's timeout_ms (input:toxic-input 5)" in text
    # The synthetic run records guard health (schema 3): zero failures, shown as numbers.
    assert sick.providers["smollm2"].guard is None
    assert record.providers["smollm2+guard"].guard is not None
    # Without the field (older records) the columns say so instead of inventing zeros.
    providers["smollm2+guard"] = providers["smollm2+guard"].model_copy(update={"guard": None})
    old = record.model_copy(update={"providers": providers})
    old_view = build_view(old, scan_samples(run_dir, old, max_examples=1), max_examples=1)
    assert "n/a (not recorded)" in _text(render_html(old_view))


def test_method_lists_the_interval_methods_used(page: str) -> None:
    method = _text(page.split('<section id="method">', 1)[1].split("</section>", 1)[0])
    assert re.search(r"Interval methods in this run: .*Clopper-Pearson \(exact\) \(\d+ estimates", method)
    assert "cluster bootstrap" in method


def test_untested_trade_off_reasons_say_what_is_missing():
    from array import array

    import numpy as np

    from rai_harness.report.samples import SampleStats
    from rai_harness.report.tradeoffs import _quantile_ci, _untested_reason

    # The 72-call floor in the note is where a p95's interval gets an upper end.
    assert _quantile_ci(np.arange(71, dtype=float), 0.95) is None
    assert _quantile_ci(np.arange(72, dtype=float), 0.95) is not None
    stats = SampleStats()
    stats.latency["a"] = array("d", [0.1] * 42)
    assert _untested_reason("p95", "a", stats) == "42 calls with a latency: a p95 is bounded from 72"
    assert _untested_reason("cost", "b", stats) == "no per-call cost in the samples file"
