"""benchmarks/load_test.py against a real server (python -m server with the shipped models) and real
websocket clients: a sweep of player counts in one run, one report per count, and the machine beside
the figures. Speeds are printed, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_sweep_reports_each_player_count_with_the_machine(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "load_test.py"), "--serve", "--checkpoint-dir", "checkpoints"]
    cmd += ["--players", "1,2", "--duration", "2", "--warmup", "1", "--threads", "1", "--game", "Breakout"]
    cmd += ["--json", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)  # a hang guard
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["players"] for r in report["runs"]] == [1, 2]
    assert [len(r["sessions"]) for r in report["runs"]] == [1, 2]  # every player got a session
    assert all(r["errors"] == 0 for r in report["runs"])
    # the shipped model's own sampler, as the server reported it
    own = json.loads((ROOT / "checkpoints" / "Breakout.json").read_text())["meta"]["config"]["sampler"]["num_steps"]
    assert all(r["steps"] == [own] for r in report["runs"])
    assert report["machine"]["cpu_flags"] and "load_average_1min" in report["machine"]
    assert "flags:" in res.stdout and "mean fps" in res.stdout


def test_bad_player_counts_are_refused_naming_the_flag() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "load_test.py"), "--players", "4,0"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--players" in res.stderr and "1..64" in res.stderr
