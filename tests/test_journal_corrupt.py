"""A corrupt or foreign journal.sqlite: a clear RunError (exit 2 from the CLI) naming the file and --fresh."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rai_harness.errors import RunError
from rai_harness.run.journal import Journal


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 200)


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY, who TEXT)")
    conn.execute("INSERT INTO calls(who) VALUES ('someone else')")
    conn.commit()
    conn.close()


def _damaged(path: Path) -> None:
    with Journal(path) as journal:
        for i in range(400):
            journal.put(f"k{i}", "p", f"s{i}", 0, "ok", {"text": "x" * 200, "i": i})
    data = bytearray(path.read_bytes())
    # Overwrite the middle pages (b-tree pages past the header) with noise.
    for i in range(4096 * 2, len(data) - 4096, 7):
        data[i] = (i * 31) & 0xFF
    path.write_bytes(bytes(data))


def _bad_row(path: Path) -> None:
    with Journal(path) as journal:
        journal.put("k", "p", "s", 0, "ok", {"text": "fine"})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE calls SET record = '{not json'")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("spoil", [_garbage, _foreign, _damaged])
def test_unusable_journal_raises_run_error_naming_file_and_fresh(tmp_path, spoil):
    path = tmp_path / "journal.sqlite"
    spoil(path)
    with pytest.raises(RunError) as info:
        Journal(path)
    message = str(info.value)
    assert str(path) in message and "--fresh" in message


def test_damaged_row_is_a_run_error_not_a_decode_traceback(tmp_path):
    path = tmp_path / "journal.sqlite"
    _bad_row(path)
    with Journal(path) as journal, pytest.raises(RunError, match="--fresh"):
        journal.get_many(["k"])


def test_healthy_journal_still_opens_and_reads(tmp_path):
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        journal.put("k", "p", "s", 0, "ok", {"text": "fine"})
        journal.set_meta("run_id", "abc")
    with Journal(path) as journal:
        assert journal.get("k") == {"text": "fine"} and journal.get_meta("run_id") == "abc"


@pytest.mark.parametrize("spoil", [_garbage, _foreign])
def test_cli_run_on_corrupt_journal_exits_2_with_hint(tmp_path, spoil):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p1", "prompt": "hello"}\n')
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "corrupt",
                "providers": [
                    # Never contacted: the journal is opened before any call.
                    {
                        "kind": "openai",
                        "id": "x",
                        "model": "m",
                        "base_url": "http://127.0.0.1:9/v1",
                        "api_key_env": None,
                        "timeout_s": 1.0,
                        "max_retries": 0,
                    }
                ],
                "prompts": {"path": str(prompts)},
            }
        )
    )
    out = tmp_path / "out"
    out.mkdir()
    journal = out / "journal.sqlite"
    spoil(journal)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rai_harness",
            "run",
            str(config),
            "--out",
            str(out),
            "--quiet",
            "--no-report",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    combined = proc.stdout + proc.stderr
    assert proc.returncode == 2, combined
    assert "Traceback" not in combined
    flat = " ".join(combined.split())
    assert "journal.sqlite" in flat and "--fresh" in flat
