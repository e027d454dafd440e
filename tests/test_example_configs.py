"""Every shipped run config parses and plans (no calls are made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rai_harness.config import load_run_config
from rai_harness.run import plan_run

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted([*ROOT.glob("evals/*.yaml"), *ROOT.glob("evals/examples/*.yaml")])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_plans(path):
    config = load_run_config(path)
    fake_env = {var: "placeholder" for p in config.providers for var in p.secret_env_vars().values()}
    plan = plan_run(config, config_path=path, environ=fake_env)
    assert plan.total_calls > 0
    assert "placeholder" not in str(config.snapshot())


def test_there_are_examples_for_every_route():
    names = {p.stem for p in ROOT.glob("evals/examples/*.yaml")}
    assert {"openai", "azure-openai", "vertex", "bedrock", "clarifai", "vllm", "ollama", "replay"} <= names
