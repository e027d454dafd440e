"""Every shipped run config parses and plans (no calls are made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rai_harness.config import load_run_config
from rai_harness.run import plan_run
from rai_harness.suites import make_suite

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted([*ROOT.glob("evals/*.yaml"), *ROOT.glob("evals/examples/*.yaml")])


def _uses_hub_datasets(config) -> bool:
    return any(
        isinstance(s.params.get("dataset"), str) and not (ROOT / "evals" / s.params["dataset"]).exists()
        for s in config.suites
    )


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_plans(path):
    config = load_run_config(path)
    if _uses_hub_datasets(config):
        # Hub datasets need the network: validate every suite's parameters without loading data.
        for sel in config.suites:
            make_suite(sel.name, sel.params, seed=config.seed)
        return
    fake_env = {var: "placeholder" for p in config.providers for var in p.secret_env_vars().values()}
    plan = plan_run(config, config_path=path, environ=fake_env)
    assert plan.total_calls > 0
    assert "placeholder" not in str(config.snapshot())


def test_there_are_examples_for_every_route():
    names = {p.stem for p in ROOT.glob("evals/examples/*.yaml")}
    assert {"openai", "azure-openai", "vertex", "bedrock", "clarifai", "vllm", "ollama", "replay"} <= names
