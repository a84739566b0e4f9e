"""What the two ship commands share: training/ship.py (a world model) and training/agent/ship.py
(an agent trained in its dream) both copy a snapshot into checkpoints/ and write a model card."""

from __future__ import annotations

import json
import platform
from pathlib import Path

MAX_FILE_BYTES = 25 * 1024 * 1024
"""The largest file either command ships (checkpoints/ is committed to git)."""


def read_run_args(run_dir: Path) -> dict:
    """The train.py arguments of the run (args.json), or {} if absent."""
    try:
        return json.loads((run_dir / "args.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def cpu_name() -> str:
    """The CPU's model name, for the card's account of the training time."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
