"""The entry scripts through their command lines: train -> save -> load -> identical actions, evaluation JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from dbc_helpers import maze_train_flags

from model.dbc.core import act, load_dbc_policy
from training.dbc import evaluate, train

ROOT = Path(__file__).resolve().parents[2]


def test_train_save_load_identical_actions(maze_run: Path) -> None:
    out = maze_run / "maze"
    for name in ("diffusion", "bc_s0", "dbc_s0"):
        assert (out / f"{name}.safetensors").is_file() and (out / f"{name}.json").is_file()
    doc = json.loads((out / "dbc_s0.json").read_text())
    assert doc["meta"]["algo"] == "dbc" and doc["meta"]["lambda"] == 30.0 and doc["meta"]["task"] == "maze"
    assert json.loads((out / "bc_s0.json").read_text())["meta"]["lambda"] == 0.0
    p1, _ = load_dbc_policy(out / "dbc_s0", task="maze")
    p2, _ = load_dbc_policy(out / "dbc_s0.safetensors")
    obs = torch.randn(32, 6) * 2
    a1, _ = act(p1, obs)
    a2, _ = act(p2, obs)
    assert torch.equal(a1, a2)
    # Retraining with the same seed gives the same policy (fixed-seed regression).
    again = maze_run / "again"
    data = maze_run / "data"
    assert train.main([*maze_train_flags(data, again), "--algo", "bc", "--seeds", "0", "--steps", "20"]) == 0
    b1, _ = act(load_dbc_policy(out / "bc_s0")[0], obs)
    b2, _ = act(load_dbc_policy(again / "bc_s0")[0], obs)
    assert torch.allclose(b1, b2, atol=1e-6)


def test_evaluation_json_and_plot(maze_run: Path) -> None:
    doc = json.loads((maze_run / "maze" / "eval.json").read_text())
    assert doc["task"] == "maze" and doc["episodes"] == 2
    assert {r["algo"] for r in doc["results"]} == {"bc", "dbc"}
    assert all(len(r["episodes"]) == 2 and 0 <= r["success_rate"] <= 100 for r in doc["results"])
    assert set(doc["summary"]) == {"bc", "dbc"} and "DBC" in doc["paper"]
    png = (maze_run / "maze" / "eval.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_bad_names_and_mismatched_checkpoints_give_one_error_line(maze_run: Path, capsys) -> None:
    # One real subprocess: the exit code and stderr as a user sees them.
    r = run_cli("-m", "training.dbc.train", "--task", "pong")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: unknown task 'pong': expected one of maze, fetch, breakout"]
    pol = str(maze_run / "maze" / "bc_s0")
    cases = [
        (train.main, ["--task", "maze", "--algo", "ppo"], "unknown algo 'ppo'"),
        (train.main, ["--task", "maze", "--algo", "dbc", "--diffusion", "/nonexistent/phi"], "needs a diffusion"),
        (evaluate.main, ["--task", "breakout", "--policies", pol, "--episodes", "1"], "not 'breakout'"),
        (evaluate.main, ["--task", "mario", "--policies", pol], "unknown task 'mario'"),
        (evaluate.main, ["--task", "maze", "--policies", str(maze_run / "maze" / "diffusion")], "not a DBC policy"),
        (evaluate.main, ["--task", "maze", "--policies", "/nonexistent/pol"], "checkpoint file missing"),
    ]
    for fn, argv, expected in cases:
        assert fn(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], (argv, err)


def test_mismatched_weights_are_refused(maze_run: Path, tmp_path: Path) -> None:
    """A checkpoint whose config names another shape than its weights -> one clear error."""
    from model import checkpoint

    tree, meta = checkpoint.load(maze_run / "maze" / "bc_s0")
    meta["config"]["hidden"] = 64
    checkpoint.save(tmp_path / "bad", tree, meta)
    assert evaluate.main(["--task", "maze", "--policies", str(tmp_path / "bad"), "--episodes", "1"]) == 2


def test_maze_demos_are_expert_successes(maze_run: Path) -> None:
    with np.load(maze_run / "data" / "maze_3.npz") as z:
        assert z["states"].shape[1] == 6 and z["actions"].shape[1] == 2
        assert np.abs(z["actions"]).max() <= 1.0
        assert sorted(set(z["episode"].tolist())) == [0, 1, 2]


def test_merge_episode_ranges(maze_run: Path, tmp_path: Path) -> None:
    """Evaluations of the same policies on other episodes merge into one longer evaluation."""
    pols = [str(maze_run / "maze" / n) for n in ("bc_s0", "dbc_s0")]
    more = tmp_path / "more.json"
    assert (
        evaluate.main(
            ["--task", "maze", "--policies", *pols, "--episodes", "1", "--episode-seed", "2", "--out", str(more)]
        )
        == 0
    )
    merged = tmp_path / "merged.json"
    assert (
        evaluate.main(
            ["--task", "maze", "--merge", str(maze_run / "maze" / "eval.json"), str(more), "--out", str(merged)]
        )
        == 0
    )
    doc = json.loads(merged.read_text())
    assert doc["episodes"] == 3 and doc["episode_seed"] == 0
    assert all([e["seed"] for e in r["episodes"]] == [0, 1, 2] for r in doc["results"])
    # The same episodes twice cannot be merged.
    assert evaluate.main(["--task", "maze", "--merge", str(more), str(more), "--out", str(merged)]) == 2
