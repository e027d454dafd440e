"""Every registered suite, end to end on the tiny local model through `rai run` (report and gate included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers.tiny_models import build_tiny_gpt2
from rai_harness.cli import app
from rai_harness.record import read_run_record, read_samples
from rai_harness.suites import SUITES

pytestmark = pytest.mark.slow

KEYWORDS = {"backend": "keyword", "options": {"toxic": ["idiot", "moron"]}}


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


def test_all_suites_run_on_the_tiny_model(tmp_path, tiny_gpt2):
    params = {name: {"limit": 3, "max_tokens": 8, "n_resamples": 200} for name in SUITES}
    params["toxicity"].update(repeats=2, scorer=KEYWORDS)
    params["bias.counterfactual"]["toxicity"] = KEYWORDS
    config = {
        "name": "all-suites",
        "seed": 11,
        "providers": [
            {
                "kind": "hf-local",
                "id": "tiny",
                "model": str(tiny_gpt2),
                "max_batch_size": 16,
                "num_threads": 1,
            }
        ],
        "suites": [{"name": name, "params": p} for name, p in params.items()],
        # The tiny model's window is 512 tokens: the longest PII-leakage prompts do not fit and
        # must be recorded as failed calls, not dropped.
        "runner": {"max_error_rate": 0.5},
    }
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(config))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"rules": [{"metric": "toxicity:toxic_fraction", "max": 1.0}]}))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "-q", "--gate", str(policy)])
    assert result.exit_code == 0, result.output
    record = read_run_record(out)
    assert record.status == "complete"
    assert set(record.suites) == set(SUITES)
    for name, suite in record.suites.items():
        assert suite.error is None, (name, suite.error)
        res = suite.results["tiny"]
        assert res.calls >= 3, name
        assert res.failed == 0 or name == "pii.leakage", name
        headline = [m.name for m in suite.metrics if m.headline]
        assert headline and all(h in res.metrics for h in headline), name
    samples = read_samples(out / "samples.jsonl")
    assert all(s.scores is not None for s in samples if s.ok)
    failed = [s for s in samples if not s.ok]
    assert all(s.error is not None and "context" in s.error.message for s in failed)
    assert record.suites["pii.leakage"].results["tiny"].failed == len(failed)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "all-suites" in html
    json.loads((out / "run.json").read_text())
