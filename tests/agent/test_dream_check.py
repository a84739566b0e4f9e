"""training.agent.dream_check: fixed policies in the dream and on the real game (tiny untrained world model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from games.envs import make_env
from games.episode_store import Episode, EpisodeStore
from model.agent import ActorCritic, agent_preset
from server.dev_snapshot import make_snapshot
from training.agent import dream_check

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


def test_paired_difference() -> None:
    vs = dream_check.paired_vs([1, 0, 0, 1], [1, 1, 0, 1])
    assert vs["end_rate_diff"] == -0.25 and np.isclose(vs["se"], 0.25)  # diffs 0,-1,0,0: sd 0.5 / sqrt 4


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
    argv += [str(tmp_path / "agent"), "--rollouts", "3", "--horizon", "2", "--steps", "1"]
    real = ["--real-episodes", "1", "--max-steps", "20", "--threads", "1"]
    assert dream_check.main([*argv, *real, "--out", str(out), "--strip", str(tmp_path / "strip.png")]) == 0
    res = json.loads(out.read_text())
    names = {"random", "always NOOP", "always FIRE", "always RIGHT", "always LEFT", "tracker", "agent"}
    assert set(res["policies"]) == names
    for name, row in res["policies"].items():
        assert 0 <= row["dream"]["end_rate"] <= 1 and row["real"]["mean_steps"] <= 20
        assert row["real"]["lives_lost_per_horizon"] >= 0
        assert len(row["dream"]["ended"]) == 3 and np.isclose(np.mean(row["dream"]["ended"]), row["dream"]["end_rate"])
        assert (row["dream"]["vs_random"] is None) == (name == "random")
    with Image.open(tmp_path / "strip.png") as img:  # 7 policies x 3 dreams of 1 + 2 frames, 2x upscaled
        assert img.width == 2 * 3 * 64 and img.height == 2 * 7 * (12 + 3 * (64 + 1))
    # a subset: random is always played first (the paired comparison's base)
    assert dream_check.main([*argv, "--policies", "tracker", "--out", str(out)]) == 0
    assert list(json.loads(out.read_text())["policies"]) == ["random", "tracker"]
    data = ["--data", str(tmp_path / "data")]
    assert dream_check.main(["--checkpoint", str(tmp_path / "missing"), *data]) == 2
    assert dream_check.main(["--checkpoint", str(tmp_path / "Breakout"), *data, "--policies", "dance"]) == 2
