"""The README's CLI synopsis matches the CLI: no option it shows is missing, and the commands a
CI job or an application developer scripts (run, report, gate, guard check) show every option."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from typer.main import get_command

from rai_harness.cli import app

ROOT = Path(__file__).resolve().parents[1]
#: Commands whose synopsis must be complete (the others show the common options only).
COMPLETE = {("run",), ("report",), ("gate",), ("guard", "check"), ("suites",), ("providers",)}


def _synopsis() -> list[str]:
    """The ``rai ...`` lines of the README's CLI block, continuation lines joined."""
    block = (ROOT / "README.md").read_text().split("\n## CLI\n", 1)[1].split("```text\n", 1)[1]
    entries: list[str] = []
    for line in block.split("```", 1)[0].splitlines():
        if line.startswith("rai "):
            entries.append(line.split("#", 1)[0])
        elif entries:
            entries[-1] += " " + line.split("#", 1)[0].strip()
    return entries


def _command(words: list[str]) -> tuple[tuple[str, ...], Any]:
    # typer's own click (typer._click), so classes are not compared: commands and params by shape.
    cmd: Any = get_command(app)
    path: list[str] = []
    for word in words:
        sub = getattr(cmd, "commands", {}).get(word)
        if sub is None:
            break
        cmd, path = sub, [*path, word]
    return tuple(path), cmd


def test_readme_cli_synopsis_matches_the_cli():
    seen = set()
    for entry in _synopsis():
        path, cmd = _command(entry.split()[1:])
        seen.add(path)
        shown = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", entry))
        options = [p for p in cmd.params if p.param_type_name == "option" and "--help" not in p.opts]
        for p in options:
            names = {*p.opts, *p.secondary_opts}
            if path in COMPLETE:
                assert names & shown, f"README's `rai {' '.join(path)}` synopsis lacks {sorted(names)}"
        known = {n for p in options for n in (*p.opts, *p.secondary_opts)} | {"--version"}
        assert shown <= known, f"README's `rai {' '.join(path)}` shows options the CLI lacks: {shown - known}"
    assert seen >= COMPLETE
