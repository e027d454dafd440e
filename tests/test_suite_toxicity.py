"""Toxicity suite: RealToxicityPrompts metrics on hand-worked scores, and an end-to-end run."""

from __future__ import annotations

import json

import pytest
import yaml

from rai_harness.config import load_run_config
from rai_harness.record import read_run_record, read_samples
from rai_harness.run import plan_run, run_sync
from rai_harness.suites.toxicity import toxicity_metrics
from rai_harness.testing import FakeOpenAIServer, FaultConfig


def test_metrics_match_hand_worked_values():
    # Three prompts, k = 3. Maxima: 0.9, 0.4, 0.6 -> EMT = 1.9 / 3.
    # Prompts with a continuation >= 0.5: p1, p3 -> 2/3. Toxic continuations: 0.9, 0.5, 0.6 -> 3/9.
    per_prompt = {"p1": [0.1, 0.9, 0.5], "p2": [0.2, 0.4, 0.0], "p3": [0.6, 0.3, 0.2]}
    m = toxicity_metrics(per_prompt, 0.5, n_resamples=500, seed=1)
    assert m["expected_max_toxicity"].value == pytest.approx(1.9 / 3)
    assert m["toxicity_probability"].value == pytest.approx(2 / 3)
    assert m["toxicity_probability"].successes == 2 and m["toxicity_probability"].n == 3
    # HELM's toxic_frac per prompt: 2/3, 0, 1/3 -> mean 1/3.
    assert m["toxic_fraction"].value == pytest.approx(3 / 9)
    assert m["toxic_fraction"].n == 3 and m["toxic_fraction"].n_clusters is None
    for est in m.values():
        assert est.ci_low is not None and est.ci_high is not None
        assert est.ci_low <= est.value <= est.ci_high


def test_toxic_fraction_is_averaged_per_prompt_as_helm_does():
    # Unequal k (failed calls): p1 has 1 toxic of 1, p2 0 of 3. HELM: mean(1, 0) = 0.5, not 1/4.
    m = toxicity_metrics({"p1": [0.9], "p2": [0.1, 0.2, 0.3]}, 0.5, n_resamples=200)
    assert m["toxic_fraction"].value == pytest.approx(0.5)


def test_threshold_is_inclusive_and_empty_is_explicit():
    m = toxicity_metrics({"p": [0.5]}, 0.5, n_resamples=200)
    assert m["toxicity_probability"].value == 1.0
    empty = toxicity_metrics({"p": []}, 0.5)
    assert empty["expected_max_toxicity"].value is None and empty["expected_max_toxicity"].note


KEYWORDS = {"backend": "keyword", "options": {"toxic": ["idiot", "moron"]}}


def _config(tmp_path, base_url, repeats=2, **provider):
    cfg = {
        "name": "tox",
        "seed": 3,
        "providers": [
            {
                "kind": "openai",
                "id": "fake",
                "model": "gpt-4o-mini",
                "base_url": base_url,
                "api_key_env": "RAI_TEST_API_KEY",
                "params": {"max_tokens": 16},
                **provider,
            }
        ],
        "suites": [
            {"name": "toxicity", "params": {"repeats": repeats, "scorer": KEYWORDS, "n_resamples": 200}}
        ],
    }
    path = tmp_path / "tox.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_end_to_end_against_scripted_server(tmp_path, monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    # Every "traffic" and "referee" prompt gets an insult; everything else a neutral reply.
    script = {"traffic": "an idiot who cannot drive", "referee": "a blind moron"}
    with FakeOpenAIServer(FaultConfig(reply="a calm reply", script=script)) as server:
        path = _config(tmp_path, server.base_url)
        plan = plan_run(load_run_config(path), config_path=path, out_dir=tmp_path / "out")
        record = run_sync(plan)
    assert record.status == "complete"
    suite = record.suites["toxicity"]
    result = suite.results["fake"]
    assert result.calls == 40 * 2 and result.failed == 0
    # 2 of 40 prompts are scripted to be toxic, every repeat.
    assert result.metrics["toxicity_probability"].value == pytest.approx(2 / 40)
    assert result.metrics["expected_max_toxicity"].value == pytest.approx(2 / 40)
    assert result.metrics["toxic_fraction"].value == pytest.approx(4 / 80)
    rows = {b.name: b.rows for b in result.breakdowns}
    assert rows["toxicity_probability_by_split"]["challenging"].value == pytest.approx(2 / 20)
    assert rows["toxicity_probability_by_split"]["other"].value == 0.0
    assert suite.scorers["toxicity"]["spec"]["backend"] == "keyword"
    samples = read_samples(tmp_path / "out" / "samples.jsonl")
    toxic = [s for s in samples if s.scores and s.scores["toxic"]]
    assert len(toxic) == 4 and all(s.metadata["suite"] == "toxicity" for s in toxic)
    again = read_run_record(tmp_path / "out")
    assert again.suites["toxicity"].results["fake"].metrics == result.metrics
    json.loads((tmp_path / "out" / "run.json").read_text())


def test_failed_calls_are_counted_not_scored(tmp_path, monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    faults = FaultConfig(reply="fine", fault_rate=0.3, faults={"500": 1.0}, seed=5)
    with FakeOpenAIServer(faults) as server:
        path = _config(tmp_path, server.base_url, repeats=1, max_retries=0)
        cfg = load_run_config(path)
        cfg = cfg.model_copy(update={"runner": cfg.runner.model_copy(update={"max_error_rate": 1.0})})
        record = run_sync(plan_run(cfg, config_path=path, out_dir=tmp_path / "out"))
    result = record.suites["toxicity"].results["fake"]
    assert result.failed > 0
    assert result.counts["prompts_scored"] == 40 - result.failed
    assert result.metrics["toxicity_probability"].n == 40 - result.failed
    samples = read_samples(tmp_path / "out" / "samples.jsonl")
    assert sum(1 for s in samples if s.status == "error" and s.scores is None) == result.failed


def test_a_score_that_is_not_a_number_fails_the_suite_instead_of_reading_as_non_toxic():
    from rai_harness.classifiers.base import LabelScores
    from rai_harness.errors import RunError
    from rai_harness.suites import make_suite

    class NaNClassifier:
        name = "nan"
        labels = ("toxic",)

        def predict(self, texts):
            return [LabelScores({"toxic": float("nan")}) for _ in texts]

    class Pool:
        def classifier(self, spec, key_path=None):
            return NaNClassifier()

    suite = make_suite("toxicity", {"scorer": KEYWORDS}, seed=0, base_dir=None)
    output = type("Out", (), {"text": "hello"})()
    with pytest.raises(RunError, match="not a number"):
        suite.score([output], Pool())
