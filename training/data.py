"""Batches of training windows drawn from stored episodes (held in memory as uint8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.episode_store import Episode


@dataclass
class Batch:
    obs: torch.Tensor  # (B, T+L, C, H, W) float in [-1, 1]
    actions: torch.Tensor  # (B, T+L) long; actions[:, i] taken at obs[:, i]
    rewards: torch.Tensor  # (B, T+L)
    ends: torch.Tensor  # (B, T+L) bool: game over or life lost after this step


class WindowSampler:
    """Samples windows of `length` transitions, padding before an episode's start with its first
    frame and NOOP (index 0), so dreams can also start from a fresh reset."""

    def __init__(self, episodes: list[Episode], seed: int = 0, end_on_life_loss: bool = True) -> None:
        if not episodes:
            raise ValueError("no episodes to sample from")
        self.episodes = episodes
        self.end_on_life_loss = end_on_life_loss
        lengths = np.array([len(e) for e in episodes], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int, length: int, device: torch.device | str = "cpu") -> Batch:
        """Windows of `length` transitions: obs has length+1 frames, actions/rewards/ends length."""
        obs = np.empty((batch_size, length + 1, 64, 64, 3), dtype=np.uint8)
        act = np.zeros((batch_size, length), dtype=np.int64)
        rew = np.zeros((batch_size, length), dtype=np.float32)
        end = np.zeros((batch_size, length), dtype=bool)
        for b, i in enumerate(self.rng.choice(len(self.episodes), size=batch_size, p=self.p)):
            ep = self.episodes[i]
            T = len(ep)
            # Last transition of the window: uniform over the episode's T transitions.
            last = int(self.rng.integers(T))
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
        return Batch(frames, to(act), to(rew), to(end))
