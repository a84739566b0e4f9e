"""Batches of training windows drawn from stored episodes (held in memory as uint8), and the
per-transition sampling weights train.py can give them (`field_weights`, `paddle_weights`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from games.episode_store import Episode
from training.world_model.measures import BALL_BRIGHTNESS, BALL_FIELD, PADDLE_ROWS


@dataclass
class Batch:
    obs: torch.Tensor  # (B, T+L, C, H, W) float in [-1, 1]
    actions: torch.Tensor  # (B, T+L) long; actions[:, i] taken at obs[:, i]
    rewards: torch.Tensor  # (B, T+L)
    ends: torch.Tensor  # (B, T+L) bool: game over or life lost after this step
    weights: torch.Tensor | None = None  # (B,) the sampling weight of each window's last transition


class WindowSampler:
    """Samples windows of `length` transitions, padding before an episode's start with its first
    frame and NOOP (index 0), so dreams can also start from a fresh reset."""

    def __init__(
        self,
        episodes: list[Episode],
        seed: int = 0,
        end_on_life_loss: bool = True,
        weights: list[np.ndarray] | None = None,
    ) -> None:
        """weights: optional per-transition sampling weights, one array of len(episode) per
        episode; a window ending with transition t is drawn in proportion to weights[i][t]
        (default: uniform over transitions). Weights that depend only on what the model is given
        (context frames, actions) focus training on rare situations without changing what the
        model should predict there."""
        if not episodes:
            raise ValueError("no episodes to sample from")
        self.episodes = episodes
        self.end_on_life_loss = end_on_life_loss
        if weights is None:
            self.cdf = None
            totals = np.array([len(e) for e in episodes], dtype=np.float64)
        else:
            if len(weights) != len(episodes) or any(len(w) != len(e) for w, e in zip(weights, episodes)):
                raise ValueError("weights must hold one value per transition of every episode")
            if any((w < 0).any() or not np.isfinite(w).all() for w in weights):
                raise ValueError("sampling weights must be finite and >= 0")
            self.cdf = [np.cumsum(w, dtype=np.float64) for w in weights]
            totals = np.array([c[-1] for c in self.cdf])
            if totals.sum() <= 0:
                raise ValueError("sampling weights are all zero")
        self.p = totals / totals.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int, length: int, device: torch.device | str = "cpu") -> Batch:
        """Windows of `length` transitions: obs has length+1 frames, actions/rewards/ends length."""
        obs = np.empty((batch_size, length + 1, 64, 64, 3), dtype=np.uint8)
        act = np.zeros((batch_size, length), dtype=np.int64)
        rew = np.zeros((batch_size, length), dtype=np.float32)
        end = np.zeros((batch_size, length), dtype=bool)
        wts = np.ones(batch_size, dtype=np.float32)
        for b, i in enumerate(self.rng.choice(len(self.episodes), size=batch_size, p=self.p)):
            ep = self.episodes[i]
            T = len(ep)
            # Last transition of the window: uniform over the episode's T transitions, or by weight.
            if self.cdf is None:
                last = int(self.rng.integers(T))
            else:
                c = self.cdf[i]
                last = min(int(np.searchsorted(c, self.rng.random() * c[-1], side="right")), T - 1)
                wts[b] = c[last] - (c[last - 1] if last else 0.0)
            first = last - length + 1
            idx = np.arange(first, last + 1)
            valid = idx >= 0
            src = np.clip(idx, 0, None)
            obs[b, :-1] = ep.obs[src]
            obs[b, -1] = ep.obs[last + 1]
            act[b] = np.where(valid, ep.actions[src], 0)
            rew[b] = np.where(valid, ep.rewards[src], 0)
            e = ep.terminated[src] | (ep.life_lost[src] if self.end_on_life_loss else False)
            end[b] = np.where(valid, e, False)
        to = lambda x: torch.from_numpy(x).to(device)  # noqa: E731
        frames = to(obs).permute(0, 1, 4, 2, 3).float() / 127.5 - 1  # (B, T+1, H, W, C) -> (B, T+1, C, H, W)
        return Batch(frames, to(act), to(rew), to(end), None if self.cdf is None else to(wts))


# Breakout: after the ball leaves the field the game pauses (8 agent steps) before the life counter
# drops; FIRE in that pause is ignored, FIRE after it serves.
LIFE_LOSS_PAUSE = {"Breakout": 10}


def field_weights(
    ep: Episode, game: str, fire: int, empty_field: float = 1.0, serve: float = 1.0, pause_fire: float = 1.0
) -> np.ndarray:
    """Per-transition sampling weights for training (see `WindowSampler`): a transition taken
    from a frame with no ball in the open field (the game waits for a serve, or the ball is up
    among the bricks) weighs `empty_field`; FIRE from such a frame weighs `empty_field * serve`;
    all others 1. These depend only on the frame and the action the model is given, so they change
    how often a situation is trained, not what the model should predict in it.

    `pause_fire` multiplies FIRE from an empty field in the pause before a lost life is counted
    (the next `LIFE_LOSS_PAUSE` steps hold a life loss). The game ignores FIRE there, and the last
    4 frames of the pause look exactly like a game waiting for its serve, so these transitions
    teach a 4-frame model that FIRE on a waiting field may do nothing. Weighting them down
    chooses the prior over that hidden state (players serve from waits far more often than they
    press FIRE in the pause): the dream serves when FIRE comes on a still, empty field."""
    rows, cols = BALL_FIELD[game]
    empty = ~(ep.obs[:-1, rows, cols].max(-1) > BALL_BRIGHTNESS).any((1, 2))
    w = np.ones(len(ep), dtype=np.float64)
    w[empty] *= empty_field
    fire_empty = empty & (ep.actions == fire)
    w[fire_empty] *= serve
    if pause_fire != 1.0:
        lost = np.concatenate([[0], np.cumsum(ep.life_lost.astype(np.int64))])
        t = np.arange(len(ep))
        in_pause = lost[np.minimum(t + LIFE_LOSS_PAUSE[game] + 1, len(ep))] > lost[t]
        w[fire_empty & in_pause] *= pause_fire
    return w


def paddle_weights(ep: Episode, game: str, weight: float, rows: int = PADDLE_ROWS) -> np.ndarray:
    """Per-transition sampling weights (see `WindowSampler`): `weight` for a transition taken from a
    frame whose ball is at the paddle (lit pixels in the bottom `rows` + 1 rows of the open field), or
    has just dipped below the field into the paddle's rows (no ball, and the frame before had one
    there); 1 for all others. The ball is at the paddle in about 9 % of the frames and bounces
    in under 1 % (Breakout's stored play: 0.66 % of transitions), and the dream loses the ball there
    more than anywhere (docs/playability.md, paddle bounce). Like `field_weights` it depends only
    on the context frames, so it changes how often the contact is trained, not what the model
    should predict in it."""
    field_rows, cols = BALL_FIELD[game]
    lit = ep.obs[:-1, field_rows, cols].max(-1) > BALL_BRIGHTNESS  # (T, rows, cols): frame t of transition t
    at_paddle = lit[:, -(rows + 1) :].any((1, 2))
    no_ball = ~lit.any((1, 2))
    dipped = np.zeros_like(at_paddle)
    dipped[1:] = no_ball[1:] & at_paddle[:-1]
    w = np.ones(len(ep), dtype=np.float64)
    w[at_paddle | dipped] *= weight
    return w


def reward_weights(ep: Episode, weight: float, after: int = 1) -> np.ndarray:
    """Per-transition sampling weights (see `WindowSampler`), any game: `weight` for a transition
    with a nonzero reward and for the `after` transitions that follow it, 1 for all others. A point
    is a fraction of a percent to a few percent of the stored transitions (Pong: 1.6 %), and the
    frame that shows it (the score digits change, the ball gone) is what a dream most often leaves
    out; some games draw the new score a step after the reward (Pong, for the computer's points),
    hence `after`. Unlike the context-only weights above this chooses the target frame too, so it
    is a prior over how often points are trained, like --life-loss-weight; the reward/end model
    keeps drawing its windows uniformly (training/train.py)."""
    hit = ep.rewards != 0
    mark = hit.copy()
    for k in range(1, after + 1):
        mark[k:] |= hit[:-k]
    w = np.ones(len(ep), dtype=np.float64)
    w[mark] = weight
    return w
