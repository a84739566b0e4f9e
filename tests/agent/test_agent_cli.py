"""The full loop through `train.py --agent` (tiny presets), resume, `python -m training.agent.evaluate`
and `python -m training.agent.ship`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model import checkpoint
from model.agent import ActorCritic, AgentPolicy
from model.world_model import WorldModel
from training import train
from training.agent import evaluate as evaluate_agent
from training.agent import real_game
from training.agent import ship as ship_agent
from training.agent.dream_check import breakout_tracker

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--agent", "--preset", "tiny", "--agent-preset", "tiny", "--collect-steps", "12", "--max-episode-steps", "10",
    "--denoiser-steps", "2", "--re-steps", "2", "--agent-steps", "2", "--batch-size", "2", "--re-seq", "2",
    "--agent-batch-size", "2", "--agent-passes", "2", "--horizon", "3", "--threads", "1", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs of the loop, run as a script (the way people call it)."""
    root = tmp_path_factory.mktemp("loop")
    cmd = [sys.executable, str(ROOT / "training" / "train.py"), *TINY, "--epochs", "2"]
    cmd += ["--run-dir", str(root / "run"), "--data", str(root / "data")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr
    return root


def test_loop_writes_snapshots_metrics_and_episodes(run: Path) -> None:
    for name in ("agent", "snapshot", "state"):
        assert (run / "run" / f"{name}.safetensors").is_file() and (run / "run" / f"{name}.json").is_file()
    lines = [json.loads(x) for x in (run / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert lines[-1]["real_steps"] == 24 and lines[-1]["agent_steps"] == 4
    for key in ("denoiser/train/loss", "reward_end/train/loss_end", "agent/train/loss", "agent/train/entropy"):
        assert key in lines[-1]
    assert len(list((run / "data").glob("ep_*.npz"))) == 2  # episodes capped at 10 steps reach the store
    meta = ActorCritic.from_snapshot(run / "run" / "agent").meta
    assert meta["epoch"] == 2 and meta["config"]["preset"] == "tiny"


def test_loop_resume_and_refuses_to_overwrite(run: Path, capsys: pytest.CaptureFixture) -> None:
    args = [*TINY, "--run-dir", str(run / "run"), "--data", str(run / "data")]
    assert train.main([*args, "--epochs", "2"]) == 2  # a run is there: no silent overwrite
    assert "--resume" in capsys.readouterr().err
    assert train.main([*args, "--epochs", "3", "--resume", "--agent-lr", "2e-4"]) == 0
    lines = [json.loads(x) for x in (run / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["epoch"] == 3 and lines[-1]["agent_steps"] == 6
    tree, _ = checkpoint.load(run / "run" / "state")
    assert tree["opt_ac"]["param_groups"][0]["lr"] == 2e-4  # a new --agent-lr wins over the saved optimiser's
    assert ActorCritic.from_snapshot(run / "run" / "agent").meta["epoch"] == 3


def test_loop_trains_on_dreamed_contexts_with_its_loss_settings(run: Path, tmp_path: Path) -> None:
    """--ar-frames and the loss settings reach the loop's world-model steps, as in train.py; --resume
    takes the settings the run recorded, and refuses to change its loss settings."""
    out = tmp_path / "ar"
    args = [*TINY, "--run-dir", str(out), "--data", str(run / "data"), "--collect-steps", "0"]
    assert train.main([*args, "--epochs", "1", "--ar-frames", "1", "--ar-fraction", "1", "--motion-weight", "3"]) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["denoiser/train/dreamed_samples"] == 2  # batch 2, every sample on a dreamed context
    assert WorldModel.from_snapshot(out / "snapshot").cfg.denoiser.motion_weight == 3.0
    assert train.main(["--agent", "--run-dir", str(out), "--resume", "--epochs", "2", "--motion-weight", "4"]) == 2
    # only the run folder given again: tiny presets, no collection, --ar-frames 1 all come from args.json
    assert train.main(["--agent", "--run-dir", str(out), "--resume", "--epochs", "2"]) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["epoch"] == 2 and lines[-1]["real_steps"] == 0
    assert lines[-1]["denoiser/train/dreamed_samples"] == 2


def test_evaluate_agent_cli(run: Path, capsys: pytest.CaptureFixture) -> None:
    out = run / "eval.json"
    argv = ["--agent", str(run / "run" / "agent"), "--game", "Breakout", "--episodes", "2", "--max-steps", "30"]
    assert evaluate_agent.main([*argv, "--out", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "agent" in table and "random" in table and "expert" in table
    res = json.loads(out.read_text())
    assert set(res["policies"]) == {"agent", "random", "expert"}
    for s in res["policies"].values():
        assert s["episodes"] == 2 and len(s["returns"]) == 2 and s["mean_steps"] <= 30
    assert isinstance(res["agent_beats_random"], bool)
    # the same snapshot, loaded for the server, plays
    policy = AgentPolicy.from_snapshot(run / "run" / "agent.safetensors".removesuffix(".safetensors"))
    assert policy.action_meanings == ["NOOP", "FIRE", "RIGHT", "LEFT"]


class PixelTracker:
    """The dream_check pixel tracker behind AgentPolicy's interface: all probability on its action."""

    action_meanings = ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def __init__(self) -> None:
        self.generator = torch.Generator()

    def reset(self) -> None:
        pass

    def act(self, frame: np.ndarray) -> tuple[int, list[float], float]:
        a = int(breakout_tracker(frame[None], self.action_meanings)[0])
        return a, [float(i == a) for i in range(4)], 0.0


def test_tracking_probe(run: Path, capsys: pytest.CaptureFixture) -> None:
    """The probe tells a ball tracker from an untrained agent, on the real emulator."""
    tracker = real_game.tracking_probe(PixelTracker(), 400, seed=5)
    assert tracker["states_with_ball"] > 100
    assert tracker["corr_gap_pull"] > 0.5 and tracker["sign_agreement"] > 0.9
    assert tracker["p_fire_no_ball"] == 1.0 and tracker["p_fire_ball"] == 0.0
    out = run / "eval-tracking.json"
    argv = ["--agent", str(run / "run" / "agent"), "--episodes", "1", "--max-steps", "10", "--baselines", ""]
    assert evaluate_agent.main([*argv, "--tracking", "200", "--out", str(out), "--no-progress"]) == 0
    assert "tracking (200 steps of random play)" in capsys.readouterr().out
    agent = json.loads(out.read_text())["tracking"]
    assert agent["steps"] == 200 and abs(agent["corr_gap_pull"]) < tracker["corr_gap_pull"]
    assert evaluate_agent.main([*argv, "--tracking", "-1"]) == 2
    assert "--tracking >= 0" in capsys.readouterr().err


def test_bad_paths_clear_errors(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert evaluate_agent.main(["--agent", str(tmp_path / "missing"), "--episodes", "1"]) == 2
    assert "checkpoint file missing" in capsys.readouterr().err
    # a world-model snapshot is not an agent
    assert evaluate_agent.main(["--agent", str(run / "run" / "snapshot"), "--episodes", "1"]) == 2
    assert "not an agent snapshot" in capsys.readouterr().err
    assert evaluate_agent.main(["--agent", str(run / "run" / "agent"), "--game", "Pong", "--episodes", "1"]) == 2
    assert "trained on Breakout" in capsys.readouterr().err
    # the loop: nothing to resume, a bad world-model path, an unknown game
    base = [*TINY, "--epochs", "1", "--data", str(tmp_path / "data")]
    assert train.main([*base, "--run-dir", str(tmp_path / "r1"), "--resume"]) == 2
    assert "checkpoint file missing" in capsys.readouterr().err
    assert train.main([*base, "--run-dir", str(tmp_path / "r2"), "--world-model", str(tmp_path / "nope")]) == 2
    assert "checkpoint file missing" in capsys.readouterr().err
    assert train.main([*base, "--run-dir", str(tmp_path / "r3"), "--game", "NoSuchGame"]) == 2
    assert "unknown game" in capsys.readouterr().err
    # and a non-zero exit from the real command line
    cmd = [sys.executable, "-m", "training.agent.evaluate", "--agent", str(tmp_path / "missing")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 2 and "checkpoint file missing" in res.stderr


def test_ship_agent_checks_its_evaluation(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = run / "eval-ship.json"
    argv = ["--agent", str(run / "run" / "agent"), "--episodes", "2", "--max-steps", "20", "--no-progress"]
    assert evaluate_agent.main([*argv, "--tracking", "200", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    ship = ["--run-dir", str(run / "run"), "--out-dir", str(tmp_path / "ckpt"), "--docs", str(tmp_path / "docs")]
    if not res["agent_beats_random"]:  # what a 6-update tiny agent gets: refused
        assert ship_agent.main([*ship, "--eval", str(out)]) == 2
        assert "does not beat random" in capsys.readouterr().err
        assert not (tmp_path / "ckpt").exists()
    # an evaluation of another snapshot is refused
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**res, "agent_meta": {**res["agent_meta"], "agent_steps": 999}}))
    assert ship_agent.main([*ship, "--eval", str(other)]) == 2
    assert "another snapshot" in capsys.readouterr().err
    # the shipping itself (the verdict forced, to exercise the card): snapshot, card, plot, eval JSON
    forced = tmp_path / "forced.json"
    forced.write_text(json.dumps({**res, "agent_beats_random": True}))
    assert ship_agent.main([*ship, "--eval", str(forced)]) == 0
    shipped = AgentPolicy.from_snapshot(tmp_path / "ckpt" / "Breakout-agent")
    assert shipped.model.meta["training"]["updates"] == res["agent_meta"]["agent_steps"]
    text = (tmp_path / "docs" / "Breakout-agent.md").read_text()
    assert f"{res['policies']['random']['mean']:.2f}" in text and "Breakout-agent.png" in text
    assert "DIAMOND's full loop" in text  # the tiny run trains its world model too
    assert f"{res['tracking']['corr_gap_pull']:+.3f}" in text.split("Does it watch the ball?")[1]
    assert (tmp_path / "docs" / "Breakout-agent.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "docs" / "Breakout-agent-eval.json").read_text())["policies"] == res["policies"]
    # a copy of an earlier snapshot ships with --agent, its curves cut at its update; one the run never saved does not
    early, stray, early_eval = tmp_path / "early", tmp_path / "stray", tmp_path / "early.json"
    model = ActorCritic.from_snapshot(run / "run" / "agent")
    keep = {k: v for k, v in model.meta.items() if k not in ("kind", "config")}
    model.save_snapshot(early, {**keep, "epoch": 1, "agent_steps": 2})  # what the run saved after epoch 1
    model.save_snapshot(stray, {**keep, "epoch": 1, "agent_steps": 3})  # an update no epoch ended at
    early_eval.write_text(json.dumps({**res, "agent_beats_random": True, "agent_meta": checkpoint.read_meta(early)}))
    assert ship_agent.main([*ship, "--agent", str(early), "--eval", str(early_eval)]) == 0
    assert AgentPolicy.from_snapshot(tmp_path / "ckpt" / "Breakout-agent").model.meta["training"]["updates"] == 2
    assert ship_agent.main([*ship, "--agent", str(stray), "--eval", str(early_eval)]) == 2
    assert "not a snapshot of" in capsys.readouterr().err
