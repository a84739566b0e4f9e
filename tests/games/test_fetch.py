"""The FetchPick task: the env builds and steps (mujoco 3.2.7), the scripted expert succeeds, the noise
of the generalisation experiment is reproducible and grows in one direction, the drawing works headless."""

from __future__ import annotations

import numpy as np
import pytest

from games.fetch import GOAL, GRIP, MAX_STEPS, OBJECT, OBS_DIM, FetchTask


@pytest.fixture(scope="module")
def task():
    t = FetchTask()
    yield t
    t.close()


def test_env_builds_and_steps(task: FetchTask) -> None:
    obs = task.reset(0)
    assert obs.shape == (OBS_DIM,) and np.isfinite(obs).all()
    assert np.allclose(obs[GOAL], task.env.unwrapped.goal)
    first = obs.copy()
    for t in range(MAX_STEPS):
        obs, success, done = task.step(np.array([1.0, 0.0, 0.0, 1.0]))  # push the gripper along +x
        assert done == (t == MAX_STEPS - 1) and isinstance(success, bool)
    assert obs[GRIP][0] > first[GRIP][0] + 0.05
    with pytest.raises(RuntimeError):
        task.step(np.zeros(4))


def test_expert_picks_and_places(task: FetchTask) -> None:
    for seed in range(3):
        obs, done = task.reset(seed), False
        lifted = False
        while not done:
            obs, success, done = task.step(task.expert_action(obs))
            lifted |= obs[OBJECT][2] > 0.45  # the cube leaves the table (half the goals are in the air)
        assert task.success, seed
        assert lifted or obs[GOAL][2] < 0.45


def test_noise_is_reproducible_and_scales(task: FetchTask) -> None:
    base = task.reset(7).copy()
    assert np.array_equal(task.reset(7, 0.0), base)
    small, again = task.reset(7, 0.02).copy(), task.reset(7, 0.02).copy()
    large = task.reset(7, 0.04).copy()
    assert np.array_equal(small, again)
    for part in (GOAL, OBJECT):
        d_small, d_large = small[part] - base[part], large[part] - base[part]
        assert np.abs(d_small).max() <= 0.02 + 1e-3 and np.abs(d_large).max() <= 0.04 + 1e-3
        assert np.linalg.norm(d_large) > np.linalg.norm(d_small) > 0
    # The same direction for the goal, twice as far (no clipping here).
    assert np.allclose(large[GOAL] - base[GOAL], 2 * (small[GOAL] - base[GOAL]), atol=1e-6)
    assert np.abs(small[GRIP] - base[GRIP]).max() <= 0.02 + 3e-3  # the arm settles where it was sent
    assert small[GRIP][2] >= base[GRIP][2] - 2e-3  # the gripper only moves up


def test_drawing(task: FetchTask) -> None:
    task.reset(1)
    task.step(task.expert_action(task.obs))
    img = task.draw(size=128, arrow=np.array([1.0, -1.0, 0.0, 1.0]))
    assert img.size == (128, 128) and img.mode == "RGB"
    assert len(img.getcolors(maxcolors=1 << 16)) > 4  # floor, table, goal, cube, gripper


def test_a_reused_env_replays_a_fresh_one(task: FetchTask) -> None:
    """training.dbc.evaluate reuses envs across episodes: a reset with a seed must be a fresh episode."""

    def play(t: FetchTask, seed: int) -> np.ndarray:
        obs, done, path = t.reset(seed, 0.03), False, []
        while not done:
            obs, _, done = t.step(t.expert_action(obs))
            path.append(obs)
        return np.stack(path)

    fresh = FetchTask()
    try:
        assert np.array_equal(play(task, 4), play(fresh, 4))  # `task` has played other episodes before
    finally:
        fresh.close()
