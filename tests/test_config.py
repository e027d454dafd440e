"""Config validation: every error names the file, the key path and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rai_harness.config import check_secrets, load_run_config, parse_run_config
from rai_harness.errors import ConfigError, MissingDependencyError, MissingSecretError
from rai_harness.run import plan_run

GOOD = {
    "name": "t",
    "providers": [
        {"kind": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1", "api_key_env": None}
    ],
    "prompts": {"items": ["hello"]},
}


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def error_for(tmp_path, data) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_run_config(write(tmp_path, data))
    return info.value


def test_good_config_loads(tmp_path):
    cfg = load_run_config(write(tmp_path, GOOD))
    assert cfg.providers[0].provider_id == "openai:gpt-4o-mini"


def test_unknown_provider_kind_suggests(tmp_path):
    err = error_for(tmp_path, {**GOOD, "providers": [{"kind": "opeani", "model": "m"}]})
    assert err.file and err.file.endswith("cfg.yaml")
    assert err.key_path == "providers[0].kind"
    assert "did you mean 'openai'" in str(err)


def test_unknown_key_names_path_and_suggests(tmp_path):
    provider = dict(GOOD["providers"][0], temprature=0.3)
    err = error_for(tmp_path, {**GOOD, "providers": [provider]})
    assert err.key_path == "providers[0].temprature"
    assert "unknown key" in str(err) and "allowed keys" in str(err)


def test_unknown_top_level_key(tmp_path):
    err = error_for(tmp_path, {**GOOD, "promts": {"items": ["x"]}})
    assert err.key_path == "promts" and "did you mean 'prompts'" in str(err)


def test_bad_type_names_expected(tmp_path):
    provider = dict(GOOD["providers"][0], concurrency="many")
    err = error_for(tmp_path, {**GOOD, "providers": [provider]})
    assert err.key_path == "providers[0].concurrency"
    assert "integer" in str(err) and "'many'" in str(err)


def test_nested_bad_value(tmp_path):
    provider = dict(GOOD["providers"][0], params={"temperature": 5})
    err = error_for(tmp_path, {**GOOD, "providers": [provider]})
    assert err.key_path == "providers[0].params.temperature"


@pytest.mark.parametrize(
    ("change", "key_path"),
    [
        ({"runner": {"backoff_max_s": float("inf")}}, "runner.backoff_max_s"),
        ({"runner": {"backoff_base_s": 1e300}}, "runner.backoff_base_s"),
        ({"runner": {"max_retry_after_s": float("inf")}}, "runner.max_retry_after_s"),
        ({"providers": [dict(GOOD["providers"][0], timeout_s=float("inf"))]}, "providers[0].timeout_s"),
        ({"seed": True}, "seed"),
    ],
)
def test_unbounded_waits_and_a_boolean_seed_are_refused(tmp_path, change, key_path):
    # `.inf` passed `> 0` and hung a run on a failing endpoint; `seed: true` became seed 1.
    err = error_for(tmp_path, {**GOOD, **change})
    assert err.key_path == key_path


def test_missing_required_key(tmp_path):
    err = error_for(tmp_path, {**GOOD, "providers": [{"kind": "openai"}]})
    assert err.key_path == "providers[0].model" and "required" in str(err)


def test_missing_providers(tmp_path):
    err = error_for(tmp_path, {"name": "x"})
    assert err.key_path == "providers"


def test_duplicate_ids_rejected(tmp_path):
    p = GOOD["providers"][0]
    err = error_for(tmp_path, {**GOOD, "providers": [p, p]})
    assert "providers[0] and providers[1] both have the id 'openai:gpt-4o-mini'" in str(err)
    assert "distinct `id`" in str(err) and "(got dict)" not in str(err)


def test_invalid_yaml_gives_line(tmp_path):
    err = error_for(tmp_path, "name: [unclosed\nproviders: []\n")
    assert "invalid YAML" in str(err) and "line" in str(err)


def test_missing_file():
    with pytest.raises(ConfigError, match="file not found"):
        load_run_config("does/not/exist.yaml")


def test_missing_env_var_named(tmp_path):
    provider = dict(GOOD["providers"][0], api_key_env="RAI_NOT_SET_ANYWHERE")
    cfg = load_run_config(write(tmp_path, {**GOOD, "providers": [provider]}))
    with pytest.raises(MissingSecretError) as info:
        check_secrets(cfg, file="cfg.yaml", environ={})
    assert info.value.variable == "RAI_NOT_SET_ANYWHERE"
    assert info.value.key_path == "providers[0].api_key_env"
    check_secrets(cfg, environ={"RAI_NOT_SET_ANYWHERE": "x"})


def test_prompt_file_errors_name_line_and_field(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"promt": "typo"}\n')
    cfg_path = write(tmp_path, {**GOOD, "prompts": {"path": str(prompts)}})
    with pytest.raises(ConfigError) as info:
        plan_run(load_run_config(cfg_path), config_path=cfg_path)
    assert info.value.file == str(prompts) and info.value.key_path == "line 2"
    assert "`prompt`" in str(info.value)


def test_prompts_need_exactly_one_source(tmp_path):
    err = error_for(tmp_path, {**GOOD, "prompts": {"items": ["a"], "path": "x.jsonl"}})
    assert err.key_path == "prompts" and "exactly one" in str(err)


def test_missing_optional_package_fails_at_plan_time(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "boto3" else real(name, *a)
    )
    cfg = parse_run_config(
        {**GOOD, "providers": [{"kind": "bedrock", "model": "amazon.nova-micro-v1:0", "region": "us-east-1"}]}
    )
    with pytest.raises(MissingDependencyError) as info:
        plan_run(cfg)
    assert "rai-harness[bedrock]" in str(info.value)


def test_snapshot_has_env_names_only(tmp_path):
    provider = dict(GOOD["providers"][0], api_key_env="MY_KEY_VAR")
    cfg = load_run_config(write(tmp_path, {**GOOD, "providers": [provider]}))
    snap = cfg.snapshot()
    assert snap["providers"][0]["api_key_env"] == "MY_KEY_VAR"
    assert snap["providers"][0]["base_url"] == "http://127.0.0.1:9/v1"  # subclass fields kept


def test_cli_prints_the_whole_message_brackets_included(tmp_path):
    # rich reads "[also ...]" as a markup tag and drops it unless escaped.
    from typer.testing import CliRunner

    from rai_harness.cli import app

    provider = dict(GOOD["providers"][0], temprature=0.3, concurrency="many")
    res = CliRunner().invoke(app, ["run", str(write(tmp_path, {**GOOD, "providers": [provider]}))])
    assert res.exit_code == 2
    assert "providers[0].concurrency" in res.output
    # Every problem is named, not only the first: one rerun per mistake otherwise.
    assert "[also providers[0].temprature: unknown key]" in " ".join(res.output.split())


def test_every_problem_in_a_suites_params_names_its_full_path(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "name: x\nproviders:\n  - {kind: openai, model: m, base_url: 'http://127.0.0.1:9/v1', api_key_env: null}\n"
        "suites:\n  - name: factuality.short_qa\n    params: {limit: abc, bogus: 1}\n"
    )
    with pytest.raises(ConfigError) as info:
        plan_run(load_run_config(config), config_path=config, out_dir=tmp_path / "out")
    err = info.value
    assert err.key_path == "suites[0].params.limit" and "[also suites[0].params.bogus: unknown key" in str(
        err
    )
