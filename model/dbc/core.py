"""DBC: diffusion model-augmented behavioural cloning (arXiv 2302.13335; docs/design.md §5).

Three pieces, all maths, no environments:

- `JointDiffusion` — a DDPM noise predictor phi over the joint vector x = [s, a] (1,000 steps,
  sigmoid beta schedule 1e-4..0.02, MLP). States are z-scored; continuous actions are z-scored,
  discrete actions enter as a centred one-hot (2 * one_hot - 1).
- `dbc_loss_continuous` — `L = L_BC + lambda * max(L_agent - L_expert, 0)` with the same noise
  eps and step n for the agent's and the expert's pair (paper eq. 5-7).
- `dbc_loss_discrete` — the discrete extension (docs/design.md §5.4): phi's loss l_k for every
  action k with shared (n, eps), `L_DM = mean relu(sum_k pi_k l_k - l_E)`. Every input phi sees
  is a real one-hot, so it stays on the data manifold, and the gradient in pi is exact.

Plain BC is the same code with lambda = 0 (then phi is never evaluated).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model import checkpoint
from model.frames import FRAME_DIFF_GAIN


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------
@dataclass
class DiffusionConfig:
    state_dim: int = 6
    """Dimension of the (embedded) state s."""
    action_dim: int = 2
    """Continuous: action dimensions. Discrete: number of actions K (phi sees a one-hot)."""
    discrete: bool = False
    hidden: int = 256
    """Width of the noise predictor's MLP."""
    layers: int = 4
    """Hidden layers of the noise predictor."""
    time_dim: int = 64
    """Sinusoidal embedding size of the diffusion step n."""
    num_steps: int = 1000
    """DDPM steps N (paper: 1,000)."""
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if self.state_dim < 1 or self.action_dim < 1:
            raise ValueError(f"state_dim and action_dim must be >= 1, got {self.state_dim}, {self.action_dim}")
        if self.discrete and self.action_dim < 2:
            raise ValueError(f"a discrete action space needs >= 2 actions, got {self.action_dim}")
        if self.hidden < 1 or self.layers < 1 or self.time_dim < 2 or self.time_dim % 2:
            raise ValueError("hidden and layers must be >= 1 and time_dim an even number >= 2")
        if self.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {self.num_steps}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PolicyConfig:
    obs_dim: int = 6
    """Low-dim tasks: state size. Pixel tasks: ignored (frames are `frames` x 64 x 64 x 3)."""
    action_dim: int = 2
    """Continuous: action dimensions. Discrete: number of actions."""
    discrete: bool = False
    pixels: bool = False
    """True: a small conv net over a stack of RGB frames (Atari)."""
    frames: int = 4
    """Frames stacked as the pixel policy's input."""
    hidden: int = 256
    layers: int = 3
    embed_dim: int = 32
    """Pixel policies: size of the bottleneck features (the state embedding phi diffuses over)."""
    channels: list[int] = field(default_factory=lambda: [16, 32])
    """Pixel policies: channels of the two conv layers (8x8 stride 4, 4x4 stride 2)."""
    frame_diff: bool = False
    """Pixel policies: also feed the differences of consecutive frames. Breakout's ball is about one
    pixel at 64x64; in the difference it is what stands out (docs/dbc.md: without it a BC net stays
    at the action prior for thousands of steps)."""

    def __post_init__(self) -> None:
        if self.action_dim < 1 or (self.discrete and self.action_dim < 2):
            raise ValueError(f"bad action_dim {self.action_dim} (discrete={self.discrete})")
        if self.pixels and not self.discrete:
            raise ValueError("pixel policies are implemented for discrete actions only")
        if not self.pixels and self.obs_dim < 1:
            raise ValueError(f"obs_dim must be >= 1, got {self.obs_dim}")
        if self.hidden < 1 or self.layers < 1 or self.frames < 1 or self.embed_dim < 1:
            raise ValueError("hidden, layers, frames and embed_dim must be >= 1")
        self.channels = list(self.channels)
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"channels must be two positive ints, got {self.channels}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# DDPM over [s, a]
# ---------------------------------------------------------------------------------------------
def sigmoid_beta_schedule(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """beta_n = beta_start + (beta_end - beta_start) * sigmoid(linspace(-6, 6, N)) (DBC code)."""
    return torch.sigmoid(torch.linspace(-6, 6, num_steps, dtype=torch.float64)) * (beta_end - beta_start) + beta_start


def timestep_embedding(n: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps n: (B,) -> (B, dim) (DDPM / Transformer)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=n.device, dtype=torch.float32) / half)
    args = n.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class Normaliser(nn.Module):
    """z-score with stored mean/std (std floored so constant features do not blow up)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> Normaliser:
        self.mean.copy_(x.float().mean(0))
        self.std.copy_(x.float().std(0).clamp_min(1e-3))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean


def mlp(inp: int, hidden: int, layers: int, out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = inp
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.Mish()]
        d = hidden
    mods.append(nn.Linear(d, out))
    return nn.Sequential(*mods)


class JointDiffusion(nn.Module):
    """phi(x_n, n) -> eps for x = [s_norm, a_enc], x_n = sqrt(abar_n) x + sqrt(1 - abar_n) eps."""

    def __init__(self, cfg: DiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        betas = sigmoid_beta_schedule(cfg.num_steps, cfg.beta_start, cfg.beta_end)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)  # abar_n = prod_{i<=n} (1 - beta_i)
        self.register_buffer("sqrt_abar", alphas_cumprod.sqrt().float(), persistent=False)  # DDPM eq. 4
        self.register_buffer("sqrt_1m_abar", (1.0 - alphas_cumprod).sqrt().float(), persistent=False)
        self.state_norm = Normaliser(cfg.state_dim)
        self.action_norm = Normaliser(cfg.action_dim)  # identity for discrete actions
        self.x_dim = cfg.state_dim + cfg.action_dim
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, cfg.time_dim * 2), nn.Mish())
        self.net = mlp(self.x_dim + cfg.time_dim * 2, cfg.hidden, cfg.layers, self.x_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.sqrt_abar.dtype

    # -- encoding ------------------------------------------------------------------------------
    def encode_action(self, a: torch.Tensor) -> torch.Tensor:
        """Continuous (B, A) -> z-scored; discrete indices (B,) -> centred one-hot (B, K)."""
        if self.cfg.discrete:
            return F.one_hot(a.long(), self.cfg.action_dim).to(self.dtype) * 2 - 1
        return self.action_norm(a.to(self.dtype))

    def encode_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """A distribution over actions (B, K) as the expected centred one-hot."""
        return probs * 2 - 1

    def joint(self, s: torch.Tensor, a_enc: torch.Tensor) -> torch.Tensor:
        """x_0 = [s_norm, a_enc]: (B, S) + (B, A) -> (B, S + A)."""
        return torch.cat([self.state_norm(s.to(self.dtype)), a_enc], dim=-1)

    # -- DDPM ----------------------------------------------------------------------------------
    def forward(self, x_noisy: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(n, self.cfg.time_dim).to(self.dtype))
        return self.net(torch.cat([x_noisy, temb], dim=-1))

    def q_sample(self, x0: torch.Tensor, n: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_n = sqrt(abar_n) x_0 + sqrt(1 - abar_n) eps (DDPM eq. 4)."""
        return self.sqrt_abar[n][:, None] * x0 + self.sqrt_1m_abar[n][:, None] * eps

    def sample_noise(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw (n, eps): n ~ U{0..N-1}, eps ~ N(0, I) of shape (B, S + A)."""
        n = torch.randint(0, self.cfg.num_steps, (batch,), device=device, generator=generator)
        eps = torch.randn(batch, self.x_dim, device=device, generator=generator, dtype=self.dtype)
        return n, eps

    def eps_loss(self, x0: torch.Tensor, n: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Per-sample ||phi(x_n, n) - eps||^2, averaged over dimensions: (B,)."""
        return (self(self.q_sample(x0, n, eps), n) - eps).pow(2).mean(-1)

    def pretrain_loss(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """DDPM simple loss E_{n, eps} ||phi(x_n, n) - eps||^2 on expert pairs (DDPM eq. 14)."""
        x0 = self.joint(s, self.encode_action(a))
        n, eps = self.sample_noise(x0.shape[0], x0.device)
        return self.eps_loss(x0, n, eps).mean()

    def action_losses(self, s: torch.Tensor, n: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Discrete: l_k = ||phi([s, onehot(k)]_n, n) - eps||^2 for every action k, shared (n, eps): (B, K)."""
        B, K = s.shape[0], self.cfg.action_dim
        s_rep = s.repeat_interleave(K, dim=0)  # (B, S) -> (B*K, S), rows b*K + k
        a_rep = torch.arange(K, device=s.device).repeat(B)  # (B*K,)
        x0 = self.joint(s_rep, self.encode_action(a_rep))
        return self.eps_loss(x0, n.repeat_interleave(K), eps.repeat_interleave(K, dim=0)).view(B, K)

    @torch.no_grad()
    def expert_likeness(
        self, s: torch.Tensor, a_agent: torch.Tensor, a_expert: torch.Tensor, draws: int = 64, seed: int = 0
    ) -> torch.Tensor:
        """Monte-Carlo E_{n, eps}[L_agent - L_expert] per state (B,): <= 0 means as expert-like as the expert."""
        g = torch.Generator(device=s.device).manual_seed(seed)
        B = s.shape[0]
        s_rep = s.repeat_interleave(draws, dim=0)  # (B, S) -> (B*draws, S)
        n, eps = self.sample_noise(B * draws, s.device, g)
        l_agent = self.eps_loss(self.joint(s_rep, self.encode_action(a_agent.repeat_interleave(draws, 0))), n, eps)
        l_expert = self.eps_loss(self.joint(s_rep, self.encode_action(a_expert.repeat_interleave(draws, 0))), n, eps)
        return (l_agent - l_expert).view(B, draws).mean(-1)

    @torch.no_grad()
    def discrete_losses(self, s: torch.Tensor, draws: int = 64, seed: int = 0) -> torch.Tensor:
        """Monte-Carlo E_{n, eps}[l_k] for every action: (B, K) (lower = more expert-like)."""
        g = torch.Generator(device=s.device).manual_seed(seed)
        B = s.shape[0]
        n, eps = self.sample_noise(B * draws, s.device, g)
        return self.action_losses(s.repeat_interleave(draws, dim=0), n, eps).view(B, draws, -1).mean(1)


# ---------------------------------------------------------------------------------------------
# The DBC objective
# ---------------------------------------------------------------------------------------------
@dataclass
class DBCLoss:
    total: torch.Tensor
    bc: torch.Tensor
    dm: torch.Tensor
    agent: torch.Tensor
    expert: torch.Tensor

    def items(self) -> dict[str, float]:
        """Means over any ensemble dims, as floats for logging."""
        return {k: float(getattr(self, k).detach().float().mean()) for k in ("total", "bc", "dm", "agent", "expert")}


def _flat_eps_loss(phi: JointDiffusion, s: torch.Tensor, a_enc: torch.Tensor, n: torch.Tensor, eps: torch.Tensor):
    """eps_loss over any leading dims: s (..., S), a_enc (..., A), n (...), eps (..., S + A) -> (...)."""
    lead = n.shape
    x0 = phi.joint(s.reshape(-1, s.shape[-1]), a_enc.reshape(-1, a_enc.shape[-1]))
    return phi.eps_loss(x0, n.reshape(-1), eps.reshape(-1, eps.shape[-1])).view(lead)


def dbc_loss_continuous(
    a_pi: torch.Tensor,
    a_expert: torch.Tensor,
    s: torch.Tensor,
    phi: JointDiffusion | None,
    lam: float | torch.Tensor,
    clamp: str = "batch",
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DBCLoss:
    """L = L_BC + lambda * max(L_agent - L_expert, 0) (DBC eq. 7).

    a_pi: the policy's actions (..., B, A) (raw units, differentiable); a_expert: (..., B, A);
    s: raw states (..., B, S). Leading dims (an ensemble of policies) give per-member losses (...).
    lam: a float or a tensor broadcastable to the leading dims (lambda = 0: plain BC).
    clamp: 'batch' clamps the batch means (the paper's code), 'sample' clamps each sample.
    noise: (n (..., B), eps (..., B, S + A)) to share; drawn here if None.
    """
    bc = (a_pi - a_expert).pow(2).mean((-2, -1))  # L_BC = ||a - pi(s)||^2 (eq. 1)
    zero = torch.zeros_like(bc)
    if phi is None or (not torch.is_tensor(lam) and lam == 0):
        return DBCLoss(bc, bc, zero, zero, zero)
    if noise is None:
        n, eps = phi.sample_noise(a_pi[..., 0].numel(), a_pi.device)
        noise = n.view(a_pi.shape[:-1]), eps.view(*a_pi.shape[:-1], -1)
    n, eps = noise
    l_agent = _flat_eps_loss(phi, s, phi.encode_action(a_pi), n, eps)  # eq. 5 on (s, pi(s)), same (n, eps)
    with torch.no_grad():
        l_expert = _flat_eps_loss(phi, s, phi.encode_action(a_expert), n, eps)  # eq. 5 on (s, a)
    if clamp == "batch":
        dm = torch.relu(l_agent.mean(-1) - l_expert.mean(-1))  # L_DM = max(L_agent - L_expert, 0) (eq. 6)
    elif clamp == "sample":
        dm = torch.relu(l_agent - l_expert).mean(-1)  # per-sample variant
    else:
        raise ValueError(f"unknown clamp {clamp!r}: expected batch or sample")
    return DBCLoss(bc + lam * dm, bc, dm, l_agent.mean(-1).detach(), l_expert.mean(-1))


def dbc_loss_discrete(
    logits: torch.Tensor,
    a_expert: torch.Tensor,
    s: torch.Tensor | None,
    phi: JointDiffusion | None,
    lam: float | torch.Tensor,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DBCLoss:
    """L = CE(pi(s), a) + lambda * mean_b relu(sum_k pi_k l_k - l_E) (docs/design.md §5.4).

    logits: (..., B, K); a_expert: (..., B) indices; s: the (embedded) states phi was fitted on,
    (..., B, S). l_k uses the same (n, eps) for every k and for the expert, so only pi carries a
    gradient, and it is exact: d L_DM / d pi_k = l_k where the margin is positive.
    """
    K = logits.shape[-1]
    ce = F.cross_entropy(logits.reshape(-1, K), a_expert.reshape(-1).long(), reduction="none")
    bc = ce.view(a_expert.shape).mean(-1)  # L_BC for discrete actions: cross-entropy
    zero = torch.zeros_like(bc)
    if phi is None or s is None or (not torch.is_tensor(lam) and lam == 0):
        return DBCLoss(bc, bc, zero, zero, zero)
    lead = a_expert.shape
    s_flat = s.reshape(-1, s.shape[-1])
    n, eps = noise if noise is not None else phi.sample_noise(s_flat.shape[0], s.device)
    with torch.no_grad():
        losses = phi.action_losses(s_flat, n.reshape(-1), eps.reshape(s_flat.shape[0], -1))  # l_k: (N, K)
    losses = losses.view(*lead, K)  # constants w.r.t. pi
    l_expert = losses.gather(-1, a_expert.long()[..., None])[..., 0]  # l_E: (..., B)
    probs = logits.softmax(-1)
    l_agent = (probs * losses).sum(-1)  # E_{a~pi}[l_a] = sum_k pi_k l_k
    dm = torch.relu(l_agent - l_expert).mean(-1)  # L_DM = mean relu(sum_k pi_k l_k - l_E)
    return DBCLoss(bc + lam * dm, bc, dm, l_agent.mean(-1).detach(), l_expert.mean(-1))


# ---------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------
class MLPPolicy(nn.Module):
    """Low-dim states -> continuous actions (raw units) or logits. States z-scored inside."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.obs_norm = Normaliser(cfg.obs_dim)
        self.action_norm = Normaliser(cfg.action_dim)  # continuous: outputs are z-scored actions
        self.net = mlp(cfg.obs_dim, cfg.hidden, cfg.layers, cfg.action_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(self.obs_norm(obs.float()))
        return out if self.cfg.discrete else self.action_norm.inverse(out)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float()


class ConvPolicy(nn.Module):
    """A stack of RGB frames uint8 (B, F, H, W, 3) -> logits (B, K), through an embed_dim bottleneck."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, (c1, c2) = 3 * cfg.frames + (3 * (cfg.frames - 1) if cfg.frame_diff else 0), cfg.channels
        self.conv = nn.Sequential(
            nn.Conv2d(c, c1, 8, stride=4),  # 64 -> 15
            nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2),  # 15 -> 6
            nn.ReLU(),
            nn.Flatten(),  # (B, c2, 6, 6) -> (B, c2*36)
        )
        self.bottleneck = nn.Linear(c2 * 36, cfg.embed_dim)
        self.head = mlp(cfg.embed_dim, cfg.hidden, 1, cfg.action_dim)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, F, H, W, 3) -> features (B, embed_dim)."""
        x = frames.float().movedim(-1, -3) / 127.5 - 1  # (B, F, H, W, 3) -> (B, F, 3, H, W)
        if self.cfg.frame_diff:  # sparse, so scaled up to the frames' range at initialisation
            x = torch.cat([x, FRAME_DIFF_GAIN * (x[:, 1:] - x[:, :-1])], 1)
        return self.bottleneck(self.conv(x.flatten(1, 2)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embed(frames)))


def make_policy_net(cfg: PolicyConfig) -> nn.Module:
    return ConvPolicy(cfg) if cfg.pixels else MLPPolicy(cfg)


@torch.no_grad()
def act(
    policy: nn.Module, obs: torch.Tensor, greedy: bool = True, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched action selection -> (actions, output). Discrete: argmax (greedy) or a draw from the
    softmax (with `generator`, reproducible), and the probs; continuous: actions clipped to [-1, 1]
    and the raw output."""
    out = policy(obs)
    if policy.cfg.discrete:
        probs = out.softmax(-1)
        a = probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=generator)[:, 0]
        return a, probs
    return out.clamp(-1, 1), out


# ---------------------------------------------------------------------------------------------
# Checkpoints (safetensors + JSON, no pickle)
# ---------------------------------------------------------------------------------------------
POLICY_KIND = "dbc_policy"
DIFFUSION_KIND = "dbc_diffusion"


def save_dbc_policy(path: str | Path, policy: nn.Module, meta: dict[str, Any]) -> None:
    """Inference snapshot of a policy: weights + config + meta (task, algo, seed, lambda, ...)."""
    checkpoint.save(path, {"model": policy.state_dict()}, {"kind": POLICY_KIND, "config": policy.cfg.to_dict(), **meta})


def check_task(path: str | Path, meta: dict[str, Any], task: str | None) -> None:
    """Refuse (CheckpointError) a policy snapshot trained for another task than `task`, if given."""
    if task is not None and meta.get("task") != task:
        raise checkpoint.CheckpointError(f"{path} is a policy for task {meta.get('task')!r}, not {task!r}")


def load_dbc_policy(path: str | Path, task: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a policy snapshot; with `task`, refuse one trained for another task (CheckpointError)."""
    tree, meta, cfg = checkpoint.load_snapshot(path, POLICY_KIND, "a DBC policy", PolicyConfig)
    check_task(path, meta, task)
    policy = make_policy_net(cfg)
    checkpoint.load_state_dict_strict(policy, tree["model"], str(path))
    return policy.eval(), meta


def save_diffusion(
    path: str | Path, phi: JointDiffusion, meta: dict[str, Any], embedder: nn.Module | None = None
) -> None:
    """phi (+ for pixel tasks the frozen state embedder whose features it diffuses over)."""
    tree: dict[str, Any] = {"model": phi.state_dict()}
    doc = {"kind": DIFFUSION_KIND, "config": phi.cfg.to_dict(), **meta}
    if embedder is not None:
        tree["embedder"] = embedder.state_dict()
        doc["embedder_config"] = embedder.cfg.to_dict()
    checkpoint.save(path, tree, doc)


def load_diffusion(
    path: str | Path, task: str | None = None
) -> tuple[JointDiffusion, nn.Module | None, dict[str, Any]]:
    """-> (phi, embedder or None, meta). Refuses another task's model with a CheckpointError."""
    tree, meta = checkpoint.load(path)
    if meta.get("kind") != DIFFUSION_KIND:
        raise checkpoint.CheckpointError(f"{path} is not a DBC diffusion model (kind={meta.get('kind')!r})")
    if task is not None and meta.get("task") != task:
        raise checkpoint.CheckpointError(f"{path} is a diffusion model for task {meta.get('task')!r}, not {task!r}")
    try:
        phi = JointDiffusion(DiffusionConfig(**meta["config"]))
        embedder = make_policy_net(PolicyConfig(**meta["embedder_config"])) if "embedder" in tree else None
    except (TypeError, ValueError, KeyError) as e:
        raise checkpoint.CheckpointError(f"{path}: bad diffusion config: {e}") from None
    checkpoint.load_state_dict_strict(phi, tree["model"], str(path))
    if embedder is not None:
        checkpoint.load_state_dict_strict(embedder, tree["embedder"], str(path))
        embedder.eval().requires_grad_(False)
    return phi.eval().requires_grad_(False), embedder, meta
