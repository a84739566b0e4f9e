"""Diffusion Policy baseline (Chi et al., RSS 2023), state-based, one action per step.

A conditional DDPM over actions: an MLP eps_theta(a_n, n, s) learns the noise added to the
expert's action a_0 at step n, given the state s (DDPM simple loss, eq. 14, conditioned on s).
To act, the reverse chain runs from a_N ~ N(0, I) down to a_0 (DDPM Algorithm 2) with the
predicted a_0 clipped to [-1, 1] at every step (Diffusion Policy's `clip_sample`) and the posterior
variance beta~_n (DDPM eq. 7, "fixed small"). Squared-cosine noise schedule (Nichol & Dhariwal
2021, eq. 17) with 100 steps, as in Chi et al.; their network is a temporal U-Net over action
sequences, ours an MLP over a single action (the DBC paper's baseline setting: one state in, one
action out).

Actions live in [-1, 1]^A (Maze forces, Fetch displacements and fingers), so a_0 is the raw action;
states are z-scored. The DBC paper's Maze / FetchPick figures for this baseline are in docs/dbc.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from model import checkpoint
from model.dbc.core import Normaliser, check_task, mlp, timestep_embedding

KIND = "dbc_diffusion_policy"


@dataclass
class DiffusionPolicyConfig:
    obs_dim: int = 6
    """State size."""
    action_dim: int = 2
    """Action dimensions (continuous, in [-1, 1])."""
    hidden: int = 256
    """Width of the noise predictor's MLP."""
    layers: int = 3
    """Hidden layers of the noise predictor."""
    time_dim: int = 64
    """Sinusoidal embedding size of the diffusion step n."""
    num_steps: int = 100
    """DDPM steps N for training and sampling (Chi et al.: 100)."""
    cosine_s: float = 0.008
    """Offset s of the squared-cosine schedule (Nichol & Dhariwal)."""

    discrete: ClassVar[bool] = False
    """Read by model.dbc.core.act: the actions are continuous."""

    def __post_init__(self) -> None:
        if self.obs_dim < 1 or self.action_dim < 1:
            raise ValueError(f"obs_dim and action_dim must be >= 1, got {self.obs_dim}, {self.action_dim}")
        if self.hidden < 1 or self.layers < 1 or self.time_dim < 2 or self.time_dim % 2:
            raise ValueError("hidden and layers must be >= 1 and time_dim an even number >= 2")
        if self.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {self.num_steps}")
        if not 0 < self.cosine_s < 1:
            raise ValueError(f"cosine_s must be in (0, 1), got {self.cosine_s}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cosine_beta_schedule(num_steps: int, s: float = 0.008) -> torch.Tensor:
    """beta_n = 1 - abar(n+1) / abar(n), abar(t) = cos^2((t/N + s) / (1 + s) * pi/2), capped at 0.999 (IDDPM eq. 17)."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    abar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


class DiffusionPolicy(nn.Module):
    """eps_theta(a_n, n, s) and its reverse chain; `forward(obs)` samples actions (B, A)."""

    def __init__(self, cfg: DiffusionPolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        betas = cosine_beta_schedule(cfg.num_steps, cfg.cosine_s)
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)  # abar_n = prod_{i<=n} alpha_i
        abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        buffers = {
            "sqrt_abar": abar.sqrt(),  # DDPM eq. 4
            "sqrt_1m_abar": (1 - abar).sqrt(),
            "coef_x0": abar_prev.sqrt() * betas / (1 - abar),  # posterior mean, DDPM eq. 7
            "coef_xn": alphas.sqrt() * (1 - abar_prev) / (1 - abar),
            "sigma": (betas * (1 - abar_prev) / (1 - abar)).sqrt(),  # beta~_n^(1/2), DDPM eq. 7
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float(), persistent=False)
        self.obs_norm = Normaliser(cfg.obs_dim)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, cfg.time_dim * 2), nn.Mish())
        self.net = mlp(cfg.action_dim + cfg.obs_dim + cfg.time_dim * 2, cfg.hidden, cfg.layers, cfg.action_dim)

    def eps(self, a_noisy: torch.Tensor, n: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """eps_theta(a_n, n, s): (B, A), (B,), (B, S) -> (B, A)."""
        temb = self.time_mlp(timestep_embedding(n, self.cfg.time_dim))
        return self.net(torch.cat([a_noisy, self.obs_norm(obs.float()), temb], dim=-1))

    def loss(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample ||eps_theta(a_n, n, s) - eps||^2 averaged over action dims (DDPM eq. 14): (B,)."""
        B = action.shape[0]
        n = torch.randint(0, self.cfg.num_steps, (B,), device=action.device, generator=generator)
        eps = torch.randn(action.shape, device=action.device, generator=generator)
        a_noisy = self.sqrt_abar[n][:, None] * action + self.sqrt_1m_abar[n][:, None] * eps  # DDPM eq. 4
        return (self.eps(a_noisy, n, obs) - eps).pow(2).mean(-1)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Reverse chain (DDPM Algorithm 2) -> actions (B, A) in [-1, 1].

        noise: (B, N, A) standard normals, [:, 0] the start a_N and [:, k] the noise added on the
        k-th reverse step; pass one row per episode from its own generator and an episode's actions
        do not depend on which other episodes share the batch. Drawn here if None.
        """
        B, N, A = obs.shape[0], self.cfg.num_steps, self.cfg.action_dim
        if noise is None:
            noise = torch.randn(B, N, A, device=obs.device)
        a = noise[:, 0]
        for k, n in enumerate(range(N - 1, -1, -1)):
            steps = torch.full((B,), n, device=obs.device, dtype=torch.long)
            eps = self.eps(a, steps, obs)
            a0 = ((a - self.sqrt_1m_abar[n] * eps) / self.sqrt_abar[n]).clamp(-1, 1)  # predicted a_0, clipped
            a = self.coef_x0[n] * a0 + self.coef_xn[n] * a  # posterior mean mu~_n (DDPM eq. 7)
            if n > 0:
                a = a + self.sigma[n] * noise[:, k + 1]
        return a

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.sample(obs)


def save_diffusion_policy(path: str | Path, policy: DiffusionPolicy, meta: dict[str, Any]) -> None:
    """Inference snapshot: weights + config + meta (task, algo, seed, ...), safetensors + JSON."""
    checkpoint.save(path, {"model": policy.state_dict()}, {"kind": KIND, "config": policy.cfg.to_dict(), **meta})


def load_diffusion_policy(path: str | Path, task: str | None = None) -> tuple[DiffusionPolicy, dict[str, Any]]:
    """Load a snapshot; with `task`, refuse one trained for another task (CheckpointError)."""
    tree, meta, cfg = checkpoint.load_snapshot(path, KIND, "a diffusion policy", DiffusionPolicyConfig)
    check_task(path, meta, task)
    policy = DiffusionPolicy(cfg)
    checkpoint.load_state_dict_strict(policy, tree["model"], str(path))
    return policy.eval(), meta
