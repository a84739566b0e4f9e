"""EDM-preconditioned next-frame denoiser and its training loss (DIAMOND, docs/design.md §2)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from model.world_model.unet import (
    REWARD_INPUTS,
    BatchOneTrace,
    UNet,
    UNetConfig,
    inference_copy,
    reward_input_index,
)


@dataclass
class DenoiserConfig:
    """EDM settings (DIAMOND's Atari values) plus the context-noise augmentation."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    sigma_data: float = 0.5
    """Standard deviation of the data (frames in [-1, 1])."""
    sigma_offset_noise: float = 0.3
    """s_off: std of the per-image, per-channel offset noise n_c."""
    train_log_sigma_mean: float = -0.4
    """log sigma ~ N(mean, std^2) during training."""
    train_log_sigma_std: float = 1.2
    train_sigma_min: float = 2e-3
    train_sigma_max: float = 20.0
    context_noise_scale: float = 0.0
    """Std of the Gaussian noise added to the context frames per augmentation level b
    (std = scale * b). 0 disables context-noise augmentation."""
    context_noise_clean_prob: float = 0.0
    """Probability of drawing b = 0 (clean context) before drawing b ~ U{1..levels-1}."""
    motion_weight: float = 0.0
    """Extra loss weight on pixels that move between the last context frame and the target
    (weight = 1 + motion_weight there), so small moving objects such as the ball count."""
    motion_threshold: float = 8 / 255
    """Change (in [0, 1] units, any channel) that marks a pixel as moving."""
    motion_on_prediction: bool = False
    """Also weight the pixels where the model's own denoised estimate moves away from the last
    context frame. With motion_source 'target', a missed ball costs (1 + motion_weight) and a ball
    drawn where there is none costs 1, so drawing balls everywhere is cheap; with this on, a false
    event costs as much as a missed one (measured: it overshoots, the dream stops drawing balls it
    is unsure of; docs/playability.md). With motion_source 'context' the whole weight depends on
    the inputs only (the estimate is a function of them), so the optimum stays unbiased, and
    events that start where nothing moved (a serve) get the motion weight where the model
    considers them."""
    motion_source: str = "target"
    """Where the motion weight comes from. 'target': pixels that move between the last context
    frame and the target. A weight that depends on the target biases the optimum: per pixel the
    best denoiser becomes the weighted mean E[w x] / E[w], pulled towards outcomes where something
    moves (a ball drawn where there is none). 'context': pixels that moved between the last two
    context frames, dilated by `motion_dilate`: the weight depends only on what the model is given,
    so the optimum stays the plain conditional mean, while the loss still looks hard where the
    ball and the paddle are."""
    motion_dilate: int = 4
    """Pixels by which the 'context' motion mask is grown (the ball moves about 2-4 px a step)."""
    region_weight: float = 0.0
    """Extra loss weight on a fixed box of the frame, `region` (e.g. a game's score): a function
    of neither the target nor the inputs, so the optimum stays the plain conditional mean; what
    changes is the share of the loss a small, rare change there (a new score digit) gets."""
    region: tuple[int, int, int, int] = (0, 0, 0, 0)
    """The box `region_weight` covers: rows [top, bottom) and columns [left, right) of the frame."""
    reward_known_prob: float = 0.5
    """A `reward_input` U-Net (UNetConfig.reward_input): the probability that a training sample is
    told its step's reward; the others are told "unknown", which is how every dream's first pass
    asks (`WorldModel.dream_step`)."""

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            self.unet = UNetConfig(**self.unet)
        if self.sigma_data <= 0 or self.sigma_offset_noise < 0:
            raise ValueError("sigma_data must be > 0 and sigma_offset_noise >= 0")
        if not 0 < self.train_sigma_min < self.train_sigma_max:
            raise ValueError("need 0 < train_sigma_min < train_sigma_max")
        if self.context_noise_scale < 0 or not 0 <= self.context_noise_clean_prob <= 1:
            raise ValueError("context_noise_scale must be >= 0 and context_noise_clean_prob in [0, 1]")
        if self.motion_weight < 0:
            raise ValueError(f"motion_weight must be >= 0, got {self.motion_weight}")
        self.region = tuple(int(v) for v in self.region)
        if self.region_weight < 0:
            raise ValueError(f"region_weight must be >= 0, got {self.region_weight}")
        box_ok = len(self.region) == 4 and 0 <= self.region[0] < self.region[1] and 0 <= self.region[2] < self.region[3]
        if len(self.region) != 4 or (self.region_weight > 0 and not box_ok):
            raise ValueError(f"region must be (top, bottom, left, right) of a non-empty box, got {self.region}")
        if not 0 <= self.reward_known_prob <= 1:
            raise ValueError(f"reward_known_prob must be in [0, 1], got {self.reward_known_prob}")
        if self.motion_source not in ("target", "context") or self.motion_dilate < 0:
            raise ValueError(
                f"motion_source must be 'target' or 'context' and motion_dilate >= 0, got "
                f"{self.motion_source!r}, {self.motion_dilate}"
            )


@dataclass
class Conditioners:
    c_in: torch.Tensor
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_noise: torch.Tensor


class Denoiser(nn.Module):
    """D(x_noisy; sigma, context) = c_skip x_noisy + c_out F(c_in x_noisy, ...)."""

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = UNet(cfg.unet)
        object.__setattr__(self, "_frozen", None)  # a plain attribute: not a submodule, not in state_dict

    def _example_inputs(self, b: int, seed: int) -> tuple[torch.Tensor, ...]:
        """Random U-Net inputs at batch `b` (images channels-last, as `_net` passes them; the reward
        for a reward-input net), to trace an inference graph and check it against the network."""
        u, g = self.cfg.unet, torch.Generator().manual_seed(seed)
        size = u.image_channels, 64, 64
        return (
            torch.randn(b, *size, generator=g).contiguous(memory_format=torch.channels_last),
            torch.randn(b, generator=g),
            torch.randn(b, u.context_frames * size[0], *size[1:], generator=g).contiguous(
                memory_format=torch.channels_last
            ),
            torch.randint(0, u.num_actions, (b, u.context_frames), generator=g),
            torch.randint(0, u.context_noise_levels, (b,), generator=g),
        ) + ((torch.randint(0, len(REWARD_INPUTS), (b,), generator=g),) if u.reward_input else ())

    def freeze(self) -> bool:
        """Trace and freeze the U-Net (TorchScript, weights folded in) for fp32 CPU inference.

        oneDNN then fuses and picks faster convolution kernels: on a 2-core AVX2 CPU one forward
        of the cpu preset at batch 1 went from 25 to 17 ms. Used only outside autograd and
        outside autocast; `train()` drops it, so a frozen copy never goes stale. Returns whether
        the frozen graph is in use (it must match the eager network at batch sizes 1 and 3).
        """
        p = next(self.net.parameters())
        if p.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            return False
        self.net.eval()
        example = self._example_inputs
        with torch.no_grad(), warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.compile, which was slower on these CPUs
            # (docs/benchmarks.md); the tracer also warns about group_norm's batch-size check.
            warnings.simplefilter("ignore", (DeprecationWarning, torch.jit.TracerWarning))
            frozen = torch.jit.freeze(torch.jit.trace(self.net, example(2, 0), check_trace=False))
            for b in (1, 3):
                x = example(b, b)
                if not torch.allclose(frozen(*x), self.net(*x), atol=1e-4, rtol=1e-3):
                    return False
        object.__setattr__(self, "_frozen", frozen)
        return True

    def freeze_bf16(self) -> bool:
        """For bf16 autocast inference on the CPU: run `unet.inference_copy` of the U-Net (weights
        stored in bf16, the adaptive norms' linears fused into one product; batch 1 through a frozen
        trace of it, `unet.BatchOneTrace`) in place of the eager network; the `torch-fused` backend
        (model/world_model/onnx_backend.py). On a 2-core AVX512-BF16 CPU a one-step frame at batch 1
        is about a third faster (docs/benchmarks.md, "The torch-fused backend"). Used only outside
        autograd and inside autocast; `train()` drops it. Returns whether it is in use: it must agree
        with the eager network under autocast at batch sizes 1 and 3 to within bf16 rounding (a
        relative RMS difference below 5 %)."""
        p = next(self.net.parameters())
        if p.device.type != "cpu":
            return False
        self.net.eval()
        fast = BatchOneTrace(inference_copy(self.net), self._example_inputs(1, 1))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for b in (1, 3):
                args = self._example_inputs(b, b)
                want, got = self.net(*args).float(), fast(*args).float()
                if (got - want).pow(2).mean().sqrt() > 0.05 * want.pow(2).mean().sqrt() + 1e-3:
                    return False
        object.__setattr__(self, "_frozen", fast)
        return True

    def use_inference_net(self, net: Callable[..., torch.Tensor] | None) -> None:
        """Run `net` in place of the U-Net at inference, as the frozen graph is run: a callable with
        `UNet.forward`'s signature (e.g. an ONNX Runtime session, model/world_model/onnx_backend.py); None goes
        back to the eager U-Net. Used only outside autograd, and outside autocast unless `net` has
        `under_autocast` true (`freeze_bf16`'s copy); `train()` drops it."""
        object.__setattr__(self, "_frozen", net)

    def train(self, mode: bool = True) -> Denoiser:
        if mode:
            object.__setattr__(self, "_frozen", None)
        return super().train(mode)

    def conditioners(self, sigma: torch.Tensor) -> Conditioners:
        """EDM preconditioning (Karras et al. 2022, Table 1), with offset noise folded into s."""
        sd = self.cfg.sigma_data
        s = (sigma**2 + self.cfg.sigma_offset_noise**2).sqrt()  # total noise std incl. offset
        c_in = 1 / (s**2 + sd**2).sqrt()
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_noise = s.log() / 4
        view = (-1, 1, 1, 1)
        return Conditioners(c_in.view(view), c_skip.view(view), c_out.view(view), c_noise.flatten())

    def _net(
        self,
        x_noisy: torch.Tensor,
        c: Conditioners,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        ctx_noise_level: torch.Tensor | None,
        reward: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # (B, L, C, H, W) -> (B, L*C, H, W)
        ctx = obs_ctx.flatten(1, 2) / self.cfg.sigma_data
        if (
            self._frozen is not None
            and ctx_noise_level is not None
            and not (self.training or torch.is_grad_enabled())
            and torch.is_autocast_enabled("cpu") == getattr(self._frozen, "under_autocast", False)
        ):
            ctx = ctx.contiguous(memory_format=torch.channels_last)
            extra = ()  # a reward-input net's graph always takes the reward (0: unknown)
            if self.cfg.unet.reward_input:
                extra = (torch.zeros_like(act_ctx[:, 0]) if reward is None else reward,)
            return self._frozen(c.c_in * x_noisy, c.c_noise, ctx, act_ctx, ctx_noise_level, *extra)
        return self.net(c.c_in * x_noisy, c.c_noise, ctx, act_ctx, ctx_noise_level, reward)

    def denoise(
        self,
        x_noisy: torch.Tensor,
        sigma: torch.Tensor,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        ctx_noise_level: torch.Tensor | None = None,
        reward: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Denoised estimate of the next frame, clamped to [-1, 1]. sigma: (B,); reward: (B,)
        `REWARD_INPUTS` indices for a reward-input net (None: unknown)."""
        c = self.conditioners(sigma)
        f = self._net(x_noisy, c, obs_ctx, act_ctx, ctx_noise_level, reward).float()
        return (c.c_skip * x_noisy + c.c_out * f).clamp(-1, 1)

    def sample_sigma(self, n: int, device: torch.device) -> torch.Tensor:
        """log sigma ~ N(P_mean, P_std^2), clipped (DIAMOND)."""
        cfg = self.cfg
        log_sigma = torch.randn(n, device=device) * cfg.train_log_sigma_std + cfg.train_log_sigma_mean
        return log_sigma.exp().clip(cfg.train_sigma_min, cfg.train_sigma_max)

    def augment_context(
        self, obs_ctx: torch.Tensor, keep_clean: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context-noise augmentation (GameNGen): per sample a level b, noise std = scale * b.

        keep_clean: (B,) bool, samples that get b = 0 (e.g. contexts already dreamed by the model).
        """
        cfg = self.cfg
        b = obs_ctx.shape[0]
        if cfg.context_noise_scale == 0:  # level 0 (clean), as the sampler conditions on it
            return obs_ctx, torch.zeros(b, dtype=torch.long, device=obs_ctx.device)
        levels = cfg.unet.context_noise_levels
        level = torch.randint(1, levels, (b,), device=obs_ctx.device)
        clean = torch.rand(b, device=obs_ctx.device) < cfg.context_noise_clean_prob
        if keep_clean is not None:
            clean = clean | keep_clean.to(clean.device)
        level = torch.where(clean, torch.zeros_like(level), level)
        std = (cfg.context_noise_scale * level.float()).view(b, 1, 1, 1, 1)
        return obs_ctx + std * torch.randn_like(obs_ctx), level

    def loss(
        self,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        next_obs: torch.Tensor,
        dreamed: torch.Tensor | None = None,
        reward: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """EDM loss: MSE(F, (x_next - c_skip x_noisy) / c_out).

        obs_ctx: (B, L, C, H, W) in [-1, 1]; act_ctx: (B, L) long; next_obs: (B, C, H, W).
        dreamed: (B,) bool, samples whose context ends in frames the model dreamed itself
        (autoregressive training); they keep their own errors instead of added noise.
        reward: (B,) `REWARD_INPUTS` indices, what a reward-input net is told of each step's reward
        (`reward_inputs` draws them; None: unknown).
        """
        cfg = self.cfg
        b, device = next_obs.shape[0], next_obs.device
        sigma = self.sample_sigma(b, device)
        offset = cfg.sigma_offset_noise * torch.randn(b, next_obs.shape[1], 1, 1, device=device)
        x_noisy = next_obs + offset + sigma.view(-1, 1, 1, 1) * torch.randn_like(next_obs)

        ctx, level = self.augment_context(obs_ctx, dreamed)
        c = self.conditioners(sigma)
        f = self._net(x_noisy, c, ctx, act_ctx, level, reward).float()
        target = (next_obs - c.c_skip * x_noisy) / c.c_out
        err = (f - target) ** 2
        denoised = (c.c_skip * x_noisy + c.c_out * f.detach()).clamp(-1, 1)
        loss, metrics = self.weighted(err, obs_ctx, next_obs, denoised)
        metrics["mse"] = err.mean().item()
        return loss, metrics

    def reward_inputs(self, reward: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor | None:
        """What a training batch is told of its steps' rewards (B,): None for a net without the input;
        for one with it, each sample's `REWARD_INPUTS` index with probability `reward_known_prob` q,
        else unknown (0).

        weight: (B,) the sampling weight each window was drawn with (`WindowSampler`, e.g.
        train.py --reward-weight). A sample drawn w times as often is told with probability
        1 - (1 - q) / w instead, so the samples left "unknown" are drawn as often as without the
        weights: the unknown dream, a dream's first pass, keeps the data's prior of points, and the
        told samples get the weighted windows' extra points (exact for w >= 1 - q)."""
        if not self.cfg.unet.reward_input:
            return None
        q = torch.full_like(reward, self.cfg.reward_known_prob, dtype=torch.float32)
        if weight is not None:
            q = (1 - (1 - q) / weight.float().clamp_min(1e-6)).clamp(0, 1)
        told = torch.rand(q.shape, device=q.device) < q
        return torch.where(told, reward_input_index(reward), torch.zeros_like(reward, dtype=torch.long))

    def distill_loss(
        self,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        noise: torch.Tensor,
        target: torch.Tensor,
        sigma_max: float,
        reward: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One-step sampler distillation (Luhman & Luhman, 2021): the frame a 1-step Euler sampler
        dreams from `noise`, D(sigma_max * noise) (model/world_model/sampler.sample_next_frame with num_steps=1),
        against `target`, the frame a teacher sampled from the same noise and context with its own
        sampler (more steps, action guidance). The student thus learns the teacher's map from noise
        to frame, randomness included, and dreams it with one network evaluation.

        obs_ctx: (B, L, C, H, W) clean, as at sampling; act_ctx: (B, L); noise, target: (B, C, H, W).
        The error is taken in the network's units at sigma_max (EDM's F target, as in `loss`) and
        weighted by `loss_weight` with the teacher's frame as the target. reward: (B,) the
        `REWARD_INPUTS` indices the teacher was told (a reward-input student is told the same)."""
        b, device = target.shape[0], target.device
        sigma = torch.full((b,), float(sigma_max), device=device)
        x = noise.float() * sigma_max
        level = torch.zeros(b, dtype=torch.long, device=device)  # clean context, as at sampling
        c = self.conditioners(sigma)
        f = self._net(x, c, obs_ctx, act_ctx, level, reward).float()
        err = (f - (target - c.c_skip * x) / c.c_out) ** 2
        denoised = (c.c_skip * x + c.c_out * f.detach()).clamp(-1, 1)
        loss, metrics = self.weighted(err, obs_ctx, target, denoised)
        metrics["mse"] = ((denoised - target) ** 2).mean().item()  # in frame units: the student's miss
        return loss, metrics

    def weighted(
        self, err: torch.Tensor, obs_ctx: torch.Tensor, next_obs: torch.Tensor, denoised: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The per-pixel error `err` (B, C, H, W) averaged with `loss_weight`'s weights (a plain mean
        without them) -> (loss, metrics of the weight)."""
        metrics: dict[str, float] = {}
        weight = self.loss_weight(obs_ctx, next_obs, denoised, metrics)
        loss = err.mean() if weight is None else (err * weight).sum() / (weight.sum() * err.shape[1])
        return loss, metrics

    def loss_weight(
        self, obs_ctx: torch.Tensor, next_obs: torch.Tensor, denoised: torch.Tensor, metrics: dict[str, float]
    ) -> torch.Tensor | None:
        """Per-pixel loss weight (B, 1, H, W), or None for a plain mean: the motion weight (from
        `motion_source`, and with `motion_on_prediction` where `denoised`, the model's estimate
        without gradient, moves away from the last context frame), plus `region_weight` on `region`. Adds
        `motion_fraction` and `motion_predicted_only` to `metrics`."""
        cfg = self.cfg
        weight: torch.Tensor | None = None
        thr = 2 * cfg.motion_threshold  # [0, 1] units -> [-1, 1] units
        last = obs_ctx[:, -1]
        if cfg.motion_weight > 0 and cfg.motion_source == "context":
            # Pixels that moved between the last two context frames, grown by motion_dilate: a
            # function of the conditioning only, so the weighted optimum is still E[x | context].
            moving = ((last - obs_ctx[:, -2]).abs() > thr).any(1, keepdim=True).float()
            k = 2 * cfg.motion_dilate + 1
            moving = F.max_pool2d(moving, k, stride=1, padding=cfg.motion_dilate)
            if cfg.motion_on_prediction:
                # ... and where the model's own estimate moves away from the last context frame
                # (no gradient through the mask). The estimate is a function of the inputs too, so
                # the optimum stays E[x | inputs]; what changes is where the loss looks hard: a
                # ball appearing where nothing moved before (the serve) is weighted wherever the
                # model considers drawing it, whether the data then shows it or not.
                predicted = ((denoised - last).abs() > thr).any(1, keepdim=True).float()
                predicted = F.max_pool2d(predicted, 3, stride=1, padding=1)
                metrics["motion_predicted_only"] = (predicted * (1 - moving)).mean().item()
                moving = torch.maximum(moving, predicted)
            weight = 1 + cfg.motion_weight * moving
            metrics["motion_fraction"] = moving.mean().item()
        elif cfg.motion_weight > 0:
            # Pixels that change between the last clean context frame and the target.
            moving = ((next_obs - last).abs() > thr).any(1, keepdim=True)
            if cfg.motion_on_prediction:
                # ... or where the denoised estimate moves (no gradient through the mask): phantom
                # objects are paid for like missed ones.
                predicted = ((denoised - last).abs() > thr).any(1, keepdim=True)
                metrics["motion_predicted_only"] = (predicted & ~moving).float().mean().item()
                moving = moving | predicted
            moving = F.max_pool2d(moving.float(), 3, stride=1, padding=1)  # dilate by one pixel
            weight = 1 + cfg.motion_weight * moving
            metrics["motion_fraction"] = moving.mean().item()
        if cfg.region_weight > 0:
            top, bottom, left, right = cfg.region
            box = torch.zeros_like(next_obs[:1, :1])
            box[..., top:bottom, left:right] = cfg.region_weight
            weight = (torch.ones_like(next_obs[:, :1]) if weight is None else weight) + box
        return weight
