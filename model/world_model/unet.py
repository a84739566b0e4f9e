"""Action-conditioned U-Net F of the DIAMOND denoiser.

The network never sees raw sigma or unscaled input: the denoiser (denoiser.py) hands it
`c_in * x_noisy`, the context frames divided by sigma_data, `c_noise`, the past actions and
the context-noise level used for augmentation.

Two layouts. 'compact' (the cpu and tiny presets, and the shipped model): n res blocks per level
on both paths, resampling after each level. 'diamond' (the paper preset): DIAMOND's `InnerModel`
exactly, with 4,405,955 parameters for Breakout's 4 actions at channels [64, 64, 64, 64]: each
level of the up path has n + 1 res blocks (the extra one takes the skip of the level's input),
group norms of 32 channels per group, attention heads of 8 channels after a plain group norm,
both middle blocks with attention, the second conv of every res block zero-initialised.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

LAYOUTS = ("compact", "diamond")
REWARD_INPUTS = ("unknown", "negative", "zero", "positive")
"""What a `reward_input` U-Net is told of the step's reward: `reward_input_index` gives the index."""


def reward_input_index(reward: torch.Tensor) -> torch.Tensor:
    """Rewards (B,) -> their `REWARD_INPUTS` index (long): 1 below zero, 2 at zero, 3 above."""
    return torch.sign(reward).long() + 2


