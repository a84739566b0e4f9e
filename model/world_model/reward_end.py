"""Reward / termination model: (frame_t, frame_t+1, action_t) -> reward sign, end (docs/design.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RewardEndConfig:
    num_actions: int = 4
    channels: tuple[int, ...] = (16, 32, 32, 32)
    """Conv encoder channels; each stage halves the resolution (64 -> 4)."""
    lstm_dim: int = 256
    action_dim: int = 32
    blank: tuple[int, int, int, int] = (0, 0, 0, 0)
    """A box of every frame the model does not see (set to black): rows [top, bottom), columns
    [left, right) of the 64x64 frame. Breakout's lives counter is (0, 5, 36, 50): with it blanked a
    lost life is read from the ball leaving the field, which a dream can draw even where it cannot
    draw the counter (a 4-frame model cannot time the 9-step pause before the drop; the LSTM can),
    while points are still read from the score."""

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        self.blank = tuple(int(v) for v in self.blank)
        if self.num_actions < 1 or self.lstm_dim < 1 or not self.channels:
            raise ValueError("num_actions, lstm_dim and channels must be positive / non-empty")
        t, b, left, right = self.blank if len(self.blank) == 4 else (0, -1, 0, 0)
        if not (0 <= t <= b <= 64 and 0 <= left <= right <= 64):
            raise ValueError(f"blank must be (top, bottom, left, right) within the 64x64 frame, got {self.blank}")


REWARD_CLASSES = 3  # sign of the clipped reward: -1, 0, +1 -> 0, 1, 2
END_CLASSES = 2


def reward_to_class(reward: torch.Tensor) -> torch.Tensor:
    return (torch.sign(reward) + 1).long()


def class_to_reward(cls: torch.Tensor) -> torch.Tensor:
    return cls.float() - 1


class RewardEndModel(nn.Module):
    def __init__(self, cfg: RewardEndConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_prev = 6  # frame_t and frame_t+1, RGB each
        for c in cfg.channels:
            layers += [nn.Conv2d(c_prev, c, 3, stride=2, padding=1), nn.GroupNorm(max(1, c // 8), c), nn.SiLU()]
            c_prev = c
        self.encoder = nn.Sequential(*layers)
        feat = c_prev * (64 // 2 ** len(cfg.channels)) ** 2
        self.act_emb = nn.Embedding(cfg.num_actions, cfg.action_dim)
        self.proj = nn.Linear(feat + cfg.action_dim, cfg.lstm_dim)
        self.lstm = nn.LSTM(cfg.lstm_dim, cfg.lstm_dim, batch_first=True)
        self.head_reward = nn.Linear(cfg.lstm_dim, REWARD_CLASSES)
        self.head_end = nn.Linear(cfg.lstm_dim, END_CLASSES)

    def forward(
        self,
        obs: torch.Tensor,
        next_obs: torch.Tensor,
        act: torch.Tensor,
        hidden: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """obs, next_obs: (B, T, C, H, W) in [-1, 1]; act: (B, T) -> logits (B, T, 3), (B, T, 2)."""
        b, t = act.shape
        # (B, T, C, H, W) x 2 -> (B*T, 2C, H, W)
        x = torch.cat([obs, next_obs], dim=2).flatten(0, 1)
        top, bottom, left, right = self.cfg.blank
        if bottom > top and right > left:
            keep = torch.ones_like(x[:1, :1])
            keep[..., top:bottom, left:right] = 0
            x = x * keep + (keep - 1)  # -1 (black) inside the box
        h = self.encoder(x).flatten(1)  # (B*T, feat)
        h = torch.cat([h.float(), self.act_emb(act).flatten(0, 1).float()], dim=1)
        h = F.silu(self.proj(h)).view(b, t, -1)
        h, hidden = self.lstm(h, hidden)
        return self.head_reward(h), self.head_end(h), hidden

    def loss(
        self, obs: torch.Tensor, next_obs: torch.Tensor, act: torch.Tensor, reward: torch.Tensor, end: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy on reward sign and end, over (B, T) sequences."""
        logits_r, logits_e, _ = self(obs, next_obs, act)
        target_r, target_e = reward_to_class(reward), end.long()
        loss_r = F.cross_entropy(logits_r.flatten(0, 1).float(), target_r.flatten())
        loss_e = F.cross_entropy(logits_e.flatten(0, 1).float(), target_e.flatten())
        with torch.no_grad():
            acc_r = (logits_r.argmax(-1) == target_r).float().mean().item()
            acc_e = (logits_e.argmax(-1) == target_e).float().mean().item()
        return loss_r + loss_e, {
            "loss_reward": loss_r.item(),
            "loss_end": loss_e.item(),
            "acc_reward": acc_r,
            "acc_end": acc_e,
        }
