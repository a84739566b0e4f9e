"""What the two ship commands share: training/ship.py (a world model) and training/agent/ship.py
(an agent trained in its dream) both copy a snapshot into checkpoints/ and write a model card."""

from __future__ import annotations

import json
from pathlib import Path

MAX_FILE_BYTES = 25 * 1024 * 1024
"""The largest file either command ships (checkpoints/ is committed to git)."""


def read_run_args(run_dir: Path) -> dict:
    """The train.py arguments of the run (args.json), or {} if absent."""
    try:
        return json.loads((run_dir / "args.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
