"""Actor-critic trained in imagination (DIAMOND §3.3, docs/design.md §2): network, lambda-returns, losses.

The agent sees one frame at a time through a conv encoder and carries the past in an LSTM
(paper: LSTM 512). Its LSTM is burnt in on the real context frames a dream starts from, then it
acts for `horizon` dreamed steps. Losses (DIAMOND eq. 9-10, after Dreamer's lambda-returns):

    R_t = r_t + gamma (1 - d_t) ((1 - lambda) V(x_{t+1}) + lambda R_{t+1}),   R_H = V(x_H)
    L_V  = E[(V(x_t) - sg(R_t))^2]
    L_pi = -E[log pi(a_t | x_<=t) sg(R_t - V(x_t))] - eta H(pi(. | x_<=t)),   eta = 0.001

A batch of dreams may be used for several passes (`passes` > 1; a dream costs ~25x an update on a
2-core CPU): targets R_t, advantages and log pi_old are then fixed from the dream and
the policy term becomes PPO's clipped surrogate -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)],
rho = pi / pi_old. On the first pass rho = 1 and its gradient is exactly DIAMOND's.

`AgentPolicy` is the thing to play with: reset(), act(frames) -> (action, probs, value).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model import checkpoint
from model.frames import FRAME_DIFF_GAIN
from model.world_model import frames_to_tensor

Hidden = tuple[torch.Tensor, ...]
"""The recurrent state: LSTM (h, c), plus the last frame seen when the agent reads frame differences."""

AGENT_PRESETS = ("cpu", "paper", "tiny")


@dataclass
class ActorCriticConfig:
    """Shape of the actor-critic. The default fits a 2-core CPU; preset 'paper' is DIAMOND's."""

    num_actions: int = 4
    """Size of the game's minimal action set."""
    channels: tuple[int, ...] = (16, 16, 32, 32)
    """Conv encoder channels; each stage halves the resolution (64 -> 4). Paper: 32, 32, 64, 64."""
    lstm_dim: int = 256
    """LSTM hidden size. Paper: 512."""
    action_meanings: list[str] = field(default_factory=lambda: ["NOOP", "FIRE", "RIGHT", "LEFT"])
    """Names of the actions, in the game's minimal-set order (for the browser and checks)."""
    game: str = "Breakout"
    preset: str = "custom"
    frame_diff: bool = False
    """Also read the difference to the previous frame (x FRAME_DIFF_GAIN): the one-pixel ball stands
    out in it (the DBC Breakout policies needed it to see the ball at all, docs/dbc.md). Off in
    snapshots from before it existed."""

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {self.num_actions}")
        if not self.channels or any(c < 1 for c in self.channels) or len(self.channels) > 6:
            raise ValueError(f"channels must be 1..6 positive ints, got {self.channels}")
        if self.lstm_dim < 1:
            raise ValueError(f"lstm_dim must be >= 1, got {self.lstm_dim}")
        if len(self.action_meanings) != self.num_actions:
            raise ValueError(f"{len(self.action_meanings)} action meanings for {self.num_actions} actions")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agent_preset(preset: str, game: str, action_meanings: list[str]) -> ActorCriticConfig:
    """'cpu' (default), 'paper' (DIAMOND: channels 32-32-64-64, LSTM 512) or 'tiny' (tests)."""
    n, names = len(action_meanings), list(action_meanings)
    if preset == "cpu":
        return ActorCriticConfig(n, (16, 16, 32, 32), 256, names, game, preset)
    if preset == "paper":
        return ActorCriticConfig(n, (32, 32, 64, 64), 512, names, game, preset)
    if preset == "tiny":
        return ActorCriticConfig(n, (4, 4, 8, 8), 32, names, game, preset)
    raise ValueError(f"unknown agent preset {preset!r}: expected one of {', '.join(AGENT_PRESETS)}")


@dataclass
class ActorCriticLossConfig:
    """DIAMOND's imagination settings (Atari 100k)."""

    horizon: int = 15
    """H: dreamed steps per imagined rollout."""
    gamma: float = 0.985
    """Discount."""
    lam: float = 0.95
    """lambda of the lambda-returns."""
    entropy_weight: float = 0.001
    """eta: weight of the entropy bonus."""
    clip: float = 0.2
    """eps of the clipped ratio when a batch of dreams is used for more than one pass."""

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if not 0 < self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= lambda <= 1, got {self.gamma}, {self.lam}")
        if self.entropy_weight < 0:
            raise ValueError(f"entropy_weight must be >= 0, got {self.entropy_weight}")
        if not 0 < self.clip < 1:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")


