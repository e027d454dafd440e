"""The example CI workflow runs as written: its shell steps, in order, on a tiny config.

`.github/workflows/rai-audit.yml` is parsed and its `run:` steps are executed locally with
bash (``-eo pipefail``, as GitHub runs them), with GitHub's step files (``GITHUB_OUTPUT``,
``GITHUB_PATH``, ``GITHUB_STEP_SUMMARY``), step ``if:`` conditions and ``${{ }}``
expressions evaluated for the event. What needs GitHub is left out or substituted:
``uses:`` actions are skipped (checkout, setup-python, cache, artifact upload, the comment
script), and the install step (network) is replaced by a ``rai``/``python`` shim on PATH for
this interpreter. The config, policies and output folders come in through the workflow's own
``env`` variables, pointed at a tiny toxicity config served by the local fake server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "rai-audit.yml"
KEYWORDS = {"backend": "keyword", "options": {"toxic": ["idiot", "moron"]}}
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class JobRun:
    """What one simulated job did."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    status: str = "success"
    logs: dict[str, str] = field(default_factory=dict)


def _value(expr: str, ctx: dict[str, Any]) -> Any:
    """A context lookup (``steps.x.outputs.y``, ``github.event_name``...) or a quoted literal."""
    expr = expr.strip()
    if expr.startswith("'") and expr.endswith("'"):
        return expr[1:-1]
    node: Any = ctx
    for part in expr.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    return node


def _evaluate(expr: str, ctx: dict[str, Any], status: str) -> Any:
    """The subset of GitHub expressions the workflow uses: status functions, ==, !=, !, &&, hashFiles."""
    expr = expr.strip()
    if expr.startswith("${{") and expr.endswith("}}"):
        expr = expr[3:-2].strip()
    if "&&" in expr:
        return all(_evaluate(part, ctx, status) for part in expr.split("&&"))
    if expr.startswith("!") and not expr.startswith("!="):
        return not _evaluate(expr[1:], ctx, status)
    calls = {
        "always()": True,
        "cancelled()": False,
        "success()": status == "success",
        "failure()": status == "failure",
    }
    if expr in calls:
        return calls[expr]
    m = re.fullmatch(r"hashFiles\('([^']+)'\)\s*(==|!=)\s*''", expr)
    if m:
        exists = bool(list(Path(ctx["workspace"]).glob(m.group(1))))
        return exists if m.group(2) == "!=" else not exists
    m = re.fullmatch(r"(.+?)\s*(==|!=)\s*(.+)", expr)
    if m:
        equal = str(_value(m.group(1), ctx)) == str(_value(m.group(3), ctx))
        return equal if m.group(2) == "==" else not equal
    return _value(expr, ctx)


def _substitute(text: str, ctx: dict[str, Any]) -> str:
    def one(m: re.Match[str]) -> str:
        value = _value(m.group(1), ctx)
        return "" if value is None else str(value)

    return _EXPR.sub(one, text)


