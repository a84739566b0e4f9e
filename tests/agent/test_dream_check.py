"""dream_check: fixed policies in the dream and on the real game (tiny untrained world model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.agent import ActorCritic, agent_preset
from server.dev_snapshot import make_snapshot
from training import dream_check
from training.envs import make_env
from training.episode_store import Episode, EpisodeStore

NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]


def test_tracker_reads_ball_and_paddle() -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[57:59, 10:18] = 200  # paddle, centre column 13.5
    assert dream_check.breakout_tracker(frame[None], NAMES).tolist() == [1]  # no ball: FIRE
    ball = frame.copy()
    ball[40, 40] = 200
    left = frame.copy()
    left[40, 5] = 200
    under = frame.copy()
    under[40, 14] = 200
    assert dream_check.breakout_tracker(np.stack([ball, left, under]), NAMES).tolist() == [2, 3, 0]


def test_dream_check_cli(tmp_path: Path) -> None:
    env = make_env("Breakout")
    obs, _ = env.reset(seed=0)
    frames, actions = [obs], []
    for t in range(30):
        obs, _, _, _, _ = env.step(t % 4)
        frames.append(obs)
        actions.append(t % 4)
    env.close()
    n = len(actions)
    ep = Episode(
        obs=np.stack(frames),
        actions=np.array(actions, np.int64),
        rewards=np.zeros(n, np.float32),
        terminated=np.zeros(n, bool),
        life_lost=np.zeros(n, bool),
        meta={"game": "Breakout", "action_meanings": NAMES},
    )
    EpisodeStore(tmp_path / "data").add(ep)
    make_snapshot(tmp_path, "Breakout", "tiny")
    ActorCritic(agent_preset("tiny", "Breakout", NAMES)).save_snapshot(tmp_path / "agent")
    out = tmp_path / "check.json"
    argv = ["--checkpoint", str(tmp_path / "Breakout"), "--data", str(tmp_path / "data"), "--agent"]
    argv += [str(tmp_path / "agent"), "--rollouts", "3", "--horizon", "2", "--steps", "1", "--real-episodes", "1"]
    assert dream_check.main([*argv, "--max-steps", "20", "--threads", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    names = {"random", "always NOOP", "always FIRE", "always RIGHT", "always LEFT", "tracker", "agent"}
    assert set(res["policies"]) == names
    for row in res["policies"].values():
        assert 0 <= row["dream"]["end_rate"] <= 1 and row["real"]["mean_steps"] <= 20
        assert row["real"]["lives_lost_per_horizon"] >= 0
    assert dream_check.main(["--checkpoint", str(tmp_path / "missing"), "--data", str(tmp_path / "data")]) == 2
