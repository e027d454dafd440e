"""Guard audit: metrics checked against values worked out by hand, and data-file errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rai_harness.classifiers.base import LabelScores
from rai_harness.errors import ConfigError, RunError
from rai_harness.guardrails import Guard, Rail
from rai_harness.guardrails.audit import (
    audit_guard,
    binary_metrics,
    bnsp_auc,
    bpsn_auc,
    load_labelled,
    power_mean,
    roc_auc,
    subgroup_auc,
)

# A table small enough to work every AUC out by hand (pairs counted below).
#  row  label  score  groups
TABLE = [
    (1, 0.9, "A"),
    (0, 0.8, "A"),
    (1, 0.3, "A"),
    (0, 0.2, ""),
    (1, 0.7, ""),
    (0, 0.6, "B"),
    (1, 0.4, "B"),
    (1, 0.5, "C"),  # group C has positives only
]
LABELS = [r[0] for r in TABLE]
SCORES = [r[1] for r in TABLE]


def member(group: str) -> list[bool]:
    return [r[2] == group for r in TABLE]


def test_overall_auc_and_threshold_metrics_by_hand():
    # Positives {.9 .3 .7 .4 .5} vs negatives {.8 .2 .6}: pairs won 3+1+2+1+1 = 8 of 15.
    assert roc_auc(LABELS, SCORES) == pytest.approx(8 / 15)
    # At 0.5: TP rows 0,4,7; FP rows 1,5; FN rows 2,6; TN row 3.
    m = binary_metrics(LABELS, [s >= 0.5 for s in SCORES], SCORES)
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 2, 2, 1)
    assert m.precision == pytest.approx(0.6) and m.recall == pytest.approx(0.6) and m.f1 == pytest.approx(0.6)
    assert m.roc_auc == pytest.approx(8 / 15)
    nothing = binary_metrics([0, 0], [False, False])
    assert nothing.precision is None and nothing.recall is None and nothing.f1 is None


def test_bias_aucs_group_a_by_hand():
    a = member("A")
    # Subgroup: positives {.9 .3} vs negative {.8}: .9 wins, .3 loses -> 1/2.
    assert subgroup_auc(LABELS, SCORES, a) == pytest.approx(0.5)
    # BPSN: A's negative {.8} vs background positives {.7 .4 .5}: all lose -> 0.
    assert bpsn_auc(LABELS, SCORES, a) == pytest.approx(0.0)
    # BNSP: A's positives {.9 .3} vs background negatives {.2 .6}: .9>.2 .9>.6 .3>.2 -> 3/4.
    assert bnsp_auc(LABELS, SCORES, a) == pytest.approx(0.75)


def test_bias_aucs_group_b_by_hand():
    b = member("B")
    # Subgroup: positive {.4} vs negative {.6} -> 0.
    assert subgroup_auc(LABELS, SCORES, b) == pytest.approx(0.0)
    # BPSN: B's negative {.6} vs background positives {.9 .3 .7 .5}: .9 and .7 win -> 2/4.
    assert bpsn_auc(LABELS, SCORES, b) == pytest.approx(0.5)
    # BNSP: B's positive {.4} vs background negatives {.8 .2}: wins against .2 only -> 1/2.
    assert bnsp_auc(LABELS, SCORES, b) == pytest.approx(0.5)


def test_bias_aucs_undefined_when_a_class_is_missing():
    c = member("C")
    assert subgroup_auc(LABELS, SCORES, c) is None  # positives only
    assert bpsn_auc(LABELS, SCORES, c) is None  # C has no negatives: background positives only
    # BNSP: C's positive {.5} vs background negatives {.8 .2 .6}: beats .2 only -> 1/3.
    assert bnsp_auc(LABELS, SCORES, c) == pytest.approx(1 / 3)


def test_power_mean():
    assert power_mean([0.5, 1.0], p=-5) == pytest.approx(16.5**-0.2)
    assert power_mean([None, 0.8]) == pytest.approx(0.8)
    assert power_mean([None]) is None
    assert power_mean([0.0, 0.9]) == 0.0


# -- the audit over a guard ------------------------------------------------------------------------


class TableClassifier:
    """Scores ``t<i>`` with the table's score for row i (label ``toxic``)."""

    name = "table"
    labels = ("toxic",)
    produces_spans = False

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        self.batches.append(len(texts))
        return [LabelScores(scores={"toxic": SCORES[int(t[1:])]}) for t in texts]

    def info(self) -> dict[str, Any]:
        return {}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_audit_guard_end_to_end(tmp_path):
    rows = [{"text": f"t{i}", "label": lab, "groups": grp} for i, (lab, _, grp) in enumerate(TABLE)]
    rows[0]["groups"] = ["A"]  # a list works as well as a comma-separated string
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    clf = TableClassifier()
    with Guard(
        input_rails=[
            Rail("block", clf, threshold=0.5, action="block"),
            Rail("flag", clf, threshold=0.85, action="flag"),
        ]
    ) as guard:
        report = audit_guard(guard, data, group_field="groups", batch_size=3, single_sample=4)
    assert clf.batches[:3] == [3, 3, 2]  # scored once in batches of 3, shared by both rails
    assert len(clf.batches) == 3 + 4  # plus four one-text timing calls
    assert report.n == 8 and report.positives == 5 and report.stage == "input"
    block, flag = report.rails
    assert (block.metrics.tp, block.metrics.fp) == (3, 2) and block.metrics.roc_auc == pytest.approx(8 / 15)
    assert (flag.metrics.tp, flag.metrics.fp, flag.metrics.precision) == (1, 0, 1.0)
    assert block.latency.single_n == 4 and block.latency.single_p95_ms is not None
    assert block.latency.batched_ms_per_text >= 0 and block.latency.batch_size == 3
    groups = {g.group: g for g in block.groups}
    assert set(groups) == {"A", "B", "C"}
    assert (groups["A"].n, groups["A"].positives, groups["A"].negatives) == (3, 2, 1)
    assert groups["A"].bpsn_auc == pytest.approx(0.0) and groups["B"].bpsn_auc == pytest.approx(0.5)
    assert groups["C"].subgroup_auc is None and groups["C"].bnsp_auc == pytest.approx(1 / 3)
    assert block.bias is not None and block.bias.bpsn_auc == 0.0
    assert (report.guard.tp, report.guard.fp) == (3, 2)  # any rail triggered
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["rails"][0]["groups"][2]["subgroup_auc"] is None


