"""``rai COMMAND --help`` reads as prose: a docstring wrapped in the source is not wrapped again."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rai_harness.cli import app


@pytest.mark.parametrize(
    ("command", "sentence"),
    [
        (["run"], "(only missing or failed calls are made again), so an interrupted run resumes"),
        (["gate"], "unless the policy says otherwise; regressions compare per-item values with a baseline"),
        (["guard", "check"], "the redacted text for `redact`, and the text itself only for `flag`"),
    ],
)
def test_help_paragraphs_flow(command, sentence):
    # Wide enough for any of these sentences on one line: a line break inside one came from
    # the docstring's own wrapping, which typer's rich help used to keep.
    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert sentence in res.output
    assert "``" not in res.output


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield [*prefix, name]
        if getattr(command, "commands", None):  # a group (typer's own, not necessarily click's)
            yield from _commands(command, (*prefix, name))


def test_no_help_text_loses_a_bracketed_install_extra():
    # Rich reads "[ray]" in "pip install 'rai-harness[ray]'" as markup and drops it, leaving
    # an install command that installs the wrong thing.
    import typer

    root = typer.main.get_command(app)
    commands = list(_commands(root))
    assert ["guard", "audit"] in commands
    for command in commands:
        res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
        assert res.exit_code == 0, (command, res.output)
        assert "'rai-harness')" not in res.output and "'rai-harness'." not in res.output, command
    audit = CliRunner().invoke(app, ["guard", "audit", "--help"], env={"COLUMNS": "300"})
    assert "pip install 'rai-harness[ray]'" in audit.output
