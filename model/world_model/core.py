"""The world model: denoiser + reward/end model behind one batched dream interface.

`WorldModel.dream_step` is stateless and batched (the server's inference worker concatenates the
dreams of all its sessions into one call); `Dreams` keeps the state of a batch of independent
dreams for everything else (the agent's imagination, dream_check, evaluation and playability, the
policy viewer, the gymnasium env). All the randomness of a step is a `DreamNoise` drawn before it,
so a dream with its own generator replays exactly whatever batch it is computed in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from model import checkpoint
from model.device import autocast, prepare, use_bf16
from model.world_model.denoiser import Denoiser, DenoiserConfig
from model.world_model.reward_end import RewardEndConfig, RewardEndModel, class_to_reward
from model.world_model.sampler import SamplerConfig, sample_next_frame
from model.world_model.unet import UNetConfig, reward_input_index

Hidden = tuple[torch.Tensor, torch.Tensor]


class DreamStep(NamedTuple):
    """One dreamed step of a batch. reward and end are *sampled* from the heads, as DIAMOND
    imagines (`Categorical(logits).sample()`): an argmax never yields a rare +1 and biases
    imagined returns low. The probabilities are there for display and for measuring."""

    next_obs: torch.Tensor  # (B, C, H, W) in [-1, 1]
    reward: torch.Tensor  # (B,) in {-1, 0, 1}, sampled
    end: torch.Tensor  # (B,) bool, sampled
    hidden: Hidden  # the reward/end LSTM's new state
    reward_probs: torch.Tensor  # (B, 3): P(reward = -1, 0, +1)
    end_prob: torch.Tensor  # (B,): P(end)

    @property
    def expected_reward(self) -> torch.Tensor:
        """E[reward] under the head: P(+1) - P(-1)."""
        return self.reward_probs[:, 2] - self.reward_probs[:, 0]


class DreamNoise(NamedTuple):
    """The randomness of one dreamed step for a batch, drawn before the step. Row i is all that
    dream i uses, so per-row draws (one generator per server session) make each dream replay
    exactly, whichever batch it is computed in."""

    frame: torch.Tensor  # (B, C, H, W) standard normal: the sampler's initial noise / sigma_max
    uniform: torch.Tensor  # (B, 2) in [0, 1): the draws of the reward and of the end

    @classmethod
    def draw(
        cls,
        b: int,
        frame_shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> DreamNoise:
        frame = torch.randn(b, *frame_shape, generator=generator, device=device)
        return cls(frame, torch.rand(b, 2, generator=generator, device=device))

    @classmethod
    def cat(cls, noises: list[DreamNoise]) -> DreamNoise:
        """Stack the noise of several batches (e.g. 1-dream batches of sessions) row-wise."""
        return cls(torch.cat([n.frame for n in noises]), torch.cat([n.uniform for n in noises]))


def sample_classes(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: probs (B, K), u (B,) uniform in [0, 1) -> (B,) the first class k with
    u < P(class <= k), so class k comes out with probability probs[:, k]."""
    cdf = probs.cumsum(-1)
    return (u[:, None] >= cdf[:, :-1]).sum(-1)


@dataclass
class WorldModelConfig:
    game: str = "Breakout"
    action_meanings: list[str] = field(default_factory=lambda: ["NOOP", "FIRE", "RIGHT", "LEFT"])
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    reward_end: RewardEndConfig = field(default_factory=RewardEndConfig)
    preset: str = "custom"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """How this model is meant to be sampled (DIAMOND's 3 Euler steps unless a model was measured
    better otherwise, e.g. with action guidance); `WorldModel.sampler_config` applies overrides."""

    def __post_init__(self) -> None:
        if isinstance(self.sampler, dict):
            self.sampler = SamplerConfig(**self.sampler)
        if isinstance(self.denoiser, dict):
            self.denoiser = DenoiserConfig(**self.denoiser)
        if isinstance(self.reward_end, dict):
            self.reward_end = RewardEndConfig(**self.reward_end)
        n = len(self.action_meanings)
        if self.denoiser.unet.num_actions != n or self.reward_end.num_actions != n:
            raise ValueError(
                f"action count mismatch: {n} action meanings, denoiser {self.denoiser.unet.num_actions}, "
                f"reward/end {self.reward_end.num_actions}"
            )

    @property
    def context_frames(self) -> int:
        return self.denoiser.unet.context_frames

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS = ("cpu", "paper", "tiny")


