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
