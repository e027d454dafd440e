"""``rai score``: re-scoring a finished run from its record, without calling a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import rai_harness
from rai_harness.cli import app
from rai_harness.config import load_run_config
from rai_harness.errors import ConfigError
from rai_harness.providers.base import ProviderConfig
from rai_harness.record import SCHEMA_VERSION, read_run_record, read_samples
from rai_harness.run import plan_run, run_sync, score_run
from rai_harness.suites.toxicity import ToxicitySuite
from rai_harness.testing import FakeOpenAIServer, FaultConfig

KEYWORDS = {"backend": "keyword", "options": {"toxic": ["idiot", "moron"]}}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-provider run of two suites against the fake server (which is gone afterwards)."""
    tmp = tmp_path_factory.mktemp("rescore")
    script = {"traffic": "an idiot who cannot drive", "referee": "a blind moron", "Women": "I agree."}
    with FakeOpenAIServer(FaultConfig(reply="a calm reply", script=script)) as server:
        provider = {
            "kind": "openai",
            "model": "gpt-4o-mini",
            "base_url": server.base_url,
            "api_key_env": "RAI_K",
        }
        cfg = {
            "name": "rescore",
            "seed": 5,
            "providers": [{**provider, "id": "a"}, {**provider, "id": "b", "params": {"temperature": 0.5}}],
            "suites": [
                {"name": "toxicity", "params": {"repeats": 2, "scorer": KEYWORDS, "n_resamples": 200}},
                {"name": "bias.stereotype", "params": {"limit": 6, "n_resamples": 200}},
            ],
        }
        path = tmp / "run.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAI_K", "sk-test")
            record = run_sync(plan_run(load_run_config(path), config_path=path, out_dir=tmp / "run"))
        assert record.status == "complete" and server.stats()["calls"] > 0
    return tmp / "run"


@pytest.fixture
def no_provider(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every attempt to build a provider is counted and fails."""
    built: list[str] = []

    def refuse(self: ProviderConfig) -> None:
        built.append(self.provider_id)
        raise AssertionError("rai score must not build a provider")

    monkeypatch.setattr(ProviderConfig, "build", refuse)
    return built


def test_rescore_reproduces_the_scores_without_a_provider_call(finished_run, tmp_path, no_provider):
    with FakeOpenAIServer(FaultConfig(reply="never asked")) as server:
        new = score_run(finished_run, out_dir=tmp_path / "again")
        assert server.stats()["calls"] == 0
    assert no_provider == []
    old = read_run_record(finished_run)
    assert set(new.suites) == {"toxicity", "bias.stereotype"}
    for name, run in old.suites.items():
        again = new.suites[name]
        assert again.model_dump(exclude={"scorers"}) == run.model_dump(exclude={"scorers"})
        assert set(again.results) == {"a", "b"} and again.comparisons
    assert new.providers == old.providers and new.status == old.status == "complete"
    assert new.run_id != old.run_id and new.schema_version == SCHEMA_VERSION
    assert new.rescore is not None
    assert new.rescore.source_run_id == old.run_id
    assert new.rescore.suites == {name: run.version for name, run in old.suites.items()}
    assert new.rescore.suites["toxicity"] == ToxicitySuite.version
    assert new.rescore.harness_version == rai_harness.__version__
    assert new.suites["toxicity"].scorers["toxicity"]["spec"]["backend"] == "keyword"
    # The written record is the returned one, and every per-sample score is the same.
    assert read_run_record(tmp_path / "again") == new
    before = {r.key: r.scores for r in read_samples(finished_run / "samples.jsonl")}
    after = {r.key: r.scores for r in read_samples(tmp_path / "again" / "samples.jsonl")}
    assert after == before and any(after.values())


def test_a_changed_scorer_changes_the_scores_and_is_recorded(
    finished_run, tmp_path, monkeypatch, no_provider
):
    original_score = ToxicitySuite.score

    def everything_toxic(self, outputs, pool):  # a "new scorer version" that flags every output
        return [{**s, "toxic": True, "toxicity": 1.0} for s in original_score(self, outputs, pool)]

    monkeypatch.setattr(ToxicitySuite, "score", everything_toxic)
    monkeypatch.setattr(ToxicitySuite, "version", "99.0")
    new = score_run(finished_run, suites=["toxicity"], out_dir=tmp_path / "v99")
    old = read_run_record(finished_run)
    metrics = new.suites["toxicity"].results["a"].metrics
    assert metrics["toxicity_probability"].value == 1.0
    assert old.suites["toxicity"].results["a"].metrics["toxicity_probability"].value < 1.0
    assert new.suites["toxicity"].version == "99.0" and new.rescore is not None
    assert new.rescore.suites == {"toxicity": "99.0"}
    assert new.rescore.source_suites["toxicity"] == old.suites["toxicity"].version
    # A suite not asked for is copied unchanged.
    assert new.suites["bias.stereotype"] == old.suites["bias.stereotype"]


def test_rescore_refuses_bad_inputs(finished_run, tmp_path, no_provider):
    with pytest.raises(ConfigError, match="must differ from the run folder"):
        score_run(finished_run, out_dir=finished_run)
    with pytest.raises(ConfigError, match=r"'bias\.bbq' is not in this run; its suites are: toxicity"):
        score_run(finished_run, suites=["bias.bbq"], out_dir=tmp_path / "x")
    with pytest.raises(ConfigError, match="run record not found"):
        score_run(tmp_path / "nowhere", out_dir=tmp_path / "y")
    assert not (tmp_path / "x").exists()


def test_rescore_refuses_a_changed_dataset(finished_run, tmp_path, no_provider):
    copy = tmp_path / "copy"
    copy.mkdir()
    data = json.loads((finished_run / "run.json").read_text())
    data["suites"]["toxicity"]["datasets"][0]["sha256"] = "0" * 64
    (copy / "run.json").write_text(json.dumps(data))
    (copy / "samples.jsonl").write_bytes((finished_run / "samples.jsonl").read_bytes())
    with pytest.raises(ConfigError, match="data of suite 'toxicity' changed since the run"):
        score_run(copy, out_dir=tmp_path / "out")
    data["samples_file"] = "../samples.jsonl"
    (copy / "run.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="samples_file must be a file name"):
        score_run(copy, out_dir=tmp_path / "out")


def test_corrupt_samples_name_the_line(finished_run, tmp_path):
    bad = tmp_path / "samples.jsonl"
    lines = (finished_run / "samples.jsonl").read_text().splitlines()
    bad.write_text("\n".join([lines[0], '{"key": "only a key"}', *lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match="line 2") as info:
        read_samples(bad)
    assert info.value.file == str(bad)


def test_cli_score_writes_record_and_report(finished_run, tmp_path, no_provider):
    runner = CliRunner()
    assert runner.invoke(app, ["score", "--help"]).exit_code == 0
    out = tmp_path / "cli"
    result = runner.invoke(app, ["score", str(finished_run), "--out", str(out), "--suite", "toxicity"])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and "toxicity" in result.output
    record = read_run_record(out)
    assert record.rescore is not None and set(record.rescore.suites) == {"toxicity"}
    bad = runner.invoke(app, ["score", str(finished_run), "--out", str(finished_run)])
    assert bad.exit_code == 2 and "must differ" in bad.output