def preset_config(preset: str, game: str, action_meanings: list[str]) -> WorldModelConfig:
    """'cpu' (default; ~1 s/step on 2 cores), 'paper' (DIAMOND's Atari denoiser, 4.41 M parameters:
    see model/world_model/unet.py) or 'tiny' (tests)."""
    n = len(action_meanings)
    if preset == "cpu":
        unet = UNetConfig(num_actions=n, channels=[32, 32, 64, 64])
        den = DenoiserConfig(unet=unet, context_noise_scale=0.02, context_noise_clean_prob=0.3, motion_weight=4.0)
    elif preset == "tiny":  # for tests and smoke runs: seconds, not hours
        unet = UNetConfig(num_actions=n, channels=[16, 16, 16, 16], blocks_per_level=1, cond_channels=64)
        den = DenoiserConfig(unet=unet, context_noise_scale=0.02, context_noise_clean_prob=0.3, motion_weight=4.0)
        return WorldModelConfig(
            game, list(action_meanings), den, RewardEndConfig(num_actions=n, channels=(8, 8, 8, 8), lstm_dim=32), preset
        )
    elif preset == "paper":  # DIAMOND's InnerModel exactly: no context-noise embedding, DIAMOND's layout
        unet = UNetConfig(num_actions=n, channels=[64, 64, 64, 64], context_noise_levels=1, layout="diamond")
        den = DenoiserConfig(unet=unet)
    else:
        raise ValueError(f"unknown preset {preset!r}: expected one of {', '.join(PRESETS)}")
    return WorldModelConfig(game, list(action_meanings), den, RewardEndConfig(num_actions=n), preset)


def transfer_to_game(
    cfg: WorldModelConfig, state: dict[str, torch.Tensor], game: str, action_meanings: list[str], seed: int = 0
) -> tuple[WorldModelConfig, dict[str, torch.Tensor]]:
    """Another game's world model as the start of `game`'s: the same architecture and every weight,
    except the two action embeddings, whose rows follow the action names (ALE's NOOP, FIRE, UP,
    RIGHT, ...: a row whose name both games have is kept, however the games use it) and whose other
    rows start at random with the scale of the kept ones. What belongs to the old game goes: its
    sampler settings (the preset's defaults instead) and the reward/end model's blanked box. A U-Net
    that already draws Atari frames from their context learns a new game in far fewer steps than
    one from scratch; the new game's data decides what it keeps."""
    if list(action_meanings) == list(cfg.action_meanings) and game == cfg.game:
        return cfg, dict(state)
    n, old = len(action_meanings), list(cfg.action_meanings)
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for key in ("denoiser.net.act_emb.weight", "reward_end.act_emb.weight"):
        if key not in state:
            raise ValueError(f"no {key} in the weights")
        w = state[key]
        rows = torch.randn(n, w.shape[1], generator=gen).to(w.dtype) * w.float().std().to(w.dtype)
        for i, name in enumerate(action_meanings):
            if name in old:
                rows[i] = w[old.index(name)]
        out[key] = rows
    d = cfg.to_dict()
    d["game"], d["action_meanings"] = game, list(action_meanings)
    d["denoiser"]["unet"]["num_actions"] = n
    d["reward_end"] = {**d["reward_end"], "num_actions": n, "blank": RewardEndConfig().blank}
    d["sampler"] = asdict(SamplerConfig())
    return WorldModelConfig(**d), out


def frames_to_tensor(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, C) -> float (..., C, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float() / 127.5 - 1


def tensor_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float (..., C, H, W) in [-1, 1] -> uint8 (..., H, W, C)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1)


def open_action_slot(act_prev: torch.Tensor) -> torch.Tensor:
    """(B, L-1) actions between the context frames -> (B, L) with an empty last slot for the next action."""
    return torch.cat([act_prev, torch.zeros_like(act_prev[:, :1])], dim=1)


