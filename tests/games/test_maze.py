"""The Maze task: the scripted expert succeeds, the drawing works headless."""

from __future__ import annotations

import numpy as np

from games.maze import MAX_STEPS, OBS_DIM, MazeTask


def test_expert_reaches_the_goal() -> None:
    task = MazeTask()
    wins = 0
    for seed in range(4):
        obs, done = task.reset(seed), False
        assert obs.shape == (OBS_DIM,)
        while not done:
            obs, success, done = task.step(task.expert_action(obs))
        wins += success
        assert task.t <= MAX_STEPS
    task.close()
    assert wins == 4


def test_same_seed_same_episode_and_drawing() -> None:
    a, b = MazeTask(), MazeTask()
    assert np.allclose(a.reset(11), b.reset(11))
    img = a.draw(size=128, trail=[a.obs[:2], a.obs[:2] + 0.1], arrow=np.array([1.0, -1.0]))
    assert img.size == (128, 128) and img.mode == "RGB"
    assert len(img.getcolors(maxcolors=1 << 16)) > 3  # walls, floor, goal, ball