@dataclass
class UNetConfig:
    """Shape of the U-Net. The default has the paper's channels in the compact layout (3.55 M
    parameters); `layout="diamond"` with `context_noise_levels=1` is DIAMOND's Atari network
    exactly (4.41 M, preset 'paper')."""

    num_actions: int = 4
    """Size of the game's minimal action set."""
    context_frames: int = 4
    """L: number of past frames the model is conditioned on (and actions, see action_frames)."""
    action_frames: int = 0
    """Number of the most recent actions embedded into the conditioning vector; 0 = all L. A model
    grown from 4 to more frames (`grow_context`) keeps its 4 action embeddings: the older frames
    only give it memory (how long the field has been empty), through the first convolution."""
    image_channels: int = 3
    """RGB."""
    channels: list[int] = field(default_factory=lambda: [64, 64, 64, 64])
    """Channels per level; each level after the first halves the resolution."""
    blocks_per_level: int = 2
    """Residual blocks per level (down path; the up path mirrors it)."""
    cond_channels: int = 256
    """Size of the conditioning vector fed to every adaptive group norm."""
    attn_middle: bool = True
    """Self-attention in the lowest-resolution middle blocks (8x8 for 64x64 frames): the first of
    the two in the compact layout, both in DIAMOND's."""
    context_noise_levels: int = 10
    """Number of discrete context-noise-augmentation levels b that can be embedded (0 = clean).
    1: clean contexts only, and no embedding at all (DIAMOND has none)."""
    layout: str = "compact"
    """'compact' or 'diamond' (DIAMOND's InnerModel: see the module docstring). Snapshots written
    before this option existed are compact."""
    fp32_output: bool = False
    """Run the output layer (the last group norm and convolution) in fp32 under bf16 autocast. bf16
    keeps 8 bits of mantissa: an output F of magnitude 1-2 is rounded to steps of 2^-7, up to a
    quarter of a grey level in the frame c_skip x + c_out F (c_out about 0.5 at sigma 5). Harmless
    where c_out F is a small correction (the last Euler steps, whose frame is carried by the skip
    term in fp32), visible where it is the whole frame (a one-step student, train.py --distill-from,
    which sets it). Costs one 3-channel convolution in fp32."""
    reward_input: bool = False
    """Take the dreamed step's reward as an input: its sign (-, 0, +) or "unknown", embedded into the
    conditioning vector (zero-initialised, so a model given it computes what it computed before). A
    point a game draws a few frames of digits for is what a few-step sampler leaves out when the
    model cannot tell from the context whether it happens (Boxing's landed punch): told the reward,
    it has to draw the digits that go with it. `WorldModel.dream_step` dreams with "unknown", samples
    the reward from the reward head as ever, and dreams again, told the reward, the dreams that scored
    (train.py --reward-input)."""

    def __post_init__(self) -> None:
        if self.num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {self.num_actions}")
        if self.context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {self.context_frames}")
        if not self.channels or any(c < 8 or c % 8 for c in self.channels):
            raise ValueError(f"channels must be non-empty multiples of 8, got {self.channels}")
        if not 0 <= self.action_frames <= self.context_frames:
            raise ValueError(f"action_frames must be in [0, context_frames], got {self.action_frames}")
        if self.cond_channels % self.embedded_actions:
            raise ValueError("cond_channels must be divisible by the number of embedded actions")
        if self.blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be >= 1, got {self.blocks_per_level}")
        if self.context_noise_levels < 1:
            raise ValueError(f"context_noise_levels must be >= 1, got {self.context_noise_levels}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    @property
    def embedded_actions(self) -> int:
        return self.action_frames or self.context_frames


def grow_context(
    cfg: UNetConfig, state: dict[str, torch.Tensor], frames: int, prefix: str = ""
) -> tuple[UNetConfig, dict[str, torch.Tensor]]:
    """The config and weights of a U-Net that sees `frames` past frames, made from one that sees
    fewer and computing exactly the same function: the older frames enter through new input
    channels of conv_in initialised at zero (conv_in takes the noisy frame, then the context oldest
    first), and the embedded actions stay the last `cfg.embedded_actions`. Training then teaches it
    what the older frames are worth (a game's hidden timers: Breakout's 8-step pause before a lost
    life is counted). `prefix`: where the U-Net's keys start in `state`."""
    if frames < cfg.context_frames:
        raise ValueError(f"cannot shrink the context from {cfg.context_frames} to {frames} frames")
    key = prefix + "conv_in.weight"
    if key not in state:
        raise ValueError(f"no {key} in the weights")
    w, c = state[key], cfg.image_channels
    extra = torch.zeros(w.shape[0], c * (frames - cfg.context_frames), *w.shape[2:], dtype=w.dtype)
    grown = torch.cat([w[:, :c], extra, w[:, c:]], dim=1)
    new = replace(cfg, context_frames=frames, action_frames=cfg.embedded_actions)
    return new, {**state, key: grown}


def add_reward_input(
    cfg: UNetConfig, state: dict[str, torch.Tensor] | None, prefix: str = ""
) -> tuple[UNetConfig, dict[str, torch.Tensor] | None]:
    """The config and weights of the same U-Net taking the step's reward as an input (`reward_input`)
    and computing exactly the same function: the reward embedding starts at zero. `state` None (a
    fresh model) stays None; `prefix`: where the U-Net's keys start in `state`."""
    new = replace(cfg, reward_input=True)
    if state is None:
        return new, None
    weight = torch.zeros(len(REWARD_INPUTS), cfg.cond_channels, dtype=state[prefix + "act_emb.weight"].dtype)
    return new, {**state, prefix + "reward_emb.weight": weight}


def _groups(channels: int, diamond: bool = False) -> int:
    """Group-norm groups: compact, 8 channels per group (at most 32 groups); DIAMOND, 32 per group."""
    return max(1, channels // 32) if diamond else max(1, min(32, channels // 8))


class FourierFeatures(nn.Module):
    """Random Fourier features of the scalar c_noise (EDM / DIAMOND)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(1, channels // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x.float()[:, None] @ self.weight  # (B,) -> (B, C/2)
        return torch.cat([f.cos(), f.sin()], dim=1)


CondTable = dict["AdaGroupNorm", tuple[torch.Tensor, torch.Tensor]]
"""Every adaptive group norm's (1 + scale, shift) of one forward, (B, C, 1, 1) each, computed at once
by the `FusedConditioning` of an `inference_copy`; blocks take it in place of the conditioning
vector."""


class AdaGroupNorm(nn.Module):
    """Adaptive group norm: GN(x) * (1 + scale) + shift, with (scale, shift) from the cond vector
    (or looked up in a `CondTable` that holds them already)."""

    def __init__(self, channels: int, cond_channels: int, diamond: bool = False) -> None:
        super().__init__()
        self.num_groups = _groups(channels, diamond)
        self.linear = nn.Linear(cond_channels, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | CondTable) -> torch.Tensor:
        if isinstance(cond, dict):
            scale1, shift = cond[self]
            if x.shape[0] == 1:  # one sample: (1 + scale, shift) are group_norm's own affine, one op fewer
                return F.group_norm(x, self.num_groups, scale1.flatten(), shift.flatten())
            return torch.addcmul(shift, F.group_norm(x, self.num_groups), scale1)
        x = F.group_norm(x, self.num_groups)
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class FusedConditioning(nn.Module):
    """The linears of all adaptive group norms of a U-Net as one: cond (B, cc) -> a `CondTable`.

    One matrix product in place of one per norm (42 in the cpu preset), with the 1 of (1 + scale)
    folded into the bias. Built from the norms' weights at the time (`inference_copy`)."""

    def __init__(self, norms: list[AdaGroupNorm]) -> None:
        super().__init__()
        self.norms = norms  # a plain list: the norms are the copy's own modules, not registered twice
        self.sizes = [n.linear.out_features for n in norms]
        weight = torch.cat([n.linear.weight.detach() for n in norms])
        bias = []
        for n in norms:
            b = n.linear.bias.detach().clone()
            b[: n.linear.out_features // 2] += 1
            bias.append(b)
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(torch.cat(bias))

    def forward(self, cond: torch.Tensor) -> CondTable:
        product = self.linear(cond)
        if product.shape[0] == 1:
            # Batch 1 passes (1 + scale, shift) to group_norm as its affine, which autocast casts to
            # fp32: one cast of the whole product gives the same numbers as the two per norm it
            # replaces (76 in the cpu preset; about 1.5 % of a one-step frame). Larger batches keep
            # the bf16 product, which their addcmul uses as it is.
            product = product.float()
        parts = product[:, :, None, None].split(self.sizes, dim=1)
        return {n: p.chunk(2, dim=1) for n, p in zip(self.norms, parts)}


class SelfAttention2d(nn.Module):
    """Compact: heads of 32 channels after an adaptive group norm, x + attention(norm(x)).
    DIAMOND: heads of 8 channels after a plain (affine) group norm, and the residual adds to the
    normalised input, norm(x) + attention(norm(x)), as DIAMOND's `SelfAttention2d` does."""

    def __init__(self, channels: int, cond_channels: int, diamond: bool = False) -> None:
        super().__init__()
        self.diamond = diamond
        self.heads = max(1, channels // (8 if diamond else 32))
        if diamond:
            self.norm = nn.GroupNorm(_groups(channels, diamond=True), channels)
        else:
            self.norm = AdaGroupNorm(channels, cond_channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | CondTable) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.diamond:
            x = self.norm(x)
            qkv = self.qkv(x)
        else:
            qkv = self.qkv(self.norm(x, cond))
        # (B, 3C, H, W) -> 3 x (B, heads, H*W, C/heads)
        q, k, v = qkv.reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)
        # (B, heads, H*W, C/heads) -> (B, C, H, W)
        y = y.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.out(y)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, cond_channels: int, attn: bool = False, diamond: bool = False) -> None:
        super().__init__()
        self.norm1 = AdaGroupNorm(in_ch, cond_channels, diamond)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_ch, cond_channels, diamond)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        if diamond:  # each block starts as its skip path (DIAMOND)
            nn.init.zeros_(self.conv2.weight)
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.attn = SelfAttention2d(out_ch, cond_channels, diamond) if attn else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | CondTable) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        x = self.proj(x) + h
        return x if self.attn is None else self.attn(x, cond)


