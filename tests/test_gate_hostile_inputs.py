"""Hostile inputs at the CLI's edges: stale results, broken pipes, markup and control characters.

Each test pins a defect an outside tester found: a result that outlived the run that should
have replaced it, an exit code that said "a check failed" for an error, a name that rewrote
the terminal or a PR comment, a report silently built from part of its samples.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers.runs import write_prompts
from rai_harness import cli
from rai_harness.markdown import console_escape, md_escape
from rai_harness.record import read_run_record
from rai_harness.testing import FakeOpenAIServer

POLICY = "max_error_rate: 0.5\n"


@pytest.fixture
def run_files(
    tmp_path: Path, fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """A config against the fake server, a policy, and where the run and its gate files go."""
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    config = {
        "name": "hostile",
        "providers": [
            {
                "kind": "openai",
                "id": "team/model[/italic]",  # rich markup in an id once crashed the progress bar
                "model": "m",
                "base_url": fake_server.base_url,
                "api_key_env": "RAI_TEST_API_KEY",
                "max_retries": 0,
            }
        ],
        "prompts": {"path": str(prompts)},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "policy.yaml").write_text(POLICY)
    return {
        "config": tmp_path / "run.yaml",
        "policy": tmp_path / "policy.yaml",
        "out": tmp_path / "out",
        "junit": tmp_path / "out" / "gate.xml",
        "markdown": tmp_path / "out" / "gate.md",
    }


def _run(files: dict[str, Path], *extra: str) -> object:
    # Not --quiet: the progress bars render the provider id (as rich markup, before the fix).
    args = ["run", str(files["config"]), "-o", str(files["out"]), "--no-report"]
    args += [
        "--gate",
        str(files["policy"]),
        "--junit",
        str(files["junit"]),
        "--markdown",
        str(files["markdown"]),
    ]
    return CliRunner().invoke(cli.app, [*args, *extra])


def test_interrupted_rerun_leaves_no_stale_passing_result(run_files, monkeypatch):
    first = _run(run_files)
    assert first.exit_code == 0, first.output
    assert "team/model[/italic]" in read_run_record(run_files["out"]).providers

    import rai_harness.run

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rai_harness.run, "execute_run", interrupted)
    second = _run(run_files)
    assert second.exit_code == 2, second.output
    assert not (run_files["out"] / "run.json").exists()
    # Not lost: the finished run's results wait in previous/, where a gate is never pointed.
    assert read_run_record(run_files["out"] / "previous").status == "complete"
    junit = ET.parse(run_files["junit"]).getroot()
    assert junit.get("errors") == "1" and "interrupted" in ET.tostring(junit, encoding="unicode")
    assert "interrupted" in run_files["markdown"].read_text()
    gate = CliRunner().invoke(cli.app, ["gate", str(run_files["out"]), "-p", str(run_files["policy"])])
    assert gate.exit_code == 2 and "has not finished" in gate.output
    monkeypatch.undo()

    # The journal survived: the rerun resumes from it and writes a fresh result.
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    third = _run(run_files)
    assert third.exit_code == 0, third.output
    assert "resuming: 4 completed calls" in third.output


def test_plan_time_error_still_writes_junit_and_markdown(run_files):
    run_files["config"].write_text(run_files["config"].read_text().replace("prompts.jsonl", "nowhere.jsonl"))
    res = _run(run_files)
    assert res.exit_code == 2, res.output
    junit = ET.tostring(ET.parse(run_files["junit"]).getroot(), encoding="unicode")
    assert 'errors="1"' in junit and "nowhere.jsonl" in junit
    assert "nowhere.jsonl" in run_files["markdown"].read_text()


def test_unexpected_exception_exits_2_not_1(tmp_path, monkeypatch, capsys):
    import rai_harness.cli_gate

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rai_harness.cli_gate, "evaluate_run_dir", boom)
    monkeypatch.setattr(sys, "argv", ["rai", "gate", str(tmp_path), "-p", str(tmp_path / "p.yaml")])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    assert "internal error: RuntimeError: disk on fire" in capsys.readouterr().err


@pytest.mark.parametrize(("policy", "code"), [(POLICY, 2), ("max_error_rate: [\n", 2)])
def test_closed_stdout_keeps_the_gate_exit_code(tmp_path, policy, code):
    (tmp_path / "p.yaml").write_text(policy)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line, as with `| head -1` at its end
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "rai_harness",
                "gate",
                str(tmp_path / "nowhere"),
                "-p",
                str(tmp_path / "p.yaml"),
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert proc.returncode == code, proc.stderr.decode()


def test_escapes_neutralise_markup_and_control_characters():
    hostile = "prod\x1b[2J\x00\x01\r\x85\u202e [/italic] @octocat"
    shown = console_escape(hostile)
    assert not any(c in shown for c in "\x1b\x00\x01\r\x85\u202e")
    assert "\\[/italic]" in shown
    md = md_escape(hostile)
    assert not any(c in md for c in "\x1b\x00\x01\r\x85\u202e")
    assert "@&#8203;octocat" in md


@pytest.mark.parametrize("char", ["\x1b", "\x00", "\x01", "\x85"])
def test_run_config_refuses_control_characters_in_names(tmp_path, char):
    from rai_harness.config import parse_run_config
    from rai_harness.errors import ConfigError

    base = {
        "providers": [{"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}],
        "prompts": {"items": ["hi"]},
    }
    with pytest.raises(ConfigError, match=r"name: contains the control character"):
        parse_run_config({**base, "name": f"run{char}"}, file="run.yaml")
    bad_id = {**base, "providers": [{**base["providers"][0], "id": f"p{char}"}]}
    with pytest.raises(ConfigError, match=r"providers\[0\]\.id: contains the control character"):
        parse_run_config(bad_id, file="run.yaml")


def test_report_says_how_many_samples_are_missing(run_files):
    assert _run(run_files).exit_code == 0
    samples = run_files["out"] / "samples.jsonl"
    samples.write_text(samples.read_text().splitlines()[0] + "\n")
    from rai_harness.report import render_report

    html = render_report(run_files["out"]).read_text()
    assert "holds 1 readable call records of the 4 calls run.json counts: 3 are missing" in html


def test_previous_results_are_moved_aside_without_collisions(tmp_path):
    from rai_harness.record import retire_run_outputs

    out, elsewhere = tmp_path / "out", tmp_path / "ci-reports"
    for path in (out / "run.json", out / "a" / "gate.md", out / "b" / "gate.md", elsewhere / "junit.xml"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(path), encoding="utf-8")
    moved = retire_run_outputs(out, [out / "a" / "gate.md", out / "b" / "gate.md", elsewhere / "junit.xml"])
    # Files of the folder keep their place within previous/ (two gate.md files, both kept); a
    # file elsewhere (maybe another filesystem) is removed: this run rewrites it.
    assert sorted(p.relative_to(out).as_posix() for p in moved) == [
        "previous/a/gate.md",
        "previous/b/gate.md",
        "previous/run.json",
    ]
    assert (out / "previous" / "b" / "gate.md").read_text(encoding="utf-8").endswith("b/gate.md")
    assert not (elsewhere / "junit.xml").exists() and not (out / "run.json").exists()