def test_audit_from_policy_with_csv(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "name: kw\nclassifiers:\n  kw: {backend: keyword, options: {toxic: [idiot]}}\n"
        "output:\n  - {name: kw-out, classifier: kw, threshold: 0.5, action: block}\n"
    )
    data = tmp_path / "d.csv"
    data.write_text('text,label,who\n"you idiot",1,"a, b"\nhello,0,a\n"nice, idiot",0.2,b\nbad,yes,\n')
    report = audit_guard(policy, data, stage="output", group_field="who")
    (rail,) = report.rails
    assert report.policy == "kw" and rail.rail == "kw-out"
    assert (rail.metrics.tp, rail.metrics.fp, rail.metrics.fn, rail.metrics.tn) == (1, 1, 1, 1)
    assert [g.group for g in rail.groups] == ["a", "b"]
    with pytest.raises(ConfigError, match="no input rails"):
        audit_guard(policy, data, stage="input")


def test_audit_classifier_failure_is_a_run_error(tmp_path):
    class Broken(TableClassifier):
        def predict(self, texts):
            raise ValueError("boom")

    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "t0", "label": 1}])
    with (
        Guard(input_rails=[Rail("r", Broken(), threshold=0.5, action="block")]) as guard,
        pytest.raises(RunError, match="boom"),
    ):
        audit_guard(guard, data)


# -- data errors -----------------------------------------------------------------------------------


def test_label_forms(tmp_path):
    rows = [{"text": "a", "label": v} for v in (1, 0, True, "false", "yes", 0.7, "0.2")]
    data = load_labelled(write_jsonl(tmp_path / "d.jsonl", rows))
    assert data.labels == (1, 0, 1, 0, 1, 1, 0)