class UNet(nn.Module):
    """F(c_in x_noisy, context / sigma_data, c_noise, actions, context-noise level) -> target.

    With `layout="diamond"` it is DIAMOND's `InnerModel`: the same modules, shapes, initialisation
    and function (parameter names differ, and conv_in takes the noisy frame before the context)."""

    under_autocast = False
    """True on an `inference_copy`: it is meant to run under bf16 autocast (`Denoiser._net`)."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.diamond = cfg.layout == "diamond"
        cc = cfg.cond_channels
        self.noise_emb = FourierFeatures(cc)
        # Flattened embeddings of the last A actions (A = embedded_actions), cond_channels / A dims each.
        self.act_emb = nn.Embedding(cfg.num_actions, cc // cfg.embedded_actions)
        self.ctx_noise_emb = None
        if cfg.context_noise_levels > 1:
            self.ctx_noise_emb = nn.Embedding(cfg.context_noise_levels, cc)
            nn.init.zeros_(self.ctx_noise_emb.weight)
        self.reward_emb = None
        if cfg.reward_input:
            self.reward_emb = nn.Embedding(len(REWARD_INPUTS), cc)
            nn.init.zeros_(self.reward_emb.weight)
        self.cond_mlp = nn.Sequential(nn.Linear(cc, cc), nn.SiLU(), nn.Linear(cc, cc))

        in_ch = cfg.image_channels * (cfg.context_frames + 1)
        self.conv_in = nn.Conv2d(in_ch, cfg.channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        c_out = self._build_diamond() if self.diamond else self._build_compact()

        self.cond_table: FusedConditioning | None = None  # set on an inference copy only
        self.norm_out = nn.GroupNorm(_groups(c_out, self.diamond), c_out)
        self.conv_out = nn.Conv2d(c_out, cfg.image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # output conv zero-initialised (DIAMOND)
        if not self.diamond:
            nn.init.zeros_(self.conv_out.bias)

    def _build_compact(self) -> int:
        """n blocks per level down and up, each up block taking one skip; resampling after each
        level. Returns the channels of the last up block."""
        cfg, cc, ch = self.cfg, self.cfg.cond_channels, self.cfg.channels
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
        return c_prev

    def _build_diamond(self) -> int:
        """DIAMOND's U-Net: level i downsamples its input (i > 0), then n blocks ch[i-1] -> ch[i];
        on the way up, level i upsamples its input (below the deepest level), then n blocks take
        the skips of its down blocks and an (n+1)-th block the skip of its input, ch[i] -> ch[i-1].
        Returns ch[0], the channels of the last up block."""
        cfg, cc, ch, n = self.cfg, self.cfg.cond_channels, self.cfg.channels, self.cfg.blocks_per_level
        for i, c in enumerate(ch):
            c_in = ch[max(0, i - 1)]
            if i == 0:
                self.downsample.append(nn.Identity())
            else:
                down = nn.Conv2d(c_in, c_in, 3, stride=2, padding=1)
                nn.init.orthogonal_(down.weight)  # as DIAMOND's Downsample
                self.downsample.append(down)
            self.down.append(nn.ModuleList([ResBlock(c_in if j == 0 else c, c, cc, diamond=True) for j in range(n)]))

        c = ch[-1]
        self.mid = nn.ModuleList([ResBlock(c, c, cc, attn=cfg.attn_middle, diamond=True) for _ in range(2)])

        for i, c in reversed(list(enumerate(ch))):
            c_in = ch[max(0, i - 1)]
            deepest = i == len(ch) - 1
            self.upsample.append(
                nn.Identity()
                if deepest
                else nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c, 3, padding=1))
            )
            blocks = [ResBlock(2 * c, c, cc, diamond=True) for _ in range(n)]  # (x, down block's output)
            blocks.append(ResBlock(c + c_in, c_in, cc, diamond=True))  # (x, the level's input)
            self.up.append(nn.ModuleList(blocks))
        return ch[0]

    def forward(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        ctx_noise_level: torch.Tensor | None = None,
        reward: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, C, H, W); c_noise: (B,); obs_ctx: (B, L*C, H, W); act_ctx: (B, L) long; reward: (B,)
        long, indices into `REWARD_INPUTS` (`reward_input` nets only; None: all unknown)."""
        # (B, L) -> (B, L, cc/L) -> (B, cc); flatten, not reshape(B, -1), so a traced graph
        # (Denoiser.freeze) keeps the batch size free.
        act = self.act_emb(act_ctx[:, -self.cfg.embedded_actions :]).flatten(1)
        cond = self.noise_emb(c_noise) + act
        if ctx_noise_level is not None and self.ctx_noise_emb is not None:
            cond = cond + self.ctx_noise_emb(ctx_noise_level)
        if self.reward_emb is not None:
            if reward is None:
                reward = torch.zeros(act_ctx.shape[0], dtype=torch.long, device=act_ctx.device)
            cond = cond + self.reward_emb(reward)
        elif reward is not None:
            raise ValueError("this U-Net takes no reward input (UNetConfig.reward_input)")
        cond = self.cond_mlp(cond)
        if self.cond_table is not None:
            cond = self.cond_table(cond)

        h = self.conv_in(torch.cat([x, obs_ctx], dim=1))
        h = self._diamond_body(h, cond) if self.diamond else self._compact_body(h, cond)
        if self.cfg.fp32_output and torch.is_autocast_enabled(h.device.type):
            with torch.autocast(h.device.type, enabled=False):
                return self.conv_out(F.silu(self.norm_out(h.float())))
        return self.conv_out(F.silu(self.norm_out(h)))

    def _compact_body(self, h: torch.Tensor, cond: torch.Tensor | CondTable) -> torch.Tensor:
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
        return h

    def _diamond_body(self, h: torch.Tensor, cond: torch.Tensor | CondTable) -> torch.Tensor:
        skips = []  # per level: its (downsampled) input, then each down block's output
        for blocks, down in zip(self.down, self.downsample):
            h = down(h)
            skips.append(h)
            for block in blocks:
                h = block(h, cond)
                skips.append(h)
        for block in self.mid:
            h = block(h, cond)
        for blocks, up in zip(self.up, self.upsample):
            h = up(h)
            for block in blocks:  # the skips of the level in reverse: block outputs, then its input
                h = block(torch.cat([h, skips.pop()], dim=1), cond)
        return h


