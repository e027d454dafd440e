"""Guard policy files: loading, building, and errors that name the file, key path and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.classifiers.keyword import KeywordClassifier
from rai_harness.classifiers.pool import ClassifierPool
from rai_harness.errors import ConfigError
from rai_harness.guardrails import Guard, load_policy

ROOT = Path(__file__).resolve().parents[1]

GOOD: dict[str, Any] = {
    "name": "test",
    "classifiers": {
        "insults": {"backend": "keyword", "options": {"insult": ["idiot", "moron"], "threat": ["kill you"]}},
        "contacts": {"backend": "keyword", "options": {"EMAIL": ["jane@example.com"]}},
    },
    "input": [
        {
            "name": "insult-in",
            "classifier": "insults",
            "labels": ["insult"],
            "threshold": 0.5,
            "action": "block",
        },
        {
            "name": "contacts-in",
            "classifier": "contacts",
            "threshold": 0.5,
            "action": "redact",
            "on_error": "allow",
        },
    ],
    "output": [
        {
            "name": "insult-out",
            "classifier": "insults",
            "thresholds": {"insult": 0.5, "threat": 0.5},
            "action": "flag",
        },
    ],
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def with_rail(stage: str, index: int, **changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data[stage][index].update(changes)
    return data


def load_error(tmp_path: Path, data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, data))
    err = info.value
    assert err.file is not None and err.file.endswith("policy.yaml")
    return err


def build_error(tmp_path: Path, data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Guard.from_policy(write(tmp_path, data), pool=ClassifierPool())
    err = info.value
    assert err.file is not None and err.file.endswith("policy.yaml")
    return err


def test_good_policy_builds_and_runs(tmp_path):
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.source and policy.source.endswith("policy.yaml")
    assert [r.on_error for r in policy.input] == ["block", "allow"]  # fail closed unless told
    pool = ClassifierPool()
    with Guard.from_policy(policy, pool=pool) as guard:
        assert guard.name == "test" and len(pool) == 2
        assert guard.input_rails[0].classifier is guard.output_rails[0].classifier  # loaded once
        assert dict(guard.input_rails[0].thresholds) == {"insult": 0.5}
        assert dict(guard.input_rails[1].thresholds) == {"EMAIL": 0.5}  # default: all labels
        result = guard.check_input("mail jane@example.com, you idiot")
        assert result.blocked and result.redacted_text is None  # nothing of a blocked text
        assert result.findings  # the findings are still reported (offsets only)
        assert guard.check_output("I will kill you").action == "flag"
        assert guard.info()["input"][0]["classifier"] == "keyword"


@pytest.mark.parametrize("stages", [{}, {"input": [], "output": None}])
def test_a_policy_without_rails_is_refused(tmp_path, stages):
    # It would allow every text, and `rai guard check --fail-on` would pass a CI step.
    err = load_error(tmp_path, {"name": "x", "classifiers": GOOD["classifiers"], **stages})
    assert "no rails" in str(err) and err.key_path == "input"


def test_a_gate_policy_given_as_a_guard_policy_says_so(tmp_path):
    err = load_error(tmp_path, {"max_error_rate": 0.05, "rules": [{"metric": "toxicity:x", "max": 0.1}]})
    assert "this is a gate policy" in str(err) and "guardrails/default.yaml" in str(err)


def test_unknown_top_level_key_suggests(tmp_path):
    err = load_error(tmp_path, {**GOOD, "inptu": []})
    assert err.key_path == "inptu" and "did you mean 'input'" in str(err)


def test_unknown_rail_key_names_path_and_suggests(tmp_path):
    err = load_error(tmp_path, with_rail("input", 1, treshold=0.3))
    assert err.key_path == "input[1].treshold"
    assert "did you mean 'threshold'" in str(err) and "allowed keys" in str(err)


def test_unknown_classifier_spec_key(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["classifiers"]["insults"]["option"] = {}
    err = load_error(tmp_path, data)
    assert err.key_path == "classifiers.insults.option" and "did you mean 'options'" in str(err)


def test_unknown_classifier_reference_suggests(tmp_path):
    err = load_error(tmp_path, with_rail("output", 0, classifier="insult"))
    assert err.key_path == "output[0].classifier"
    assert "unknown classifier 'insult'" in str(err) and "did you mean 'insults'" in str(err)


def test_unknown_backend_suggests(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["classifiers"]["insults"]["backend"] = "keywrod"
    err = load_error(tmp_path, data)
    assert err.key_path == "classifiers.insults.backend" and "did you mean 'keyword'" in str(err)


def test_redact_on_label_only_backend_is_rejected(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["classifiers"]["tox"] = {"backend": "minilm-toxicity"}
    data["output"][0] = {"name": "tox-out", "classifier": "tox", "threshold": 0.5, "action": "redact"}
    err = load_error(tmp_path, data)
    assert err.key_path == "output[0].action" and "spans" in str(err)


@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_threshold_out_of_range(tmp_path, bad):
    err = load_error(tmp_path, with_rail("input", 0, threshold=bad))
    assert err.key_path == "input[0].threshold" and "equal to" in str(err)


@pytest.mark.parametrize("bad", [True, "0.5"])
def test_threshold_must_be_a_number_not_a_bool_or_string(tmp_path, bad):
    # YAML `true` would otherwise become 1.0: a rail that never triggers, without a word.
    err = load_error(tmp_path, with_rail("input", 0, threshold=bad))
    assert err.key_path == "input[0].threshold" and "valid number" in str(err)
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["output"][0]["thresholds"]["threat"] = bad
    assert load_error(tmp_path, data).key_path == "output[0].thresholds.threat"
    assert load_error(tmp_path, with_rail("input", 0, timeout_ms=bad)).key_path == "input[0].timeout_ms"


def test_empty_labels_is_refused_when_loading(tmp_path):
    err = load_error(tmp_path, with_rail("input", 0, labels=[]))
    assert err.key_path == "input[0].labels" and "at least 1" in str(err)


def test_a_repeated_key_is_refused_with_its_line(tmp_path):
    # PyYAML keeps the last value; a reviewer reads the first.
    text = yaml.safe_dump(GOOD, sort_keys=False).replace("name: ", "name: first\nname: ", 1)
    err = load_error(tmp_path, text)
    assert "duplicate key 'name'" in str(err) and "line 2" in str(err)


def test_per_label_threshold_out_of_range(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["output"][0]["thresholds"]["threat"] = 2
    err = load_error(tmp_path, data)
    assert err.key_path == "output[0]" and "threat" in str(err) and "[0, 1]" in str(err)


@pytest.mark.parametrize("bad", [0, -5, float("inf"), float("nan"), 3_600_001])
def test_timeout_ms_is_positive_and_bounded(tmp_path, bad):
    err = load_error(tmp_path, with_rail("input", 0, timeout_ms=bad))
    assert err.key_path == "input[0].timeout_ms"


def test_threshold_and_thresholds_are_exclusive(tmp_path):
    err = load_error(tmp_path, with_rail("output", 0, threshold=0.5))
    assert err.key_path == "output[0]" and "exactly one" in str(err)
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    del data["input"][0]["threshold"]
    assert "exactly one" in str(load_error(tmp_path, data))


def test_bad_action_and_missing_key(tmp_path):
    err = load_error(tmp_path, with_rail("input", 0, action="deny"))
    assert err.key_path == "input[0].action" and "'block'" in str(err)
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    del data["input"][0]["classifier"]
    err = load_error(tmp_path, data)
    assert err.key_path == "input[0].classifier" and "required" in str(err)


def test_duplicate_rail_names(tmp_path):
    err = load_error(tmp_path, with_rail("output", 0, name="insult-in"))
    assert err.key_path == "output[0].name" and "input[0]" in str(err)


def test_unknown_label_found_when_building(tmp_path):
    err = build_error(tmp_path, with_rail("input", 0, labels=["insutl"]))
    assert err.key_path == "input[0].labels" and "did you mean 'insult'" in str(err)


def test_bad_backend_options_found_when_building(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["classifiers"]["insults"]["options"]["insult"] = "idiot"  # a string, not a list
    err = build_error(tmp_path, data)
    assert err.key_path == "classifiers.insults.options.insult"


def test_yaml_and_file_errors(tmp_path):
    err = load_error(tmp_path, "name: x\ninput: [\n")
    assert "invalid YAML" in str(err) and "line" in str(err)
    assert "mapping" in str(load_error(tmp_path, "- just\n- a list\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "missing.yaml")
    assert load_error(tmp_path, {**GOOD, "input": {"a": 1}}).key_path == "input"


# -- the shipped policies ------------------------------------------------------------------------


class StandInPool:
    """Builds keyword stand-ins with each real backend's labels, so label references are checked
    without loading the real models."""

    def __init__(self) -> None:
        self.specs: list[ClassifierSpec] = []

    def classifier(self, spec: ClassifierSpec) -> KeywordClassifier:
        self.specs.append(spec)
        if spec.backend == "presidio":
            return KeywordClassifier({e: [e.lower()] for e in spec.options["entities"]}, name="presidio")
        assert spec.backend == "minilm-toxicity"
        return KeywordClassifier({"toxic": ["idiot"]}, name="minilm-toxicity")


@pytest.mark.parametrize("name", ["default", "strict"])
def test_shipped_policies_load_and_build(name):
    policy = load_policy(ROOT / "guardrails" / f"{name}.yaml")
    pool = StandInPool()
    with Guard.from_policy(policy, pool=pool, micro_batch=False) as guard:
        assert guard.name == name and guard.input_rails and guard.output_rails
        assert sorted(s.backend for s in pool.specs) == ["minilm-toxicity", "presidio"]
        assert guard.check_output("you idiot").blocked
        assert guard.check_input("you idiot").action == ("flag" if name == "default" else "block")
        assert guard.check_input("write to email_address").redacted_text == "write to <EMAIL_ADDRESS>"


def test_strict_is_stricter_than_default():
    default = load_policy(ROOT / "guardrails" / "default.yaml")
    strict = load_policy(ROOT / "guardrails" / "strict.yaml")
    assert all(r.on_error == "block" for r in [*strict.input, *strict.output])
    assert any(r.action == "block" and r.classifier == "pii" for r in strict.output)

    def lowest(policy, stage, classifier):
        """Lowest threshold at which some block or redact rail acts."""
        values = []
        for rail in getattr(policy, stage):
            if rail.classifier == classifier and rail.action != "flag":
                values += [rail.threshold] if rail.threshold is not None else list(rail.thresholds.values())
        return min(values, default=1.01)  # no acting rail: acts on nothing

    for stage in ("input", "output"):
        for classifier in ("toxicity", "pii"):
            assert lowest(strict, stage, classifier) <= lowest(default, stage, classifier)


@pytest.mark.parametrize("value", [False, 0, "", {}, "none"])
def test_a_stage_that_is_not_a_list_is_refused_not_read_as_no_rails(tmp_path, value):
    # `input: false` loaded as "no rails" switched input checking off without a word.
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["input"] = value
    err = load_error(tmp_path, data)
    assert err.key_path == "input" and "list of rails" in str(err)


def test_a_stage_left_empty_has_no_rails(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    text = yaml.safe_dump({k: v for k, v in data.items() if k != "input"}, sort_keys=False) + "input:\n"
    assert load_policy(write(tmp_path, text)).input == []
