"""Ball recall (training/world_model/measures.py) on real Breakout frames from the emulator."""

from __future__ import annotations

import numpy as np
import pytest

from games.envs import make_env
from games.episode_store import Episode
from games.experts import make_policy
from training.world_model.measures import (
    BALL_FIELD,
    ball_position,
    ball_recall,
    mean_ball_recall,
    small_changes,
    still_changed,
)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """120 steps of scripted-expert Breakout: the ball is served and crosses the field."""
    env = make_env("Breakout", seed=5)
    obs, _ = env.reset(seed=5)
    policy, rng = make_policy("Breakout", "expert"), np.random.default_rng(0)
    out = [obs]
    for _ in range(120):
        obs, _, term, trunc, _ = env.step(policy(env, rng))
        out.append(obs)
        if term or trunc:
            break
    env.close()
    return np.stack(out)


def test_ball_is_found_in_real_play(frames: np.ndarray) -> None:
    found = [ball_position(f, "Breakout") for f in frames]
    assert found[0] is None  # before the serve the field is empty
    seen = [p for p in found if p is not None]
    assert len(seen) > 20
    rows = [p[0] for p in seen]
    assert max(rows) - min(rows) > 10  # it moves through the field


def test_recall_is_one_for_the_real_frames_and_zero_without_the_ball(frames: np.ndarray) -> None:
    real = frames[None, 1:]
    same = ball_recall(real, real, "Breakout")
    counted = [c for c in same["real_balls"] if c]
    assert counted and all(r == 1.0 for r, c in zip(same["recall"], same["real_balls"]) if c)

    blank = real.copy()
    rows, cols = BALL_FIELD["Breakout"]
    blank[:, :, rows, cols] = 0
    gone = ball_recall(blank, real, "Breakout")
    assert all(r == 0.0 and d == 0.0 for r, d, c in zip(gone["recall"], gone["drawn"], gone["real_balls"]) if c)

    shifted = real.copy()  # the ball drawn 6 pixels to the right: drawn, but a miss
    shifted[:, :, rows, cols] = np.roll(real[:, :, rows, cols], 6, axis=3)
    moved = ball_recall(shifted, real, "Breakout")
    pooled = mean_ball_recall(moved, 1, real.shape[1])
    assert pooled is not None and pooled < 0.2
    assert np.mean([d for d, c in zip(moved["drawn"], moved["real_balls"]) if c]) > 0.8


def test_games_without_a_ball_field_report_none(frames: np.ndarray) -> None:
    assert ball_recall(frames[None], frames[None], "Pong") is None


def test_still_changed_counts_noise_on_the_still_background_only(frames: np.ndarray) -> None:
    """Real play: the real frame changes nothing still; one grey level of noise on every pixel
    changes all of it; a dream that moves only what the real game moves changes none of it."""
    prev, real = frames[60], frames[61]
    moving = (real != prev).any(-1)
    assert moving.any() and not moving.all()
    assert still_changed(real, real, prev) == 0.0
    noisy = real.copy()
    noisy[..., 0] = np.where(real[..., 0] < 255, real[..., 0] + 1, 254)
    assert still_changed(noisy, real, prev) == 1.0
    wrong_ball = real.copy()
    wrong_ball[moving] = 0  # wrong where the real game moves, right elsewhere
    assert still_changed(wrong_ball, real, prev) == 0.0
    assert np.isnan(still_changed(real, real, 255 - real))  # nothing still


def _episode(obs: np.ndarray) -> Episode:
    n = len(obs) - 1
    zeros = np.zeros(n, dtype=bool)
    return Episode(obs, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float32), zeros, zeros, {"game": "Breakout"})


def test_small_changes_counts_real_changes_by_size(frames: np.ndarray) -> None:
    """Real play changes pixels (the ball, the paddle), none by less than one level; a frame with
    one pixel nudged by 1 level in one channel (and nothing else moving) makes that pixel the only
    change, below a band of 2 and not of 1."""
    real = small_changes([_episode(frames)])
    assert real["changed_pixels"] > 0 and real["share_below"][1] == 0.0
    shares = list(real["share_below"].values())
    assert shares == sorted(shares) and shares[-1] <= 1.0
    still = np.repeat(frames[:1], 2, axis=0)
    still[1, 10, 10, 0] ^= 1  # one grey level, up or down
    nudged = small_changes([_episode(still)], bands=(1, 2))
    assert nudged == {"changed_pixels": 1, "share_below": {1: 0.0, 2: 1.0}}
