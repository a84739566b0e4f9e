"""Karras-schedule Euler / Heun sampler for the next-frame denoiser."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from model.world_model.denoiser import Denoiser


@dataclass
class SamplerConfig:
    num_steps: int = 3
    """Denoising steps N (network evaluations per frame with Euler)."""
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    order: int = 1
    """1 = Euler, 2 = Heun (one extra evaluation per step that ends at sigma >= the offset-noise
    std, 0.3 for DIAMOND's settings; the steps below it are Euler steps)."""

    action_guidance: float = 0.0
    """Action-contrast guidance g (0 = off, DIAMOND's sampler): at noise levels >= guidance_sigma,
    a dream whose action now is not NOOP (action 0) is denoised to D(a) + g (D(a) - D(NOOP)), the
    same context with NOOP as the last action. Classifier-free guidance (Ho & Salimans, 2022) with
    NOOP as the reference, so no retraining: it strengthens what the action changes where the model
    is still unsure of it (the serve on FIRE), and costs one more batch row per guided step for those
    dreams only (in the same network call: `guided_denoise`). With Heun (order 2) the correction's
    second evaluation is not guided."""
    guidance_sigma: float = 1.0
    """Guide only the steps that start at sigma >= this (1.0: the first of 3 Euler steps)."""
    guidance_reference: int = 0
    """The action (an index into the game's action set) the guidance contrasts with. 0, NOOP: the
    dreams that act are guided against NOOP and NOOP dreams are not. Another action r (Breakout:
    FIRE, 1): every dream is guided, a dream acting r against NOOP and every other one against r,
    D(a) + g (D(a) - D(r)): a dream that does not press FIRE is pushed away from what FIRE would
    draw (the serve) as firmly as one that presses it is pushed towards it. Where r changes nothing
    (FIRE with the ball in play) D(r) is D(NOOP) and the guidance is the default one. Costs the
    extra row for NOOP dreams too."""
    still_band: float = 0.0
    """Grey levels (of 255; 0 = off). A pixel whose dreamed value differs from the last context
    frame's by less than this in every channel keeps the context frame's value. Atari draws from a
    palette: between two real frames (64x64, area-resized) a pixel almost always changes by several
    grey levels or not at all (in Breakout's training play 0.28 % of the changes are of 1 level), so
    a change of about a grey level is mostly the sampler's noise on a still background (a one-step
    student's skip term, bf16 rounding). Measure the game's play with
    `training/world_model/measures.small_changes` before a model uses a band (docs/distillation.md)."""

    def __post_init__(self) -> None:
        if self.action_guidance < 0 or self.guidance_sigma < 0:
            raise ValueError("action_guidance and guidance_sigma must be >= 0")
        if self.guidance_reference < 0:
            raise ValueError(f"guidance_reference must be an action index >= 0, got {self.guidance_reference}")
        if not 1 <= self.num_steps <= 50:
            raise ValueError(f"num_steps must be in [1, 50], got {self.num_steps}")
        if self.order not in (1, 2):
            raise ValueError(f"order must be 1 (Euler) or 2 (Heun), got {self.order}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError("need 0 < sigma_min < sigma_max")
        if not 0 <= self.still_band < 255:
            raise ValueError(f"still_band is in grey levels, 0 <= still_band < 255, got {self.still_band}")


@lru_cache(maxsize=64)
def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float) -> tuple[float, ...]:
    """sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0 (Karras eq. 5)."""
    if num_steps == 1:
        return (sigma_max, 0.0)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = [(hi + i / (num_steps - 1) * (lo - hi)) ** rho for i in range(num_steps)]
    return (*sigmas, 0.0)


@torch.no_grad()
def sample_next_frame(
    denoiser: Denoiser,
    obs_ctx: torch.Tensor,
    act_ctx: torch.Tensor,
    cfg: SamplerConfig,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    reward: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dream the next frame. obs_ctx: (B, L, C, H, W) in [-1, 1]; act_ctx: (B, L) -> (B, C, H, W).

    noise: (B, C, H, W) standard normal, the initial noise (drawn from `generator` when None). The
    Euler and Heun steps add no noise of their own, so the frame is a function of it.
    reward: (B,) `REWARD_INPUTS` indices, what a reward-input denoiser is told (None: unknown).
    """
    b, _, c, h, w = obs_ctx.shape
    device = obs_ctx.device
    sigmas = karras_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    if noise is None:
        noise = torch.randn(b, c, h, w, device=device, generator=generator)
    elif noise.shape != (b, c, h, w):
        raise ValueError(f"noise must be ({b}, {c}, {h}, {w}), got {tuple(noise.shape)}")
    x = noise.to(device=device, dtype=torch.float32) * sigmas[0]  # x_0 ~ N(0, sigma_max^2)
    level = torch.zeros(b, dtype=torch.long, device=device)  # clean context at sampling time
    guided = ref = None
    if cfg.action_guidance > 0:
        a, r = act_ctx[:, -1], cfg.guidance_reference
        guided = a != 0 if r == 0 else torch.ones_like(a, dtype=torch.bool)
        ref = torch.where(a == r, torch.zeros_like(a), torch.full_like(a, r))
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        s = torch.full((b,), sigma, device=device)
        if guided is not None and sigma >= cfg.guidance_sigma and guided.any():
            denoised = guided_denoise(denoiser, x, s, obs_ctx, act_ctx, level, guided, cfg.action_guidance, ref, reward)
        else:
            denoised = denoiser.denoise(x, s, obs_ctx, act_ctx, level, reward)
        d = (x - denoised) / sigma  # Euler step (Karras Alg. 1/2)
        # Heun's correction divides by sigma_next. Below the offset-noise std s_off the denoiser
        # takes any input for noise of std >= s_off (Denoiser.conditioners), so that quotient
        # blows up: Heun with 2 steps gave frames at 17 dB. Correct only while sigma_next >= s_off.
        if cfg.order == 1 or sigma_next < max(denoiser.cfg.sigma_offset_noise, 1e-9):
            x = x + d * (sigma_next - sigma)
        else:  # Heun correction
            x_pred = x + d * (sigma_next - sigma)
            s_next = torch.full((b,), sigma_next, device=device)
            d_next = (x_pred - denoiser.denoise(x_pred, s_next, obs_ctx, act_ctx, level, reward)) / sigma_next
            x = x + (d + d_next) / 2 * (sigma_next - sigma)
    x = x.clamp(-1, 1)
    return keep_still(x, obs_ctx[:, -1], cfg.still_band) if cfg.still_band > 0 else x


def keep_still(frame: torch.Tensor, last: torch.Tensor, band: float) -> torch.Tensor:
    """`frame` (B, C, H, W) in [-1, 1] with every pixel that moved by less than `band` grey levels
    from `last` in all channels set back to `last` (SamplerConfig.still_band)."""
    last = last.to(frame.dtype)
    still = ((frame - last).abs() * 127.5 < band).all(dim=1, keepdim=True)
    return torch.where(still, last, frame)


# Up to this many rows (dreams + their references) the guided step is one network call; above it,
# two. Timed on a 2-core Xeon (bf16, the shipped Breakout model, a whole dream step): one call is
# 6-14 % faster at 1-4 dreams and within the noise between runs at 8-16 (docs/benchmarks.md).
ONE_CALL_ROWS = 8


def guided_denoise(
    denoiser: Denoiser,
    x: torch.Tensor,
    s: torch.Tensor,
    obs_ctx: torch.Tensor,
    act_ctx: torch.Tensor,
    level: torch.Tensor,
    rows: torch.Tensor,
    g: float,
    reference: torch.Tensor | None = None,
    reward: torch.Tensor | None = None,
) -> torch.Tensor:
    """Action-contrast guidance on the dreams `rows` (B,) bool: D(a) + g (D(a) - D(ref)), with the
    reference action `reference` (B,) in place of the last action (None: NOOP for every dream); the
    other dreams get D(a). With few dreams the guided dreams' reference inputs ride in the same
    network call as the dreams themselves (on a CPU a batch of 2 costs about 1.4 calls of 1); with
    more than `ONE_CALL_ROWS` rows in all, two calls (one large batch gains nothing there). reward:
    as `sample_next_frame`'s, the same for a dream and its reference."""
    b = x.shape[0]
    idx = rows.nonzero(as_tuple=True)[0]
    ref = act_ctx[idx].clone()
    ref[:, -1] = 0 if reference is None else reference[idx]
    if b + len(idx) <= ONE_CALL_ROWS:
        both = denoiser.denoise(
            torch.cat([x, x[idx]]),
            torch.cat([s, s[idx]]),
            torch.cat([obs_ctx, obs_ctx[idx]]),
            torch.cat([act_ctx, ref]),
            torch.cat([level, level[idx]]),
            None if reward is None else torch.cat([reward, reward[idx]]),
        )
        out, d_ref = both[:b].clone(), both[b:]
    else:
        out = denoiser.denoise(x, s, obs_ctx, act_ctx, level, reward).clone()
        d_ref = denoiser.denoise(x[idx], s[idx], obs_ctx[idx], ref, level[idx], None if reward is None else reward[idx])
    out[idx] = out[idx] + g * (out[idx] - d_ref)
    return out