class ActorCritic(nn.Module):
    """Conv encoder -> LSTM -> (policy logits, value), one frame per step."""

    def __init__(self, cfg: ActorCriticConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_prev = 6 if cfg.frame_diff else 3
        for c in cfg.channels:
            layers += [nn.Conv2d(c_prev, c, 3, padding=1), nn.GroupNorm(1, c), nn.SiLU(), nn.MaxPool2d(2)]
            c_prev = c
        self.encoder = nn.Sequential(*layers)
        feat = c_prev * (64 // 2 ** len(cfg.channels)) ** 2
        self.lstm = nn.LSTMCell(feat, cfg.lstm_dim)
        self.actor = nn.Linear(cfg.lstm_dim, cfg.num_actions)
        self.critic = nn.Linear(cfg.lstm_dim, 1)
        nn.init.zeros_(self.actor.weight)  # start from the uniform policy
        nn.init.zeros_(self.actor.bias)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def initial_state(self, batch_size: int) -> Hidden:
        z = torch.zeros(batch_size, self.cfg.lstm_dim, device=self.device)
        return z, z.clone()

    def forward(self, obs: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, torch.Tensor, Hidden]:
        """obs: (B, C, H, W) in [-1, 1] -> logits (B, A), value (B,), new recurrent state."""
        if hidden is None:
            hidden = self.initial_state(obs.shape[0])
        x = obs
        if self.cfg.frame_diff:  # the first frame after a reset has no predecessor: difference 0
            prev = hidden[2] if len(hidden) > 2 else obs
            x = torch.cat([obs, FRAME_DIFF_GAIN * (obs - prev)], 1)
        h, c = self.lstm(self.encoder(x).flatten(1), hidden[:2])  # encoder: (B, C', 4, 4) -> (B, feat)
        state = (h, c, obs) if self.cfg.frame_diff else (h, c)
        return self.actor(h), self.critic(h).squeeze(-1), state

    def burn_in(self, obs: torch.Tensor, hidden: Hidden | None = None) -> Hidden:
        """Run the LSTM over context frames obs (B, T, C, H, W) without gradients; returns its state."""
        with torch.no_grad():
            for t in range(obs.shape[1]):
                _, _, hidden = self(obs[:, t], hidden)
        return hidden if hidden is not None else self.initial_state(obs.shape[0])

    # -- snapshots -----------------------------------------------------------------------
    def save_snapshot(self, path: str | Path, extra_meta: dict[str, Any] | None = None) -> None:
        """Inference snapshot: safetensors weights + JSON config (loads without pickle)."""
        meta = {"kind": "agent", "config": self.cfg.to_dict(), **(extra_meta or {})}
        checkpoint.save(path, {"model": self.state_dict()}, meta)

    @classmethod
    def from_snapshot(cls, path: str | Path, device: torch.device | None = None) -> ActorCritic:
        tree, meta, cfg = checkpoint.load_snapshot(path, "agent", "an agent", ActorCriticConfig)
        model = cls(cfg)
        checkpoint.load_state_dict_strict(model, tree["model"], str(path))
        model.meta = meta
        return model.to(device or torch.device("cpu")).eval()


def lambda_returns(
    rewards: torch.Tensor, ends: torch.Tensor, values: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """Lambda-returns over a rollout (DIAMOND eq. 9; Dreamer).

    rewards, ends: (B, H) for the transitions x_t -> x_{t+1}; values: (B, H+1) = V(x_0..x_H).
    R_H = V(x_H); R_t = r_t + gamma (1 - d_t) ((1 - lambda) V(x_{t+1}) + lambda R_{t+1}).
    """
    if rewards.shape != ends.shape or values.shape != (rewards.shape[0], rewards.shape[1] + 1):
        raise ValueError(
            f"shapes: rewards {tuple(rewards.shape)}, ends {tuple(ends.shape)}, values {tuple(values.shape)}"
        )
    not_end = 1 - ends.float()
    returns = torch.empty_like(rewards, dtype=values.dtype)
    nxt = values[:, -1]  # R_H = V(x_H)
    for t in reversed(range(rewards.shape[1])):
        nxt = rewards[:, t] + gamma * not_end[:, t] * ((1 - lam) * values[:, t + 1] + lam * nxt)
        returns[:, t] = nxt
    return returns


def alive_mask(ends: torch.Tensor) -> torch.Tensor:
    """(B, H) ends -> (B, H) 1 where step t still belongs to the dream (no end before t)."""
    e = ends.float()
    return torch.cumprod(torch.cat([torch.ones_like(e[:, :1]), 1 - e[:, :-1]], dim=1), dim=1)


@dataclass
class Targets:
    """What a dream fixes for every pass over it: sg(R_t), sg(R_t - V_old(x_t)), log pi_old(a_t)."""

    returns: torch.Tensor  # (B, H)
    advantage: torch.Tensor  # (B, H)
    log_prob: torch.Tensor  # (B, H)


def log_probs(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, H, A), actions (B, H) -> log pi(a_t), entropy H(pi(.)), both (B, H)."""
    log_pi = F.log_softmax(logits.float(), dim=-1)
    return log_pi.gather(-1, actions[..., None]).squeeze(-1), -(log_pi.exp() * log_pi).sum(-1)


def rollout_targets(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    ends: torch.Tensor,
    cfg: ActorCriticLossConfig,
) -> Targets:
    """The fixed targets of a dream, from the logits and values the agent had when it acted."""
    values = values.detach()
    returns = lambda_returns(rewards, ends, values, cfg.gamma, cfg.lam)
    return Targets(returns, returns - values[:, :-1], log_probs(logits.detach(), actions)[0])


def actor_critic_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    ends: torch.Tensor,
    cfg: ActorCriticLossConfig,
    targets: Targets | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """REINFORCE with a value baseline + value MSE - entropy bonus (DIAMOND eq. 10).

    logits: (B, H, A); values: (B, H+1) with gradients; actions, rewards, ends: (B, H).
    targets: fixed on the first pass over a dream (None: from these logits and values); later
    passes give them and the policy term is the clipped surrogate. Steps after a dream has ended
    are masked out.
    """
    if targets is None:
        targets = rollout_targets(logits, values, actions, rewards, ends, cfg)
    v = values[:, :-1]
    mask = alive_mask(ends)
    n = mask.sum().clamp(min=1)
    log_prob, entropy = log_probs(logits, actions)
    ratio = torch.exp(log_prob - targets.log_prob)  # 1 on the first pass, with the gradient of log pi
    adv = targets.advantage
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv)
    loss_policy = -(surrogate * mask).sum() / n
    loss_value = ((v - targets.returns) ** 2 * mask).sum() / n
    loss_entropy = -cfg.entropy_weight * (entropy * mask).sum() / n
    loss = loss_policy + loss_value + loss_entropy
    clipped = ((ratio - 1).abs() > cfg.clip).float()
    return loss, {
        "loss": loss.item(),
        "loss_policy": loss_policy.item(),
        "loss_value": loss_value.item(),
        "entropy": ((entropy * mask).sum() / n).item(),
        "return": ((targets.returns * mask).sum() / n).item(),
        "value": ((v.detach() * mask).sum() / n).item(),
        "reward_sum": (rewards * mask).sum(1).mean().item(),
        "end_rate": ends.float().amax(1).mean().item(),
        "clip_frac": ((clipped * mask).sum() / n).item(),
    }


class AgentPolicy:
    """A trained agent behind a play interface (for the browser and the real-game evaluation).

    reset() at the start of every episode; then act(frames) once per step, with either the last
    frame uint8 (64, 64, 3) or a 4-frame window uint8 (4, 64, 64, 3). On the first call after a
    reset a window burns the LSTM in on its first frames; after that only the last frame is new
    (the LSTM carries the past), so passing the sliding window every tick is correct.
    Returns (action index, action probabilities as a list, value estimate).
    """

    def __init__(self, model: ActorCritic, greedy: bool = False, epsilon: float = 0.0, seed: int | None = None) -> None:
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.model = model.eval()
        self.greedy = greedy
        self.epsilon = epsilon
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()  # non-deterministic, without touching the global RNG
        else:
            self.generator.manual_seed(seed)
        self.hidden: Hidden | None = None

    @classmethod
    def from_snapshot(cls, path: str | Path, greedy: bool = False, epsilon: float = 0.0, seed: int | None = None):
        return cls(ActorCritic.from_snapshot(path), greedy, epsilon, seed)

    @property
    def action_meanings(self) -> list[str]:
        return list(self.model.cfg.action_meanings)

    @property
    def game(self) -> str:
        return self.model.cfg.game

    def reset(self) -> None:
        self.hidden = None

    @torch.no_grad()
    def act(self, frames: Any) -> tuple[int, list[float], float]:
        x = torch.as_tensor(frames)
        if x.dtype != torch.uint8 or x.ndim not in (3, 4) or tuple(x.shape[-3:]) != (64, 64, 3):
            raise ValueError(f"frames must be uint8 (64, 64, 3) or (T, 64, 64, 3), got {tuple(x.shape)} {x.dtype}")
        x = frames_to_tensor(x.to(self.model.device))
        if x.ndim == 4:
            if self.hidden is None and x.shape[0] > 1:
                self.hidden = self.model.burn_in(x[None, :-1])
            x = x[-1]
        logits, value, self.hidden = self.model(x[None], self.hidden)
        probs = logits.float().softmax(-1)[0].cpu()
        if torch.rand((), generator=self.generator) < self.epsilon:
            action = int(torch.randint(len(probs), (), generator=self.generator))
        elif self.greedy:
            action = int(probs.argmax())
        else:
            action = int(torch.multinomial(probs, 1, generator=self.generator))
        return action, probs.tolist(), float(value)
