"""Helpers for tests that run configs end to end: a prompts file and the journal's progress."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


def write_prompts(path: Path, n: int) -> Path:
    """A JSONL prompts file of ``n`` distinct prompts (ids ``p0000``...); returns ``path``."""
    with path.open("w") as fh:
        for i in range(n):
            fh.write(
                json.dumps({"id": f"p{i:04d}", "prompt": f"question number {i} about the weather"}) + "\n"
            )
    return path


def journal_ok_count(path: Path) -> int:
    """Successful calls committed to a run's ``journal.sqlite`` so far (0 while it is not readable).

    Opened read-only, so a test can poll a journal a running (or killed) process writes.
    """
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM calls WHERE status='ok'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
