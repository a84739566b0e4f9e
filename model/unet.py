"""Action-conditioned U-Net F of the DIAMOND denoiser (DESIGN.md §2).

The network never sees raw sigma or unscaled input: the denoiser (denoiser.py) hands it
`c_in * x_noisy`, the context frames divided by sigma_data, `c_noise`, the past actions and
the context-noise level used for augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UNetConfig:
    """Shape of the U-Net. The default is the paper's Atari network (4.4 M parameters)."""

    num_actions: int = 4
    """Size of the game's minimal action set."""
    context_frames: int = 4
    """L: number of past frames (and actions) the model is conditioned on."""
    image_channels: int = 3
    """RGB."""
    channels: list[int] = field(default_factory=lambda: [64, 64, 64, 64])
    """Channels per level; each level after the first halves the resolution."""
    blocks_per_level: int = 2
    """Residual blocks per level (down path; the up path mirrors it)."""
    cond_channels: int = 256
    """Size of the conditioning vector fed to every adaptive group norm."""
    attn_middle: bool = True
    """Self-attention in the lowest-resolution middle block (8x8 for 64x64 frames)."""
    context_noise_levels: int = 10
    """Number of discrete context-noise-augmentation levels b that can be embedded (0 = clean)."""

    def __post_init__(self) -> None:
        if self.num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {self.num_actions}")
        if self.context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {self.context_frames}")
        if not self.channels or any(c < 8 or c % 8 for c in self.channels):
            raise ValueError(f"channels must be non-empty multiples of 8, got {self.channels}")
        if self.cond_channels % self.context_frames:
            raise ValueError("cond_channels must be divisible by context_frames")
        if self.blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be >= 1, got {self.blocks_per_level}")


def _groups(channels: int) -> int:
    return max(1, min(32, channels // 8))


class FourierFeatures(nn.Module):
    """Random Fourier features of the scalar c_noise (EDM / DIAMOND)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(1, channels // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x.float()[:, None] @ self.weight  # (B,) -> (B, C/2)
        return torch.cat([f.cos(), f.sin()], dim=1)


class AdaGroupNorm(nn.Module):
    """Adaptive group norm: GN(x) * (1 + scale) + shift, with (scale, shift) from the cond vector."""

    def __init__(self, channels: int, cond_channels: int) -> None:
        super().__init__()
        self.num_groups = _groups(channels)
        self.linear = nn.Linear(cond_channels, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups)
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class SelfAttention2d(nn.Module):
    def __init__(self, channels: int, cond_channels: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = AdaGroupNorm(channels, cond_channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x, cond))
        # (B, 3C, H, W) -> 3 x (B, heads, H*W, C/heads)
        q, k, v = qkv.reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)
        # (B, heads, H*W, C/heads) -> (B, C, H, W)
        y = y.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.out(y)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, cond_channels: int, attn: bool = False) -> None:
        super().__init__()
        self.norm1 = AdaGroupNorm(in_ch, cond_channels)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_ch, cond_channels)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.attn = SelfAttention2d(out_ch, cond_channels) if attn else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        x = self.proj(x) + h
        return x if self.attn is None else self.attn(x, cond)


class UNet(nn.Module):
    """F(c_in x_noisy, context / sigma_data, c_noise, actions, context-noise level) -> target."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cc = cfg.cond_channels
        self.noise_emb = FourierFeatures(cc)
        # Flattened embeddings of the L past actions, cond_channels / L dims each.
        self.act_emb = nn.Embedding(cfg.num_actions, cc // cfg.context_frames)
        self.ctx_noise_emb = nn.Embedding(cfg.context_noise_levels, cc)
        nn.init.zeros_(self.ctx_noise_emb.weight)
        self.cond_mlp = nn.Sequential(nn.Linear(cc, cc), nn.SiLU(), nn.Linear(cc, cc))

        in_ch = cfg.image_channels * (cfg.context_frames + 1)
        ch = cfg.channels
        self.conv_in = nn.Conv2d(in_ch, ch[0], 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_ch = []
        c_prev = ch[0]
        for i, c in enumerate(ch):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks_per_level):
                blocks.append(ResBlock(c_prev, c, cc))
                c_prev = c
                skip_ch.append(c)
            self.down.append(blocks)
            last = i == len(ch) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))

        self.mid = nn.ModuleList([ResBlock(c_prev, c_prev, cc, attn=cfg.attn_middle), ResBlock(c_prev, c_prev, cc)])

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, c in reversed(list(enumerate(ch))):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks_per_level):
                blocks.append(ResBlock(c_prev + skip_ch.pop(), c, cc))
                c_prev = c
            self.up.append(blocks)
            first_level = i == 0
            self.upsample.append(nn.Identity() if first_level else nn.Conv2d(c, ch[i - 1], 3, padding=1))
            if not first_level:
                c_prev = ch[i - 1]

        self.norm_out = nn.GroupNorm(_groups(c_prev), c_prev)
        self.conv_out = nn.Conv2d(c_prev, cfg.image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # output conv zero-initialised (DIAMOND)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        ctx_noise_level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, C, H, W); c_noise: (B,); obs_ctx: (B, L*C, H, W); act_ctx: (B, L) long."""
        # (B, L) -> (B, L, cc/L) -> (B, cc); flatten, not reshape(B, -1), so a traced graph
        # (Denoiser.freeze) keeps the batch size free.
        act = self.act_emb(act_ctx).flatten(1)
        cond = self.noise_emb(c_noise) + act
        if ctx_noise_level is not None:
            cond = cond + self.ctx_noise_emb(ctx_noise_level)
        cond = self.cond_mlp(cond)

        h = self.conv_in(torch.cat([x, obs_ctx], dim=1))
        skips = []
        for blocks, down in zip(self.down, self.downsample):
            for block in blocks:
                h = block(h, cond)
                skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, cond)
        for blocks, up in zip(self.up, self.upsample):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), cond)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