def run_job(
    workflow: dict[str, Any], *, event: str, env: dict[str, str], workdir: Path, shim: Path
) -> JobRun:
    """Run the ``audit`` job's shell steps in order as GitHub would for ``event``."""
    job = workflow["jobs"]["audit"]
    result = JobRun()
    base_env = {**os.environ, **{k: str(v) for k, v in job.get("env", {}).items()}, **env}
    path_entries = [str(shim)]
    summary = workdir / f"summary-{event}.md"
    ctx: dict[str, Any] = {
        "github": {"event_name": event, "ref": "refs/heads/main", "run_id": "1"},
        "steps": {},
        "workspace": str(ROOT),
    }
    for i, step in enumerate(job["steps"]):
        name = step.get("name") or step.get("uses") or f"step {i}"
        condition = step.get("if", "success()")
        if not _evaluate(str(condition), ctx, result.status):
            result.skipped.append(name)
            continue
        if "uses" in step or step.get("id") == "install":
            # GitHub-only actions, and the network install: substituted by the shim on PATH.
            result.skipped.append(name)
            continue
        output_file = workdir / f"output-{event}-{i}"
        path_file = workdir / f"path-{event}-{i}"
        output_file.write_text("")
        path_file.write_text("")
        step_env = {k: _substitute(str(v), ctx) for k, v in step.get("env", {}).items()}
        run_env = {
            **base_env,
            **step_env,
            "GITHUB_OUTPUT": str(output_file),
            "GITHUB_PATH": str(path_file),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_EVENT_NAME": event,
            "PATH": os.pathsep.join([*path_entries, base_env.get("PATH", "")]),
        }
        script = _substitute(step["run"], ctx)
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=ROOT,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        result.ran.append(name)
        result.logs[name] = proc.stdout + proc.stderr
        outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
        if step.get("id"):
            ctx["steps"][step["id"]] = {
                "outputs": outputs,
                "outcome": "success" if proc.returncode == 0 else "failure",
            }
            result.outputs[step["id"]] = outputs
        path_entries = [p for p in path_file.read_text().splitlines() if p] + path_entries
        if proc.returncode != 0 and not step.get("continue-on-error"):
            result.status = "failure"
    return result


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    """``rai`` and ``python`` on PATH for this interpreter (what the install step provides)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in (("rai", f'"{sys.executable}" -m rai_harness'), ("python", f'"{sys.executable}"')):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        exe.chmod(0o755)
    return bin_dir


def test_workflow_is_valid_and_uses_what_ci_needs():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    on = workflow.get("on", workflow.get(True))  # PyYAML reads the key `on` as True
    assert {"pull_request", "push"} <= set(on)
    assert workflow["permissions"]["pull-requests"] == "write"
    steps = workflow["jobs"]["audit"]["steps"]
    text = WORKFLOW.read_text(encoding="utf-8")
    setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip" and setup["with"]["cache-dependency-path"]
    install = next(s for s in steps if s.get("id") == "install")["run"]
    assert "--index-url https://download.pytorch.org/whl/cpu" in install and "torch==" in install
    # No bare-interpreter imports before the install step (yaml is not on a fresh runner).
    before = steps[: steps.index(next(s for s in steps if s.get("id") == "install"))]
    assert not any("run" in s for s in before)
    assert "rai run" in text and "--gate" in text
    uses = [str(s.get("uses", "")) for s in steps]
    assert any(u.startswith("actions/upload-artifact") for u in uses) and "report.html" in text
    assert any(u.startswith("actions/github-script") for u in uses)
    save = next(s for s in steps if str(s.get("uses", "")).startswith("actions/cache/save"))
    # The baseline is stored whether or not the gate passed: no success() in its condition.
    assert "success()" not in save["if"] and "push" in save["if"]
    assert any(str(s.get("uses", "")).startswith("actions/cache/restore") for s in steps)


def test_workflow_shell_steps_run_in_order(tmp_path, shim, fake_server, monkeypatch):
    monkeypatch.setenv("RAI_TEST_API_KEY", "sk-test")
    fake_server.configure(reply="what an idiot")
    config = {
        "name": "ci-tiny",
        "seed": 3,
        "providers": [
            {
                "kind": "openai",
                "id": "fake",
                "model": "gpt-4o-mini",
                "base_url": fake_server.base_url,
                "api_key_env": "RAI_TEST_API_KEY",
                "params": {"max_tokens": 16},
                "stream": False,
            }
        ],
        "suites": [{"name": "toxicity", "params": {"repeats": 2, "scorer": KEYWORDS, "n_resamples": 200}}],
    }
    cfg = tmp_path / "ci.yaml"
    cfg.write_text(yaml.safe_dump(config))
    passing = tmp_path / "pass.yaml"
    passing.write_text(yaml.safe_dump({"rules": [{"metric": "toxicity:toxic_fraction", "max": 1.0}]}))
    failing = tmp_path / "fail.yaml"
    failing.write_text(yaml.safe_dump({"rules": [{"metric": "toxicity:toxicity_probability", "max": 0.1}]}))
    regression = tmp_path / "regression.yaml"
    regression.write_text(
        yaml.safe_dump({"regressions": [{"metric": "toxicity:expected_max_toxicity", "margin": 0.05}]})
    )
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    run_dir, baseline = tmp_path / "ci", tmp_path / "baseline"
    env = {
        "RAI_CONFIG": str(cfg),
        "RAI_REGRESSION_POLICY": str(regression),
        "RAI_RUN_ARGS": "--limit 4",
        "RUN_DIR": str(run_dir),
        "BASELINE_DIR": str(baseline),
    }

    # 1. A push to main whose gate FAILS: the job fails, and the run is still kept as the baseline.
    push = run_job(
        workflow, event="push", env={**env, "RAI_POLICY": str(failing)}, workdir=tmp_path, shim=shim
    )
    assert push.outputs["baseline"]["found"] == "false"
    assert push.outputs["audit"]["exit"] == "1", push.logs
    assert "Gate (regressions against the baseline)" in push.skipped
    assert (run_dir / "report.html").is_file() and (run_dir / "gate-default.md").is_file()
    assert (baseline / "run.json").read_bytes() == (run_dir / "run.json").read_bytes()
    assert push.status == "failure" and push.ran[-1] == "Fail when a gate failed"
    assert "Post the gate's Markdown on the pull request" in push.skipped

    # 2. A pull request (the cache restore is simulated by the folder step 1 left): it passes the
    # absolute gate, runs the regression gate against that baseline and composes the comment. Its
    # job starts in a fresh workspace, as on a hosted runner: a rerun into the push's folder would
    # resume that run (same run id), which the regression gate refuses to compare with itself.
    run_dir = tmp_path / "ci-pr"
    env["RUN_DIR"] = str(run_dir)
    pr = run_job(
        workflow, event="pull_request", env={**env, "RAI_POLICY": str(passing)}, workdir=tmp_path, shim=shim
    )
    assert pr.outputs["baseline"]["found"] == "true"
    assert pr.outputs["audit"]["exit"] == "0", pr.logs
    assert pr.outputs["regression"]["exit"] == "0", pr.logs
    comment = (run_dir / "pr-comment.md").read_text(encoding="utf-8")
    assert comment.startswith("<!-- rai-audit -->")
    assert (run_dir / "gate-default.md").read_text(encoding="utf-8").strip() in comment
    assert (run_dir / "gate-regression.md").read_text(encoding="utf-8").strip() in comment
    assert "Prepare this run as the next baseline" in pr.skipped
    assert pr.status == "success", pr.logs
    order = [
        s.get("name") for s in workflow["jobs"]["audit"]["steps"] if "run" in s and s.get("id") != "install"
    ]
    assert pr.ran == [n for n in order if n in pr.ran]  # in the workflow's order
    assert (tmp_path / "summary-pull_request.md").read_text(encoding="utf-8").strip()
