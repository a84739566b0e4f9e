"""Helpers shared by the DBC tests."""

from __future__ import annotations

from pathlib import Path


def maze_train_flags(data: Path, out: Path) -> list[str]:
    """training.dbc.train's flags for a tiny Maze run (3 demonstrations, 2 hidden layers of 32), without --algo."""
    tiny = ["--task", "maze", "--demos", "3", "--hidden", "32", "--layers", "2"]
    return [*tiny, "--data-dir", str(data), "--out", str(out)]
