"""``rai guard check`` and ``rai guard audit`` through typer's CliRunner, with a keyword policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rai_harness.cli_guard import guard_app

POLICY = """\
name: kw
classifiers:
  insults: {backend: keyword, options: {insult: [idiot, moron]}}
  contacts: {backend: keyword, options: {EMAIL: [jane@example.com], PHONE: [555-0100]}}
input:
  - {name: insult-in, classifier: insults, threshold: 0.5, action: block}
  - {name: contacts-in, classifier: contacts, threshold: 0.5, action: redact}
output:
  - {name: insult-out, classifier: insults, threshold: 0.5, action: flag}
"""

runner = CliRunner()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def verdicts(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_check_text_prints_verdict_without_pii(policy):
    result = runner.invoke(guard_app, ["check", "--policy", str(policy), "mail jane@example.com"])
    assert result.exit_code == 0, result.output
    (verdict,) = verdicts(result.stdout)
    assert verdict["action"] == "redact" and verdict["redacted_text"] == "mail <EMAIL>"
    contacts = next(r for r in verdict["rails"] if r["rail"] == "contacts-in")
    assert contacts["scores"] == {"EMAIL": 1.0, "PHONE": 0.0}
    assert contacts["findings"] == [{"start": 5, "end": 21, "label": "EMAIL", "score": 1.0}]
    assert "jane@example.com" not in result.stdout  # offsets and labels only


def test_check_input_file_and_fail_on(policy, tmp_path):
    lines = tmp_path / "in.jsonl"
    lines.write_text(
        json.dumps({"id": "a", "text": "hello"})
        + "\n\n"
        + json.dumps({"text": "you idiot, call 555-0100"})
        + "\n"
    )
    result = runner.invoke(guard_app, ["check", "-p", str(policy), "--input", str(lines)])
    assert result.exit_code == 0, result.output
    first, second = verdicts(result.stdout)
    assert (first["id"], first["line"], first["action"]) == ("a", 1, "allow")
    assert (second["line"], second["action"], second["blocked"]) == (3, "block", True)
    assert second["redacted_text"] is None  # nothing of a blocked text is echoed
    failed = runner.invoke(guard_app, ["check", "-p", str(policy), "-i", str(lines), "--fail-on", "block"])
    assert failed.exit_code == 1 and len(verdicts(failed.stdout)) == 2
    clean = runner.invoke(guard_app, ["check", "-p", str(policy), "hello", "--fail-on", "flag"])
    assert clean.exit_code == 0


def test_a_byte_order_mark_on_the_first_line_is_read(policy, tmp_path):
    # Windows tools write UTF-8 with a BOM; only line 1 may carry one.
    lines = tmp_path / "bom.jsonl"
    lines.write_bytes(b"\xef\xbb\xbf" + b'{"text": "you idiot"}\n' + b'\xef\xbb\xbf{"text": "hi"}\n')
    result = runner.invoke(guard_app, ["check", "-p", str(policy), "--input", str(lines)])
    first, second = verdicts(result.stdout)
    assert first["action"] == "block" and "error" in second and second["line"] == 2
    assert result.exit_code == 2
    blank = tmp_path / "bom-blank.jsonl"  # a BOM, then an empty first line
    blank.write_bytes(b"\xef\xbb\xbf\n" + b'{"text": "hi"}\n')
    result = runner.invoke(guard_app, ["check", "-p", str(policy), "--input", str(blank)])
    assert result.exit_code == 0 and [v["line"] for v in verdicts(result.stdout)] == [2]


def test_check_stdin_output_stage(policy):
    stdin = json.dumps({"text": "what a moron", "prompt": "describe him"}) + "\n"
    result = runner.invoke(guard_app, ["check", "-p", str(policy), "--stage", "output", "-"], input=stdin)
    assert result.exit_code == 0, result.output
    (verdict,) = verdicts(result.stdout)
    assert verdict["stage"] == "output" and verdict["action"] == "flag"
    assert [r["rail"] for r in verdict["rails"]] == ["insult-out"]


def test_check_errors_exit_2(policy, tmp_path):
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"text": "ok"}\n{"txt": "x"}\n')
    result = runner.invoke(guard_app, ["check", "-p", str(policy), "-i", str(bad_line)])
    assert result.exit_code == 2 and "line 2.text" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(POLICY.replace("threshold: 0.5, action: block", "treshold: 0.5, action: block"))
    result = runner.invoke(guard_app, ["check", "-p", str(broken), "hi"])
    assert result.exit_code == 2
    assert "input[0].treshold" in result.stderr and "did you mean 'threshold'" in result.stderr
    assert runner.invoke(guard_app, ["check", "-p", str(policy)]).exit_code == 2  # nothing to check
    assert runner.invoke(guard_app, ["check", "-p", str(policy), "--stage", "middle", "x"]).exit_code == 2
    assert runner.invoke(guard_app, ["check", "-p", str(tmp_path / "none.yaml"), "x"]).exit_code == 2


def test_check_refuses_a_stage_without_rails(tmp_path):
    input_only = tmp_path / "input-only.yaml"
    input_only.write_text(POLICY.split("output:")[0])
    result = runner.invoke(guard_app, ["check", "-p", str(input_only), "--stage", "output", "you idiot"])
    assert result.exit_code == 2 and result.stdout == ""  # no verdict: nothing would be checked
    assert "no output rails" in result.stderr and "--stage input" in result.stderr
    flagged = runner.invoke(guard_app, ["check", "-p", str(input_only), "--fail-on", "block", "you idiot"])
    assert flagged.exit_code == 1


def test_audit_table_and_json(policy, tmp_path):
    data = tmp_path / "labelled.csv"
    data.write_text(
        "text,label,groups\n"
        "you idiot,1,women\n"
        "what a moron,1,\n"
        "hello there,0,women\n"
        "idiotic idea,1,men\n"
        "nice day,0,men\n"
    )
    table = runner.invoke(
        guard_app, ["audit", "-p", str(policy), "--data", str(data), "--group-field", "groups"]
    )
    assert table.exit_code == 0, table.output
    assert "insult-in" in table.stdout and "BPSN" in table.stdout and "n/a" in table.stdout
    as_json = runner.invoke(guard_app, ["audit", "-p", str(policy), "-d", str(data), "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    insult = report["rails"][0]
    assert insult["rail"] == "insult-in"
    # "idiotic" is not the word "idiot": one miss, no false alarm.
    assert (insult["metrics"]["tp"], insult["metrics"]["fn"], insult["metrics"]["fp"]) == (2, 1, 0)
    assert insult["metrics"]["precision"] == 1.0 and insult["latency"]["single_n"] == 5


def test_audit_errors_exit_2(policy, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "maybe"}\n')
    result = runner.invoke(guard_app, ["audit", "-p", str(policy), "-d", str(data)])
    assert result.exit_code == 2 and "line 1.label" in result.stderr
    result = runner.invoke(guard_app, ["audit", "-p", str(policy), "-d", str(data), "--label-field", "y"])
    assert result.exit_code == 2 and "missing field 'y'" in result.stderr


def test_audit_table_fits_80_columns(policy, tmp_path):
    # A CI log is 80 columns wide: rail names, headers and thresholds must be shown whole.
    data = tmp_path / "labelled.csv"
    data.write_text("text,label\nyou idiot,1\nhello there,0\nwhat a moron,1\nnice day,0\n")
    result = runner.invoke(guard_app, ["audit", "-p", str(policy), "-d", str(data)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "\u2026" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for word in ("insult-in", "contacts-in", "precision", "recall", "ROC-AUC", "single p95 ms"):
        assert word in result.stdout
    assert "contacts-in: triggers at EMAIL >= 0.5, PHONE >= 0.5" in result.stdout
