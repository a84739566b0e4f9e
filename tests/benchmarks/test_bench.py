"""benchmarks/bench.py --guided-rows on the shipped Breakout model: both ways of a guided step are
timed at each batch, from real contexts, with the machine beside the figures. Speeds are printed,
never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_guided_rows_times_one_call_and_two_calls_per_batch(tmp_path: Path) -> None:
    out = tmp_path / "guided.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--guided-rows", "--quick", "--threads", "1"]
    res = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["mode"] for r in report["results"]] == ["one call", "two calls"]
    for r in report["results"]:
        assert (
            set(r) == {"preset", "mode", "dream_b1_fps", "dream_b2_fps"}
            and min(r["dream_b1_fps"], r["dream_b2_fps"]) > 0
        )
    assert report["machine"]["cpu_flags"] and "CPU flags:" in res.stdout
