"""The world model as a gymnasium env (single and vector)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from model.world_model import WorldModel
from model.world_model.env import WorldModelEnv, WorldModelVectorEnv
from model.world_model.sampler import SamplerConfig

FAST = SamplerConfig(num_steps=1)


def test_check_env_passes(tiny_model: WorldModel, episodes) -> None:
    """gymnasium's checker: spaces, reset/step signatures and types, seeded determinism of reset and
    step, returned arrays not reused. It cannot check other render modes here (no registered spec)."""
    env = WorldModelEnv(tiny_model, episodes, horizon=5, sampler=FAST, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    messages = [str(w.message) for w in caught]
    assert all("not having a spec" in m for m in messages), messages


def test_spaces_and_episode_flow(tiny_model: WorldModel, episodes) -> None:
    env = WorldModelEnv(tiny_model, episodes, horizon=3, sampler=FAST, end_threshold=1.01)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(4)
    obs, info = env.reset(seed=1)
    # Reset shows a real frame: the last frame of a window inside one of the episodes.
    assert any((ep.obs == obs).all(axis=(1, 2, 3)).any() for ep in episodes)
    flags = []
    for t in range(3):
        obs, reward, terminated, truncated, info = env.step(t % 4)
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        assert reward in (-1.0, 0.0, 1.0) and 0 <= info["end_prob"] <= 1
        flags.append((terminated, truncated))
    assert flags == [(False, False), (False, False), (False, True)]  # never ends (threshold > 1), truncates at 3


def test_terminates_when_end_probability_passes_threshold(tiny_model: WorldModel, episodes) -> None:
    env = WorldModelEnv(tiny_model, episodes, sampler=FAST, end_threshold=-0.01)  # any probability passes
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(0)
    assert terminated and not truncated


def _end_head(model: WorldModel, p_end: float) -> None:
    """The end head ignores its input: P(end) = p_end."""
    head = model.reward_end.head_end
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([1 - p_end, p_end]).log())


def test_terminated_is_the_sampled_end(tiny_model: WorldModel, episodes) -> None:
    """By default the episode ends when the end drawn from the head says so (DIAMOND): with
    P(end) = 0.5 about half the dreams end at once (a 0.5 threshold would end none)."""
    _end_head(tiny_model, 0.5)
    env = WorldModelEnv(tiny_model, episodes, sampler=FAST)
    ends = []
    for seed in range(40):
        env.reset(seed=seed)
        _, _, terminated, truncated, info = env.step(0)
        assert info["end_prob"] == pytest.approx(0.5) and isinstance(terminated, bool) and not truncated
        assert terminated == bool(env.dreams.last.end[0])
        ends.append(terminated)
    assert 8 <= sum(ends) <= 32


def test_vector_env_terminated_is_the_sampled_end(tiny_model: WorldModel, episodes) -> None:
    _end_head(tiny_model, 0.5)
    envs = WorldModelVectorEnv(tiny_model, episodes, num_envs=16, sampler=FAST)
    envs.reset(seed=0)
    _, _, term, _, info = envs.step(np.zeros(16, dtype=np.int64))
    assert term.dtype == bool and np.array_equal(term, envs.dreams.last.end.numpy())
    np.testing.assert_allclose(info["end_prob"], 0.5, atol=1e-5)
    assert 0 < term.sum() < 16


def test_reset_seed_reproduces_the_whole_dream(tiny_model: WorldModel, episodes) -> None:
    env = WorldModelEnv(tiny_model, episodes, sampler=FAST)
    runs = []
    for seed in (3, 3, 4):
        frames = [env.reset(seed=seed)[0]] + [env.step(a)[0] for a in (1, 2)]
        runs.append(np.stack(frames))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_callable_context_source(tiny_model: WorldModel) -> None:
    frames = np.full((4, 64, 64, 3), 77, np.uint8)
    calls = []

    def source(rng: np.random.Generator):
        calls.append(rng)
        return frames, np.array([0, 1, 2])

    env = WorldModelEnv(tiny_model, source, sampler=FAST)
    obs, _ = env.reset(seed=0)
    assert (obs == 77).all() and isinstance(calls[0], np.random.Generator)


@pytest.mark.parametrize(
    "bad",
    [
        lambda rng: (np.zeros((3, 64, 64, 3), np.uint8), np.zeros(2)),  # 3 frames
        lambda rng: (np.zeros((4, 64, 64, 3), np.float32), np.zeros(3)),  # float frames
        lambda rng: (np.zeros((4, 64, 64, 3), np.uint8), np.zeros(4)),  # 4 actions
    ],
)
def test_bad_context_from_callable_raises(tiny_model: WorldModel, bad) -> None:
    env = WorldModelEnv(tiny_model, bad, sampler=FAST)
    with pytest.raises(ValueError, match="context"):
        env.reset(seed=0)


def test_bad_episodes_and_actions_raise(tiny_model: WorldModel, episodes) -> None:
    with pytest.raises(ValueError, match="4 frames"):
        WorldModelEnv(tiny_model, [(np.zeros((3, 64, 64, 3), np.uint8), np.zeros(2))])
    with pytest.raises(ValueError, match="episode 0"):
        WorldModelEnv(tiny_model, [(np.zeros((5, 64, 64, 3), np.uint8), np.zeros(2))])
    env = WorldModelEnv(tiny_model, episodes, sampler=FAST)
    env.reset(seed=0)
    for bad in (4, -1, 1.5):
        with pytest.raises(ValueError):
            env.step(bad)


def test_vector_env_batches_all_dreams_in_one_call(tiny_model: WorldModel, episodes, count_denoise_calls) -> None:
    calls = count_denoise_calls(tiny_model)
    envs = WorldModelVectorEnv(tiny_model, episodes, num_envs=3, sampler=FAST)
    assert isinstance(envs, gym.vector.VectorEnv) and envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.observation_space.shape == (3, 64, 64, 3) and envs.action_space.shape == (3,)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
    obs, reward, term, trunc, info = envs.step(np.array([0, 1, 3]))
    assert calls[0] == 1  # one network evaluation for the three dreams (1 Euler step)
    assert obs.shape == (3, 64, 64, 3) and reward.shape == (3,) and term.shape == trunc.shape == (3,)
    assert info["end_prob"].shape == (3,)
    assert envs.action_space.contains(envs.action_space.sample())
    with pytest.raises(ValueError):
        envs.step(np.array([0, 1]))


def test_vector_env_of_one_matches_the_single_env(tiny_model: WorldModel, episodes) -> None:
    """Same seed -> same context and same noise, whether the dream runs alone or in a vector env."""
    env = WorldModelEnv(tiny_model, episodes, sampler=FAST)
    envs = WorldModelVectorEnv(tiny_model, episodes, num_envs=1, sampler=FAST)
    single = [env.reset(seed=5)[0]] + [env.step(a)[0] for a in (1, 3)]
    vector = [envs.reset(seed=5)[0][0]] + [envs.step(np.array([a]))[0][0] for a in (1, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(single, vector, strict=True))


def test_vector_env_autoresets_next_step(tiny_model: WorldModel, episodes) -> None:
    envs = WorldModelVectorEnv(tiny_model, episodes, num_envs=2, horizon=2, sampler=FAST, end_threshold=1.01)
    envs.reset(seed=0)
    truncs, rewards, frames = [], [], []
    for _ in range(4):
        obs, reward, term, trunc, _ = envs.step(np.array([1, 2]))
        truncs.append(trunc.tolist())
        rewards.append(reward)
        frames.append(obs)
        assert not term.any()
    # Steps 1, 2 dream (truncated at the horizon), step 3 resets to a real frame, step 4 dreams again.
    assert truncs == [[False, False], [True, True], [False, False], [False, False]]
    assert (rewards[2] == 0).all()
    assert all(any((ep.obs == o).all(axis=(1, 2, 3)).any() for ep in episodes) for o in frames[2])
    assert envs._t.tolist() == [1, 1]


def test_vector_env_reset_only_touches_finished_dreams(tiny_model: WorldModel, episodes) -> None:
    """After env 0 terminates, its next step shows a real context frame while env 1 keeps dreaming."""
    envs = WorldModelVectorEnv(tiny_model, episodes, num_envs=2, sampler=FAST)
    envs.reset(seed=0)
    envs.end_threshold = -0.01  # every dream ends now
    _, _, term, _, _ = envs.step(np.array([0, 0]))
    assert term.all()
    ctx_before = envs.dreams.obs_ctx.clone()
    envs.end_threshold = 1.01
    envs._autoreset[1] = False  # pretend only env 0 ended
    obs, reward, term, trunc, _ = envs.step(np.array([3, 3]))
    assert any((ep.obs == obs[0]).all(axis=(1, 2, 3)).any() for ep in episodes)  # real frame: reset
    assert reward[0] == 0 and not term[0] and not trunc[0]
    # Env 1 slid its window by one dreamed frame: its old frames 1..3 are now frames 0..2.
    assert torch.equal(envs.dreams.obs_ctx[1, :3], ctx_before[1, 1:])
    assert envs._t.tolist() == [0, 2]
    hidden = envs.dreams.hidden
    assert hidden[0].shape == (1, 2, 32)