def error(path: Path, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_labelled(path, **kwargs)
    assert info.value.file == str(path)
    return info.value


def test_missing_field_names_line_and_suggests(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 1}, {"txt": "b", "label": 0}])
    err = error(path)
    assert err.key_path == "line 2.text" and "did you mean 'txt'" in str(err)
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": "a", "lable": 1}])
    assert "did you mean 'lable'" in str(error(path))


def test_bad_label_and_text_and_group(tmp_path):
    err = error(
        write_jsonl(tmp_path / "a.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "toxic"}])
    )
    assert err.key_path == "line 2.label" and "'toxic'" in str(err)
    err = error(write_jsonl(tmp_path / "b.jsonl", [{"text": 3, "label": 1}]))
    assert err.key_path == "line 1.text"
    err = error(write_jsonl(tmp_path / "c.jsonl", [{"text": "a", "label": 1, "g": 5}]), group_field="g")
    assert err.key_path == "line 1.g"
    err = error(write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 1}]), group_field="grp")
    assert err.key_path == "line 1.grp"


def test_csv_line_numbers_and_file_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"multi\nline",1\nok,2\n')
    err = error(path)
    assert err.key_path == "line 4.label"  # the physical line, after a quoted newline
    bad_json = tmp_path / "e.jsonl"
    bad_json.write_text('{"text": "a", "label": 1}\n{nope\n')
    assert error(bad_json).key_path == "line 2"
    empty = tmp_path / "f.jsonl"
    empty.write_text("\n")
    assert "no rows" in str(error(empty))
    assert "unsupported" in str(error(tmp_path / "g.parquet"))
    assert "not found" in str(error(tmp_path / "missing.csv"))


def test_the_audit_scores_what_the_guard_checks(tmp_path):
    # Rows the guard normalises (a zero-width space, fullwidth letters) or blocks for their
    # length: scoring the raw rows measured another pipeline than check().
    from rai_harness.classifiers.keyword import KeywordClassifier

    rows = [
        {"text": "you id\u200biot", "label": 1},
        {"text": "you \uff49\uff44\uff49\uff4f\uff54", "label": 1},
        {"text": "x" * 300, "label": 1},
        {"text": "hello there", "label": 0},
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    rail = Rail("r", KeywordClassifier({"insult": ["idiot"]}), threshold=0.5, action="block")
    with Guard(input_rails=[rail], max_chars=200, micro_batch=False) as guard:
        checked = [guard.check_input(r["text"]).blocked for r in rows]
        report = audit_guard(guard, data, single_sample=0)
    assert checked == [True, True, True, False]
    m = report.guard
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 0, 0, 1)
    assert (report.rails[0].metrics.tp, report.rails[0].metrics.fn) == (3, 0)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bom.jsonl", b'\xef\xbb\xbf{"text": "hi", "label": 0}\n{"text": "idiot", "label": 1}\n', None),
        ("bom.csv", b"\xef\xbb\xbftext,label\nhi,0\nidiot,1\n", None),
        ("bad.jsonl", b'{"text": "hi", "label": 0}\n{"text": "\xff\xfe", "label": 1}\n', "not UTF-8"),
        ("bad.csv", b"text,label\nhi,0\n\xff\xfe,1\n", "not UTF-8"),
        ("deep.jsonl", b'{"text": "hi", "label": 0}\n' + b"[" * 100_000 + b"\n", "line 2"),
        ("lone.jsonl", b'{"text": "hi", "label": 0}\n{"text": "x \\ud800", "label": 1}\n', "line 2"),
    ],
)
def test_hostile_data_files_are_read_or_refused_by_line(tmp_path, name, content, message):
    from rai_harness.classifiers.keyword import KeywordClassifier

    data = tmp_path / name
    data.write_bytes(content)
    rail = Rail("r", KeywordClassifier({"insult": ["idiot"]}), threshold=0.5, action="block")
    with Guard(input_rails=[rail], micro_batch=False) as guard:
        if message is None:
            assert audit_guard(guard, data, single_sample=0).guard.tp == 1
        else:
            with pytest.raises(ConfigError, match=message) as caught:
                audit_guard(guard, data, single_sample=0)
            assert caught.value.file == str(data)