def inference_copy(net: UNet, dtype: torch.dtype = torch.bfloat16) -> UNet:
    """A copy of `net` for inference under autocast to `dtype` (bf16 on the CPU): the weights of its
    convolutions and linears stored in `dtype`, and one `FusedConditioning` product in place of the
    adaptive norms' linears (whose own weights the copy then drops).

    It computes the same function as `net` under autocast, with fewer operations: autocast casts an
    fp32 weight at every call (its cache lives for one autocast region, i.e. one dreamed step), and
    the 42 small linears and the (1 + scale) additions of the cpu preset are as many calls again.
    The results differ from `net`'s under autocast only by where bf16 rounds (the fused product's
    1 + scale is rounded once, x (1 + scale) + shift is one addcmul, or at batch 1 group_norm's own
    per-channel affine: one operation fewer per norm, about 3 % of a one-step frame). The output
    layer stays in fp32 when `cfg.fp32_output` asks for it. Weights are copied: a later change to
    `net` does not reach it.
    """
    fast = copy.deepcopy(net).eval().requires_grad_(False)
    fast.under_autocast = True
    norms = [m for m in fast.modules() if isinstance(m, AdaGroupNorm)]
    if norms:
        fast.cond_table = FusedConditioning(norms)
    for norm in norms:
        del norm.linear
    keep_fp32 = {fast.conv_out, fast.norm_out} if fast.cfg.fp32_output else set()
    for m in fast.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in keep_fp32:
            m.to(dtype)
    return fast


