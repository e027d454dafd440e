"""Judge calibration: agreement statistics on hand-worked values, `rai judge calibrate`, gating on kappa."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rai_harness.cli import app
from rai_harness.config import parse_provider
from rai_harness.errors import ConfigError
from rai_harness.gate import evaluate, parse_gate_policy
from rai_harness.run.calibrate import calibrate_sync, load_labelled
from rai_harness.stats import UNPARSED, agreement, cohen_kappa
from rai_harness.suites.data import project_datasets_dir

GRADING = project_datasets_dir() / "judge_simpleqa" / "grading.jsonl"
HALUEVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "halueval" / "qa_one-turn_data.json"


# -- statistics on hand-worked values ---------------------------------------------------------

GOLD = ["yes"] * 4 + ["no"] * 6
JUDGED = ["yes", "yes", "yes", "no", "no", "no", "no", "no", "yes", "yes"]


def test_kappa_by_hand() -> None:
    # p_o = 7/10; marginals gold (4, 6), judge (5, 5): p_e = (4*5 + 6*5)/100 = 0.5; kappa = 0.2/0.5.
    assert cohen_kappa(GOLD, JUDGED, ["yes", "no"]) == pytest.approx(0.4)
    from sklearn.metrics import cohen_kappa_score

    assert cohen_kappa(GOLD, JUDGED, ["yes", "no"]) == pytest.approx(cohen_kappa_score(GOLD, JUDGED))
    assert cohen_kappa(["a"] * 5, ["a"] * 5, ["a", "b"]) is None  # chance agreement 1: undefined
    assert cohen_kappa(["a", "b"], ["b", "a"], ["a", "b"]) == pytest.approx(-1.0)


def test_agreement_with_an_unparsed_reply_by_hand() -> None:
    a = agreement([*GOLD, "yes"], [*JUDGED, None], ["yes", "no"], n_resamples=500, seed=1)
    # Unparsed is its own column: p_o = 7/11, p_e = (5*5 + 6*5 + 0*1)/121 = 55/121, kappa = 1/3.
    assert a.kappa.value == pytest.approx(1 / 3)
    assert a.accuracy.value == pytest.approx(7 / 11) and a.accuracy.method == "clopper-pearson"
    assert a.coverage.value == pytest.approx(10 / 11)
    assert a.columns == ("yes", "no", UNPARSED)
    assert a.confusion == ((3, 1, 1), (2, 4, 0))
    assert a.confusion_rates["yes"]["yes"].value == pytest.approx(3 / 5)
    assert a.confusion_rates["no"]["no"].value == pytest.approx(4 / 6)
    assert a.kappa.ci_low is not None and a.kappa.ci_high is not None
    assert a.kappa.ci_low < 1 / 3 < a.kappa.ci_high
    json.dumps(a.to_dict())  # the calibration file format


def test_agreement_rejects_unknown_labels() -> None:
    with pytest.raises(ValueError, match="not one of"):
        agreement(["yes"], ["maybe"], ["yes", "no"])
    with pytest.raises(ValueError, match="2 gold labels"):
        agreement(["yes", "no"], ["yes"], ["yes", "no"])


# -- labelled sets ------------------------------------------------------------------------------


def test_the_shipped_grading_set_is_balanced_and_valid() -> None:
    rubric, items, info = load_labelled(GRADING)
    assert rubric.name == "simpleqa_grader" and len(items) == 48 and info.rows == 48
    counts = {label: sum(i.gold == label for i in items) for label in rubric.labels}
    assert counts == {"CORRECT": 16, "INCORRECT": 16, "NOT_ATTEMPTED": 16}


def test_bad_labelled_rows_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"rubric": "simpleqa_grader", "question": "q", "target": "t", "label": "A"}) + "\n"
    )
    with pytest.raises(ConfigError, match="lacks predicted_answer") as err:
        load_labelled(bad)
    assert "bad.jsonl" in str(err.value)
    with pytest.raises(ConfigError, match="no such labelled set"):
        load_labelled(tmp_path / "missing.jsonl")


@pytest.mark.skipif(not HALUEVAL.exists(), reason="needs ../shared/data/halueval")
def test_halueval_pairs_become_two_items_each() -> None:
    rubric, items, _ = load_labelled(HALUEVAL, limit=3)
    assert rubric.name == "halueval_qa" and len(items) == 6
    assert [i.gold for i in items] == ["no", "yes"] * 3


# -- calibrating a scripted judge on the fake server ------------------------------------------

LETTER = {"CORRECT": "A", "INCORRECT": "B", "NOT_ATTEMPTED": "C"}


def judge_config(base_url: str) -> dict[str, object]:
    return {
        "kind": "openai",
        "id": "grader",
        "model": "gpt-4o-mini",
        "base_url": base_url,
        "api_key_env": "RAI_TEST_API_KEY",
        "timeout_s": 5.0,
        "max_retries": 1,
    }


def scripted_grader(spoiled: dict[str, str]) -> dict[str, str]:
    """A judge that grades like the labels, except the predicted answers in ``spoiled``."""
    rows = [json.loads(line) for line in GRADING.read_text().splitlines()]
    return {
        f"Predicted answer: {r['predicted_answer']}\n```": spoiled.get(
            r["predicted_answer"], LETTER[r["label"]]
        )
        for r in rows
    }


def test_calibrate_a_scripted_judge(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    # Two malformed replies (recorded as unparsed) and one wrong grade (Sydney graded CORRECT).
    fake_server.configure(script=scripted_grader({"Canberra": "hmm", "So": "B: CORRECT", "Sydney": "A"}))
    judge = parse_provider(judge_config(fake_server.base_url), file=None, key_path="judge")
    cal = calibrate_sync(judge, GRADING, out_dir=tmp_path / "cal", n_resamples=300)
    a = cal.agreement
    assert a.n == 48 and a.accuracy.value == pytest.approx(45 / 48)
    assert a.coverage.value == pytest.approx(46 / 48)
    assert a.confusion[0] == (15, 0, 0, 1)  # CORRECT row: "Canberra" unparsed
    assert a.confusion[1] == (1, 14, 0, 1)  # INCORRECT row: Sydney judged CORRECT, "So" ambiguous
    assert a.confusion[2] == (0, 0, 16, 0)
    assert 0.85 < (a.kappa.value or 0) < 1.0
    saved = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert saved["rubric"] == "simpleqa_grader" and saved["judge"]["id"] == "grader"
    assert saved["calls"]["status"] == {"parsed": 46, "unparseable": 1, "ambiguous": 1}
    assert {d["gold"] for d in saved["disagreements"]} == {"CORRECT", "INCORRECT"}
    assert "sk-test" not in (tmp_path / "cal" / "calibration.json").read_text()
    # Resumable and cached: a second calibration into the same folder makes no call.
    before = fake_server.stats()["calls"]
    again = calibrate_sync(judge, GRADING, out_dir=tmp_path / "cal", n_resamples=300)
    assert fake_server.stats()["calls"] == before and again.calls["reused"] == 48


@pytest.mark.skipif(not HALUEVAL.exists(), reason="needs ../shared/data/halueval")
def test_calibrate_on_halueval_with_a_constant_judge(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    fake_server.configure(reply="No.")  # never hallucinated: right half the time, no agreement beyond chance
    judge = parse_provider(judge_config(fake_server.base_url), file=None, key_path="judge")
    cal = calibrate_sync(judge, HALUEVAL, out_dir=tmp_path / "cal", limit=10, n_resamples=200)
    assert cal.agreement.n == 20 and cal.agreement.accuracy.value == pytest.approx(0.5)
    assert cal.agreement.kappa.value == pytest.approx(0.0)


def test_cli_calibrate_then_gate_on_judge_kappa(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    from test_judge import ANSWERS, VERDICTS, judged_config

    fake_server.configure(script={**scripted_grader({}), **VERDICTS, **ANSWERS})
    cfg = judged_config(tmp_path, fake_server.base_url, fake_server.base_url)
    cal_dir = tmp_path / "cal"
    result = CliRunner().invoke(
        app,
        [
            "judge",
            "calibrate",
            "--judge",
            "grader",
            "--config",
            str(cfg),
            "--data",
            str(GRADING),
            "--out",
            str(cal_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "kappa" in result.output and "1.000" in result.output
    data = yaml.safe_load(cfg.read_text())
    data["suites"][0]["judge_calibration"] = str(cal_dir / "calibration.json")
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    assert CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "-q"]).exit_code == 0
    from rai_harness.record import read_run_record

    record = read_run_record(out)
    suite = record.suites["factuality.short_qa"]
    assert suite.judge is not None and suite.judge.calibration is not None
    assert suite.judge.calibration["kappa"]["value"] == pytest.approx(1.0)
    assert suite.judge.calibration["n"] == 48 and suite.judge.calibration["same_judge"] is True
    kappa = suite.results["model"].metrics["judge_kappa"]
    assert kappa.value == pytest.approx(1.0) and kappa.ci_low is not None

    def verdict(minimum: float) -> str:
        policy = parse_gate_policy({"rules": [{"metric": "factuality.short_qa:judge_kappa", "min": minimum}]})
        return evaluate(record, policy).status

    assert verdict(0.5) == "pass"
    assert verdict(1.01) == "fail"


def test_gate_on_kappa_of_an_uncalibrated_judge_is_an_error(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    from test_judge import ANSWERS, VERDICTS, judged_config, run

    fake_server.configure(script={**VERDICTS, **ANSWERS})
    record = run(judged_config(tmp_path, fake_server.base_url, fake_server.base_url), tmp_path / "out")
    policy = parse_gate_policy({"rules": [{"metric": "factuality.short_qa:judge_kappa", "min": 0.2}]})
    assert evaluate(record, policy).status == "error"  # never passes because the number is missing


def test_calibrate_cli_errors(tmp_path):
    result = CliRunner().invoke(app, ["judge", "calibrate", "--judge", "nope", "--data", str(GRADING)])
    assert result.exit_code == 2 and "needs --config" in result.output
