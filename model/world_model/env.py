"""The world model as a gymnasium environment (DIAMOND `envs/world_model_env.py`).

`reset` starts a dream from a real 4-frame context, `step(action)` dreams the next frame with
`model.world_model.Dreams`. Reward and end are sampled from the reward/end heads, as DIAMOND
imagines: the episode ends when the sampled end says so (terminated), or after `horizon` steps
(truncated). `info["end_prob"]` is the head's P(end) for the step.

Contexts come from outside as plain arrays, so this file imports nothing from `training/`.
A context source is either

- a sequence of episodes: objects with `obs` uint8 (T+1, H, W, 3) and `actions` (T,) — such as
  `games.episode_store.Episode` — or `(obs, actions)` tuples; reset picks an episode and a
  window in it uniformly with the env's `np_random`; or
- a callable `rng -> (frames, actions)` with frames uint8 (L, H, W, 3) and actions (L-1,), the
  actions taken between consecutive frames.

`WorldModelVectorEnv` runs N dreams as ONE `Dreams` batch (one network call per denoising step for
all of them) and autoresets in gymnasium's default next-step mode.

Who it is for: whoever wants the dream behind gymnasium's interface, e.g. to train an off-the-shelf
RL agent in it. Nothing in this repository drives it: the agent's imagination (training/agent/loop.py)
and training/agent/dream_check.py step a `Dreams` batch directly (they keep the frames in [-1, 1] on the
model's device, share one generator across batches, and mask a dream that has ended instead of
restarting it), and the server batches its sessions' dreams itself (server/worker.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from model.world_model import Dreams, WorldModel, frames_to_tensor, open_action_slot
from model.world_model.sampler import SamplerConfig

FRAME_SHAPE = (64, 64, 3)

ContextFn = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
ContextSource = Sequence[Any] | ContextFn


class ContextSampler:
    """Draws real (frames (L, H, W, 3) uint8, actions (L-1,) int64) contexts from a context source."""

    def __init__(self, source: ContextSource, context_frames: int) -> None:
        self.L = context_frames
        self.fn: ContextFn | None = None
        self.episodes: list[tuple[np.ndarray, np.ndarray]] = []
        if callable(source):
            self.fn = source
            return
        for i, ep in enumerate(source):
            obs, actions = (ep.obs, ep.actions) if hasattr(ep, "obs") else ep
            obs, actions = np.asarray(obs), np.asarray(actions)
            if obs.dtype != np.uint8 or obs.shape[1:] != FRAME_SHAPE or len(obs) != len(actions) + 1:
                raise ValueError(
                    f"episode {i}: need obs uint8 (T+1, 64, 64, 3) and actions (T,), "
                    f"got obs {obs.dtype} {obs.shape}, actions {actions.shape}"
                )
            if len(obs) >= self.L:  # shorter episodes cannot give a full context
                self.episodes.append((obs, actions))
        if not self.episodes:
            raise ValueError(f"no episode has the {self.L} frames needed for a context")

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.fn is not None:
            frames, actions = self.fn(rng)
            frames, actions = np.asarray(frames), np.asarray(actions)
        else:
            obs, acts = self.episodes[int(rng.integers(len(self.episodes)))]
            t0 = int(rng.integers(self.L - 1, len(obs)))  # index of the last context frame
            frames, actions = obs[t0 - self.L + 1 : t0 + 1], acts[t0 - self.L + 1 : t0]
        if frames.dtype != np.uint8 or frames.shape != (self.L, *FRAME_SHAPE) or actions.shape != (self.L - 1,):
            raise ValueError(
                f"a context must be frames uint8 ({self.L}, 64, 64, 3) and actions ({self.L - 1},), "
                f"got {frames.dtype} {frames.shape} and {actions.shape}"
            )
        return frames.copy(), actions.astype(np.int64)


def _torch_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**62))


class WorldModelEnv(gym.Env):
    """One dream as a gymnasium env: obs uint8 (64, 64, 3), actions Discrete(num_actions)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        model: WorldModel,
        contexts: ContextSource,
        horizon: int = 1000,
        sampler: SamplerConfig | None = None,
        end_threshold: float | None = None,
        render_mode: str | None = None,
    ) -> None:
        """end_threshold: None (default) ends on the sampled end; a number ends exactly when
        P(end) > end_threshold (deterministic ends, e.g. 1.01 never ends, -0.01 always ends)."""
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}: expected None or 'rgb_array'")
        self.model = model
        self.contexts = ContextSampler(contexts, model.cfg.context_frames)
        self.horizon = horizon
        self.end_threshold = end_threshold
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.action_space = spaces.Discrete(model.num_actions)
        self.dreams = Dreams(model, sampler)
        self._t = 0
        self._last: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        frames, actions = self.contexts.draw(self.np_random)
        self.dreams.generator = torch.Generator(self.model.device).manual_seed(_torch_seed(self.np_random))
        # (L, H, W, C) -> (1, L, H, W, C)
        self.dreams.reset(torch.from_numpy(frames)[None], torch.from_numpy(actions)[None])
        self._t = 0
        self._last = frames[-1].copy()
        return self._last.copy(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in 0..{self.action_space.n - 1}, got {action!r}")
        frame, reward, end = self.dreams.step(torch.tensor([int(action)]))
        self._t += 1
        self._last = frame[0].numpy()
        end_prob = float(self.dreams.last.end_prob[0])
        terminated = bool(end[0]) if self.end_threshold is None else end_prob > self.end_threshold
        truncated = self._t >= self.horizon and not terminated
        return self._last.copy(), float(reward[0]), terminated, truncated, {"end_prob": end_prob}

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array" and self._last is not None:
            return self._last.copy()
        return None


class WorldModelVectorEnv(VectorEnv):
    """N dreams in one `Dreams` batch. Next-step autoreset: after an env ends, its next `step`
    ignores the action and returns a new real context frame with reward 0."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        model: WorldModel,
        contexts: ContextSource,
        num_envs: int,
        horizon: int = 1000,
        sampler: SamplerConfig | None = None,
        end_threshold: float | None = None,
    ) -> None:
        """end_threshold: None (default) ends on the sampled end; a number ends exactly when
        P(end) > end_threshold, as in WorldModelEnv."""
        if num_envs < 1 or horizon < 1:
            raise ValueError(f"num_envs and horizon must be >= 1, got {num_envs} and {horizon}")
        self.model = model
        self.contexts = ContextSampler(contexts, model.cfg.context_frames)
        self.num_envs = num_envs
        self.horizon = horizon
        self.end_threshold = end_threshold
        self.single_observation_space = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.single_action_space = spaces.Discrete(model.num_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.dreams = Dreams(model, sampler)
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def _draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        drawn = [self.contexts.draw(self.np_random) for _ in range(n)]
        # n x (L, H, W, C) -> (n, L, H, W, C)
        return torch.from_numpy(np.stack([f for f, _ in drawn])), torch.from_numpy(np.stack([a for _, a in drawn]))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        frames, actions = self._draw(self.num_envs)
        self.dreams.generator = torch.Generator(self.model.device).manual_seed(_torch_seed(self.np_random))
        self.dreams.reset(frames, actions)
        self._t[:] = 0
        self._autoreset[:] = False
        return frames[:, -1].numpy().copy(), {}

    def _reset_some(self, idx: np.ndarray) -> np.ndarray:
        """Give the envs `idx` fresh real contexts inside the running batch; returns their frames."""
        frames, actions = self._draw(len(idx))
        d, device = self.dreams, self.model.device
        rows = torch.from_numpy(idx).to(device)
        obs = frames_to_tensor(frames.to(device))  # (k, L, C, H, W)
        acts = actions.to(device)
        d.obs_ctx[rows] = obs.to(d.obs_ctx.dtype)
        d.act_ctx[rows] = open_action_slot(acts)
        if d.hidden is not None:
            h, c = self.model.burn_in(obs, acts)  # (layers, k, D) each
            d.hidden[0][:, rows] = h.to(d.hidden[0].dtype)
            d.hidden[1][:, rows] = c.to(d.hidden[1].dtype)
        self._t[idx] = 0
        return frames[:, -1].numpy()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} integers, got {actions.dtype} {actions.shape}")
        actions = np.where(self._autoreset, 0, actions)  # envs being reset ignore their action
        frames, reward, end = self.dreams.step(torch.from_numpy(actions.astype(np.int64)))
        end_prob = self.dreams.last.end_prob.cpu().numpy().astype(np.float32)
        obs, reward = frames.numpy(), reward.numpy().astype(np.float32)
        self._t += 1
        terminated = end.numpy().astype(bool) if self.end_threshold is None else end_prob > self.end_threshold
        truncated = (self._t >= self.horizon) & ~terminated
        idx = np.flatnonzero(self._autoreset)
        if len(idx):
            obs[idx] = self._reset_some(idx)
            reward[idx], terminated[idx], truncated[idx] = 0.0, False, False
        self._autoreset = terminated | truncated
        return obs, reward, terminated, truncated, {"end_prob": end_prob}