class BatchOneTrace:
    """`inference_copy`'s network with its batch-1 calls run by a frozen TorchScript trace of it.

    A single player's dream is a batch of 1, where a frame is short enough (about 7 ms for the cpu
    preset on 2 cores) that Python's calls through some 200 modules are a sizeable part of it; the
    trace runs the same operations without them (6-9 % faster a call on a 2-core AVX512-BF16 CPU,
    docs/benchmarks.md). The trace holds the batch-1 path of the adaptive norms (group_norm's own
    affine), so it serves batch 1 only; other batches go to the copy itself. It is built under
    autocast, as the copy runs, from `example` (the U-Net's inputs at batch 1), and run three times
    so the TorchScript executor has profiled it before a player's first frame."""

    under_autocast = True

    def __init__(self, fast: UNet, example: tuple[torch.Tensor, ...]) -> None:
        if example[0].shape[0] != 1:
            raise ValueError(f"BatchOneTrace needs a batch-1 example, got batch {example[0].shape[0]}")
        self.fast = fast
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.compile, which compiles each batch size
            # for tens of seconds here (docs/benchmarks.md); the tracer warns about shape checks.
            warnings.simplefilter("ignore", (DeprecationWarning, torch.jit.TracerWarning))
            self.one = torch.jit.freeze(torch.jit.trace(fast, example, check_trace=False))
            for _ in range(3):
                self.one(*example)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        return self.one(*args) if args[0].shape[0] == 1 else self.fast(*args)