def with_action(act_ctx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Fill the last slot of act_ctx (B, L) with the actions (B,) taken now."""
    return torch.cat([act_ctx[:, :-1], actions.view(-1, 1).to(act_ctx)], dim=1)


def slide(obs_ctx: torch.Tensor, act_ctx: torch.Tensor, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance the window by one dreamed step: (B, L, C, H, W) drops the oldest frame and appends
    next_obs (B, C, H, W); the actions shift and a new empty slot opens."""
    return torch.cat([obs_ctx[:, 1:], next_obs[:, None]], dim=1), open_action_slot(act_ctx[:, 1:])


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.denoiser = Denoiser(cfg.denoiser)
        self.reward_end = RewardEndModel(cfg.reward_end)
        self.bf16 = False
        self.backend = "torch"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_actions(self) -> int:
        return len(self.cfg.action_meanings)

    def configure(
        self,
        device: torch.device,
        precision: str = "auto",
        freeze: bool = True,
        backend: str = "torch",
        calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> WorldModel:
        """Move to device, channels_last, and pick bf16 autocast where it is fast; in fp32 on the
        CPU, also trace and freeze the U-Net for inference (Denoiser.freeze; `train()` undoes it).

        backend: 'torch', 'torch-fused' (bf16 on the CPU: the U-Net's inference copy,
        Denoiser.freeze_bf16), 'onnx-fp32', 'onnx-int8' (needs `calibration`: real frames uint8
        (N, L, H, W, C) and actions (N, L)) or 'auto' (onnx-fp32 where it is faster at batch 1 and 8
        here, else torch; torch on CUDA): model/world_model/onnx_backend.py. What runs is in `self.backend`."""
        prepare(self, device)
        self.bf16 = use_bf16(device, precision)
        self.eval()
        if freeze and not self.bf16:
            self.denoiser.freeze()
        self.backend = "torch"
        if backend != "torch":
            from model.world_model.onnx_backend import use_backend

            self.backend = use_backend(self, backend, calibration)
        return self

    def sampler_config(self, **overrides: Any) -> SamplerConfig:
        """The model's own sampler settings (`cfg.sampler`) with `overrides` (num_steps=...); an
        override of None keeps the model's own value (a command's flag left unset). Unknown names or
        invalid values raise TypeError / ValueError. `guidance_reference` may be given as an action
        name ("FIRE") or index."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        ref = overrides.get("guidance_reference")
        if isinstance(ref, str):
            names = self.cfg.action_meanings
            if ref.isdigit():
                overrides["guidance_reference"] = int(ref)
            elif ref.upper() in names:
                overrides["guidance_reference"] = names.index(ref.upper())
            else:
                raise ValueError(f"guidance reference {ref!r} is not an action of {self.cfg.game}: {', '.join(names)}")
        cfg = replace(self.cfg.sampler, **overrides)
        if cfg.guidance_reference >= self.num_actions:
            raise ValueError(
                f"guidance_reference {cfg.guidance_reference} is not an action of {self.cfg.game} "
                f"(0..{self.num_actions - 1}: {', '.join(self.cfg.action_meanings)})"
            )
        return cfg

    def check_actions(self, actions: torch.Tensor) -> None:
        if actions.numel() and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise ValueError(f"action out of range: expected 0..{self.num_actions - 1}, got {actions.tolist()}")

    @torch.no_grad()
    def burn_in(self, obs_ctx: torch.Tensor, act_prev: torch.Tensor) -> Hidden | None:
        """Run the reward/end LSTM over the context transitions. obs_ctx: (B, L, C, H, W)."""
        if obs_ctx.shape[1] < 2:
            return None
        with autocast(self.device, self.bf16):
            _, _, hidden = self.reward_end(obs_ctx[:, :-1], obs_ctx[:, 1:], act_prev[:, -(obs_ctx.shape[1] - 1) :])
        return hidden

    @torch.no_grad()
    def dream_step(
        self,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        hidden: Hidden | None,
        sampler: SamplerConfig,
        generator: torch.Generator | None = None,
        noise: DreamNoise | None = None,
    ) -> DreamStep:
        """One dreamed step for a batch.

        obs_ctx: (B, L, C, H, W) in [-1, 1]; act_ctx: (B, L) long, last = the action taken now.
        noise: the step's randomness (the sampler's initial noise, the reward and end draws); when
        None it is drawn from `generator`, so a seeded dream replays exactly.
        """
        b = obs_ctx.shape[0]
        if noise is None:
            noise = DreamNoise.draw(b, obs_ctx.shape[2:], generator, obs_ctx.device)
        elif noise.frame.shape[0] != b or noise.uniform.shape != (b, 2):
            raise ValueError(f"noise for {noise.frame.shape[0]} dreams, expected {b}")
        with autocast(self.device, self.bf16):
            next_obs = sample_next_frame(self.denoiser, obs_ctx, act_ctx, sampler, noise=noise.frame)
            before = hidden
            logits_r, logits_e, hidden = self.reward_end(obs_ctx[:, -1:], next_obs[:, None], act_ctx[:, -1:], hidden)
        p_r = logits_r[:, -1].float().softmax(-1)  # (B, 3)
        p_e = logits_e[:, -1].float().softmax(-1)  # (B, 2)
        u = noise.uniform.to(p_r.device)
        reward = class_to_reward(sample_classes(p_r, u[:, 0]))  # ~ Categorical(P(-1, 0, +1))
        end = u[:, 1] < p_e[:, 1]  # ~ Bernoulli(P(end))
        if self.cfg.denoiser.unet.reward_input and bool((reward != 0).any()):
            next_obs, hidden = self._redream_points(obs_ctx, act_ctx, before, sampler, noise.frame, next_obs, reward)
        return DreamStep(next_obs.float(), reward, end, hidden, p_r, p_e[:, 1])

    def _redream_points(
        self,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        hidden: Hidden | None,
        sampler: SamplerConfig,
        noise: torch.Tensor,
        next_obs: torch.Tensor,
        reward: torch.Tensor,
    ) -> tuple[torch.Tensor, Hidden]:
        """A reward-input model's second pass (UNetConfig.reward_input): the dreams whose sampled
        reward is not zero are dreamed again from the same noise, told that reward, so the frame
        draws the point the reward head scored (the score digits); the reward/end model's state then
        steps on the frames kept. The reward and end stay those sampled from the first pass.
        Row by row as the first pass (the network is batch-invariant): a seeded dream replays."""
        rows = (reward != 0).nonzero(as_tuple=True)[0]
        with autocast(self.device, self.bf16):
            again = sample_next_frame(
                self.denoiser,
                obs_ctx[rows],
                act_ctx[rows],
                sampler,
                noise=noise[rows],
                reward=reward_input_index(reward[rows]),
            )
            next_obs = next_obs.clone()
            next_obs[rows] = again.to(next_obs.dtype)
            _, _, hidden = self.reward_end(obs_ctx[:, -1:], next_obs[:, None], act_ctx[:, -1:], hidden)
        return next_obs, hidden

    # -- snapshots -----------------------------------------------------------------------
    def save_snapshot(self, path: str | Path, extra_meta: dict[str, Any] | None = None) -> None:
        """Inference snapshot: safetensors weights + JSON config (loads without pickle)."""
        meta = {"kind": "world_model", "config": self.cfg.to_dict(), **(extra_meta or {})}
        checkpoint.save(path, {"model": self.state_dict()}, meta)

    @classmethod
    def from_snapshot(
        cls,
        path: str | Path,
        device: torch.device | None = None,
        precision: str = "auto",
        freeze: bool = True,
        backend: str = "torch",
        calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> WorldModel:
        """Load a snapshot for inference (see configure); freeze=False when only its weights are wanted."""
        tree, meta, cfg = checkpoint.load_snapshot(path, "world_model", "a world-model", WorldModelConfig)
        model = cls(cfg)
        state = {k: v.float() if v.is_floating_point() else v for k, v in tree["model"].items()}
        checkpoint.load_state_dict_strict(model, state, str(path))
        model.meta = meta
        return model.configure(device or torch.device("cpu"), precision, freeze, backend, calibration)


class Dreams:
    """A batch of B independent dreams: reset from real frames, step with a batch of actions.

    The state between steps is public: `obs_ctx` (B, L, C, H, W) in [-1, 1], `act_ctx` (B, L) with
    an empty last slot, the reward/end LSTM's `hidden`, and `last`, the whole last `DreamStep`
    (float frame, sampled reward and end, their probabilities) on the model's device.
    """

    def __init__(
        self,
        model: WorldModel,
        sampler: SamplerConfig | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """The steps' noise comes from `generator` (shared: it advances with every step), else from
        a new generator seeded with `seed`, else from torch's global RNG."""
        if seed is not None and generator is not None:
            raise ValueError("give a seed or a generator, not both")
        self.model = model
        self.sampler = sampler or model.sampler_config()
        self.generator = generator
        if seed is not None:
            self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.obs_ctx: torch.Tensor | None = None
        self.act_ctx: torch.Tensor | None = None
        self.hidden: Hidden | None = None
        self.last: DreamStep | None = None

    @property
    def batch_size(self) -> int:
        return 0 if self.obs_ctx is None else self.obs_ctx.shape[0]

    def reset(self, frames: torch.Tensor, actions: torch.Tensor) -> None:
        """frames: uint8 (B, L, H, W, C) real context; actions: (B, L-1) actions between them."""
        L = self.model.cfg.context_frames
        if frames.ndim != 5 or frames.shape[1] != L or frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 (B, {L}, H, W, C), got {tuple(frames.shape)} {frames.dtype}")
        if actions.shape != (frames.shape[0], L - 1):
            raise ValueError(f"actions must be (B, {L - 1}), got {tuple(actions.shape)}")
        self.reset_tensors(frames_to_tensor(frames.to(self.model.device)), actions)

    def reset_tensors(self, obs_ctx: torch.Tensor, actions: torch.Tensor) -> None:
        """The same from a context already as the networks see it (a training window's `obs`):
        obs_ctx float (B, L, C, H, W) in [-1, 1], used as given; actions (B, L-1)."""
        L = self.model.cfg.context_frames
        if obs_ctx.ndim != 5 or obs_ctx.shape[1] != L or not obs_ctx.is_floating_point():
            raise ValueError(f"obs_ctx must be float (B, {L}, C, H, W), got {tuple(obs_ctx.shape)} {obs_ctx.dtype}")
        if actions.shape != (obs_ctx.shape[0], L - 1):
            raise ValueError(f"actions must be (B, {L - 1}), got {tuple(actions.shape)}")
        actions = actions.long().to(self.model.device)
        self.model.check_actions(actions)
        self.obs_ctx = obs_ctx.to(self.model.device)
        self.act_ctx = open_action_slot(actions)  # the last slot is filled by the next step's action
        self.hidden = self.model.burn_in(self.obs_ctx, actions)

    def advance(self, actions: torch.Tensor) -> DreamStep:
        """actions: (B,) -> the whole dreamed step, left on the model's device (also `self.last`);
        the context window slides by one frame."""
        if self.obs_ctx is None:
            raise RuntimeError("call reset() before step()")
        actions = torch.as_tensor(actions, device=self.model.device).long().view(-1)
        if actions.shape[0] != self.batch_size:
            raise ValueError(f"expected {self.batch_size} actions, got {actions.shape[0]}")
        self.model.check_actions(actions)
        self.act_ctx = with_action(self.act_ctx, actions)
        self.last = self.model.dream_step(self.obs_ctx, self.act_ctx, self.hidden, self.sampler, self.generator)
        self.hidden = self.last.hidden
        self.obs_ctx, self.act_ctx = slide(self.obs_ctx, self.act_ctx, self.last.next_obs)
        return self.last

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """actions: (B,) -> next frames uint8 (B, H, W, C), reward (B,) and end (B,) bool, both
        sampled from the heads, on the CPU. The whole step (with probabilities) is kept in `self.last`."""
        out = self.advance(actions)
        return tensor_to_frames(out.next_obs).cpu(), out.reward.cpu(), out.end.cpu()
