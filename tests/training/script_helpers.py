"""What the tests that run the entry scripts through their command lines share."""

from __future__ import annotations

import subprocess

TINY = ["--preset", "tiny", "--batch-size", "4", "--re-seq", "4", "--threads", "1", "--no-progress"]
"""train.py flags for a model and a run small enough for a test."""


def one_error(proc: subprocess.CompletedProcess) -> str:
    """The run failed cleanly: non-zero exit, exactly one error line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    return lines[0]
