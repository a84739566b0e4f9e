"""An ensemble of MLP policies trained in one pass: member e is exactly an independent MLPPolicy.

Small MLPs on a CPU are bound by per-operation overhead, not arithmetic, so BC and DBC over
several seeds train E times faster as one batched network: every Linear becomes a batched
matmul over the member dim (weights (E, in, out)), members share nothing (own init seed, own
data order, own (n, eps), own gradient clipping), and `member(e)` exports a plain MLPPolicy.
"""

from __future__ import annotations

import torch
from torch import nn

from model.dbc.core import MLPPolicy, Normaliser, PolicyConfig


class EnsembleLinear(nn.Module):
    def __init__(self, members: int, inp: int, out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(members, inp, out))
        self.bias = nn.Parameter(torch.zeros(members, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias[:, None], x, self.weight)  # (E, B, in) @ (E, in, out) -> (E, B, out)


class EnsembleMLPPolicy(nn.Module):
    """E continuous or discrete MLP policies; member e starts from MLPPolicy's init under seeds[e]."""

    def __init__(self, cfg: PolicyConfig, seeds: list[int]) -> None:
        super().__init__()
        if cfg.pixels:
            raise ValueError("EnsembleMLPPolicy is for low-dim states")
        self.cfg, self.members = cfg, len(seeds)
        self.obs_norm = Normaliser(cfg.obs_dim)
        self.action_norm = Normaliser(cfg.action_dim)
        dims = [cfg.obs_dim] + [cfg.hidden] * cfg.layers + [cfg.action_dim]
        self.layers = nn.ModuleList(
            EnsembleLinear(self.members, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.act = nn.Mish()
        with torch.no_grad():
            for e, seed in enumerate(seeds):
                torch.manual_seed(seed)
                single = MLPPolicy(cfg)
                linears = [m for m in single.net if isinstance(m, nn.Linear)]
                for ens, lin in zip(self.layers, linears, strict=True):
                    ens.weight[e].copy_(lin.weight.T)
                    ens.bias[e].copy_(lin.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (E, B, obs_dim) -> actions (E, B, A) in raw units, or logits."""
        x = self.obs_norm(obs.float())
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x if self.cfg.discrete else self.action_norm.inverse(x)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Per-member gradient clipping (as if each member had its own clip_grad_norm_) -> norms (E,)."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0).sqrt()  # (E,)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.ndim - 1)))
        return norms

    @torch.no_grad()
    def member(self, e: int) -> MLPPolicy:
        single = MLPPolicy(self.cfg)
        single.obs_norm.load_state_dict(self.obs_norm.state_dict())
        single.action_norm.load_state_dict(self.action_norm.state_dict())
        linears = [m for m in single.net if isinstance(m, nn.Linear)]
        for ens, lin in zip(self.layers, linears, strict=True):
            lin.weight.copy_(ens.weight[e].T)
            lin.bias.copy_(ens.bias[e])
        return single.eval()
