"""One player's game: the real emulator, the dream, their controls and the tick loop.

Everything that changes a session's state runs in its tick loop task, one thing at a time:
control messages are queued as commands and applied between ticks, so a reset never lands in
the middle of a dream step. The emulator runs in a thread pool, the dream in the model's
inference worker; the loop itself only moves frames around. No model maths here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from games.envs import make_env
from games.episode_store import Episode, EpisodeStore
from games.experts import WAITING
from model.checkpoint import CheckpointError
from model.world_model import (
    DreamNoise,
    WorldModel,
    frames_to_tensor,
    open_action_slot,
    slide,
    tensor_to_frames,
    with_action,
)
from model.world_model.sampler import SamplerConfig
from server import controls
from server.protocol import AgentInfo, DreamInfo, EpisodeEnd, Error, Mode, PlaySettings, RealInfo, SamplerName, State
from server.worker import InferenceWorker

log = logging.getLogger(__name__)

SAMPLER_ORDER = {"euler": 1, "heun": 2}

EARLY_INPUT = 0.5
"""How far, in frames, a key press pulls the tick that plays it forward. At 15 fps a press waits
for the next tick, up to a whole frame (67 ms) and half of one on average, before any work on it
starts; a tick that takes the press as soon as its slot is within half a frame cuts that wait to
at most 33 ms. The tick keeps its slot's place in the schedule (the one after it is due a frame
after the slot), so the frame rate is unchanged and frames stay 0.5 to 1.5 frames apart."""


def tick_due(slot: float, fresh_input: bool, frame: float) -> float:
    """When the tick of `slot` (time.monotonic) runs: at its slot, or, when a key press has come that
    no tick has played yet, up to `EARLY_INPUT` frames (of `frame` seconds) before it."""
    return slot - EARLY_INPUT * frame if fresh_input else slot


class SessionError(ValueError):
    """A request the session refuses; `code` goes to the client in an error message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class GameRuntime:
    """A loaded game: its model, the model's inference worker and what the page needs."""

    game: str
    model: WorldModel
    worker: InferenceWorker
    meanings: list[str]
    keymap: dict[str, Any]
    snapshot: Path
    agent: Path | None = None
    """The trained agent offered as the control "agent", if any."""

    @property
    def context_frames(self) -> int:
        return self.model.cfg.context_frames


@dataclass
class _RealTrack:
    """The real episode so far (for saving) and the last L real frames (for resync)."""

    obs: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    life_lost: list[bool] = field(default_factory=list)
    lives: int = 0
    done: bool = False
    waiting: bool = False  # the emulator waits for FIRE (no ball in play)
    saved: tuple[int, tuple[str, Path, int, float]] | None = None  # (steps, file) of its last save


@dataclass
class _DreamTrack:
    obs_ctx: torch.Tensor  # (1, L, C, H, W) in [-1, 1]
    act_ctx: torch.Tensor  # (1, L) long; the last slot takes the action of the next step
    hidden: tuple[torch.Tensor, torch.Tensor]  # reward/end LSTM state, (1, 1, D) each
    shown: deque  # the last L dreamed frames, uint8 (H, W, 3)
    episode_return: float = 0.0
    lives: int = 0  # the real lives at the seed, less the ends the dream drew
    waiting: bool = False  # no FIRE since the seed or the dream's last end


FrameSink = Callable[[dict[str, Any], list[np.ndarray]], None]
Sender = Callable[[Any], Awaitable[None]]


class Session:
    def __init__(
        self,
        runtime: GameRuntime,
        executor: Executor,
        emit_frame: FrameSink,
        send: Sender,
        *,
        mode: Mode = "side",
        steps: int = 3,
        sampler: SamplerName = "euler",
        fps: int = 15,
        control: str = "human",
        seed: int | None = None,
        data_dir: Path = Path("data"),
        max_episode_steps: int = 10_000,
    ) -> None:
        self.rt = runtime
        self.executor = executor
        self.emit_frame = emit_frame
        self.send = send
        self.mode: Mode = mode
        self.steps, self.sampler_name, self.fps = steps, sampler, fps
        self.control = "human"
        self.policy: controls.Policy | None = None
        self.seed = seed
        self.data_dir = Path(data_dir)
        self.max_episode_steps = max_episode_steps
        self.paused = False
        self.over = False
        self.env = None
        self.real = _RealTrack()
        self.dream: _DreamTrack | None = None
        # The dream's own randomness (sampler noise, reward and end draws), seeded from `seed` at
        # each new episode: the worker batches sessions together, so a shared generator could not
        # replay one session.
        self.dream_rng = torch.Generator()
        self.tick = 0
        self.action = 0
        self.seq = -1
        # A press that came and went between two ticks (keydown and keyup before the tick): the
        # next tick plays it once, then the held action; (seq, action) or None.
        self._latched: tuple[int, int] | None = None
        self._fresh = False  # self.action arrived after the last tick and has not been played
        self._applied = 0  # the action of the last tick
        self.last_dream_ms = 0.0
        self._tick_times: deque[float] = deque(maxlen=32)
        self._commands: asyncio.Queue[tuple[Callable[..., Awaitable[None]], tuple]] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._step_requested = False
        self._saving = False
        self.set_control(control)

    # -- settings --------------------------------------------------------------------------
    @property
    def has_real(self) -> bool:
        return self.mode in ("real", "side")

    @property
    def has_dream(self) -> bool:
        return self.mode in ("dream", "side")

    @property
    def sampler(self) -> SamplerConfig:
        return self.rt.model.sampler_config(num_steps=self.steps, order=SAMPLER_ORDER[self.sampler_name])

    def settings(self) -> PlaySettings:
        return PlaySettings(
            mode=self.mode,
            steps=self.steps,
            sampler=self.sampler_name,
            fps=self.fps,
            control=self.control,
            paused=self.paused,
            over=self.over,
        )

    def check_control(self, control: str, mode: Mode) -> None:
        if control != "human" and control not in controls.available(self.rt.game):
            choices = ", ".join(controls.available(self.rt.game))
            raise SessionError("bad_control", f"unknown control {control!r} for {self.rt.game}: expected {choices}")
        if controls.needs_env(control) and mode == "dream":
            raise SessionError("bad_control", f"control {control!r} needs the real emulator: use Real or Side mode")

    def set_control(self, control: str) -> None:
        self.check_control(control, self.mode)
        try:
            policy = None if control == "human" else controls.make(control, self.rt.game, self.rt.meanings)
        except (CheckpointError, ValueError, OSError) as e:  # e.g. the agent file went away after start
            raise SessionError("bad_control", f"control {control!r} cannot start: {e}") from None
        self.control, self.policy = control, policy

    def set_input(self, seq: int, action: int) -> None:
        if not 0 <= action < len(self.rt.meanings):
            raise SessionError("bad_action", f"action must be 0..{len(self.rt.meanings) - 1} for {self.rt.game}")
        if self._fresh and self._latched is None and self.action != self._applied:
            self._latched = (self.seq, self.action)  # replaced before any tick played it
        self.seq, self.action, self._fresh = seq, action, True
        self._wake.set()  # the tick loop looks again: the press may pull its tick forward (tick_due)

    def _next_input(self) -> tuple[int, int]:
        """(seq, action) for this tick: a latched press first, else the held action."""
        if self._latched is not None:
            (seq, action), self._latched = self._latched, None
        else:
            seq, action, self._fresh = self.seq, self.action, False
        return seq, action

    @property
    def waiting_for_serve(self) -> bool:
        """The game waits for FIRE: the emulator's word where there is one, else the dream's."""
        if self.has_real:
            return self.real.waiting
        return self.dream is not None and self.dream.waiting

    # -- commands (applied in the tick loop) ------------------------------------------------
    def command(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        self._commands.put_nowait((fn, args))
        self._wake.set()

    async def cmd_reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        await self.new_episode()
        await self._announce("reset")

    async def cmd_pause(self, paused: bool | None) -> None:
        was = self.paused
        self.paused = (not self.paused) if paused is None else paused
        if was and not self.paused:
            self._tick_times.clear()  # the measured fps starts afresh, not averaged over the pause
        await self._announce("pause")

    async def cmd_step(self) -> None:
        if not self.paused:
            self.paused = True
            await self._announce("pause")
        self._step_requested = True

    async def cmd_resync(self) -> None:
        if not self.has_dream:
            raise SessionError("no_dream", "resync needs a dream: use Dream or Side mode")
        frames = list(self.real.obs[-self.rt.context_frames :])
        actions = list(self.real.actions[-(self.rt.context_frames - 1) :])
        await self._seed_dream(frames, actions)
        if self.policy is not None and not self.has_real:  # it sees the dream, which just jumped
            self.policy.reset()
        self.tick = 0
        self._emit(frames[-1] if self.has_real else None, frames[-1], None, None, 0.0, 0.0)
        await self._announce("resync")

    async def cmd_configure(
        self, mode: Mode | None, steps: int | None, sampler: str | None, fps: int | None, control: str | None
    ) -> None:
        new_mode = mode or self.mode
        self.check_control(control or self.control, new_mode)
        if steps is not None:
            self.steps = steps
        if sampler is not None:
            self.sampler_name = sampler
        if fps is not None:
            self.fps = fps
        if control is not None and control != self.control:
            self.set_control(control)
        if new_mode != self.mode:
            self.mode = new_mode
            await self.new_episode()  # every mode starts from fresh real frames
        await self._announce("configure")

    async def _announce(self, reason: str) -> None:
        await self.send(State(settings=self.settings(), reason=reason))

    # -- episodes ----------------------------------------------------------------------------
    def _env_reset(self) -> tuple[list[np.ndarray], list[int], dict]:
        """Reset the emulator and play NOOPs: the first L real frames (thread pool). Nothing is
        pressed for the player: in Breakout the ball waits until they serve."""
        if self.env is None:
            self.env = make_env(self.rt.game)
        obs, info = self.env.reset(seed=self.seed)
        noop = self.rt.meanings.index("NOOP") if "NOOP" in self.rt.meanings else 0
        seed_actions = [noop] * (self.rt.context_frames - 1)
        frames, lives = [obs], info.get("lives", 0)
        self.real = _RealTrack(obs=[obs], lives=lives)
        for a in seed_actions:
            obs, r, term, trunc, info = self.env.step(a)
            self._record(obs, a, r, term, info)
            frames.append(obs)
        return frames, seed_actions, info

    def _record(self, obs: np.ndarray, action: int, reward: float, term: bool, info: dict) -> None:
        lives = info.get("lives", 0)
        self.real.obs.append(obs)
        self.real.actions.append(int(action))
        self.real.rewards.append(float(reward))
        self.real.terminated.append(bool(term))
        self.real.life_lost.append(lives < self.real.lives)
        self.real.lives = lives
        waiting = WAITING.get(self.rt.game)
        self.real.waiting = waiting is not None and waiting(self.env)

    async def new_episode(self) -> None:
        loop = asyncio.get_running_loop()
        frames, actions, _ = await loop.run_in_executor(self.executor, self._env_reset)
        self.over = False
        self.dream = None
        self.tick = 0
        if self.seed is None:
            self.dream_rng.seed()  # a fresh random seed
        else:
            self.dream_rng.manual_seed(self.seed)
        if self.has_dream:
            await self._seed_dream(frames, actions)
        if self.policy is not None:
            self.policy.reset()
        self._emit(frames[-1] if self.has_real else None, frames[-1] if self.has_dream else None, None, None, 0, 0)

    async def _seed_dream(self, frames: list[np.ndarray], actions: list[int]) -> None:
        device = self.rt.model.device
        obs_ctx = frames_to_tensor(torch.from_numpy(np.stack(frames))[None]).to(device)  # (1, L, C, H, W)
        act_prev = torch.tensor([actions], dtype=torch.long, device=device)  # (1, L-1)
        hidden = await self.rt.worker.burn_in(obs_ctx, act_prev)
        # The dream goes on from the real game where it was seeded: its score, lives, serve.
        self.dream = _DreamTrack(
            obs_ctx,
            open_action_slot(act_prev),
            hidden,
            deque(frames, maxlen=self.rt.context_frames),
            episode_return=float(sum(self.real.rewards)),
            lives=self.real.lives,
            waiting=self.real.waiting,
        )

    # -- the tick loop -----------------------------------------------------------------------
    async def run(self) -> None:
        next_t = time.monotonic()  # the slot of the next tick
        while True:
            while not self._commands.empty():
                fn, args = self._commands.get_nowait()
                try:
                    await fn(*args)
                except SessionError as e:
                    await self.send(Error(code=e.code, message=str(e)))
                next_t = time.monotonic()
            idle = self.over or (self.paused and not self._step_requested)
            fresh = self._fresh or self._latched is not None
            wait = None if idle else tick_due(next_t, fresh, 1 / self.fps) - time.monotonic()
            if idle or (wait > 0 and not self._step_requested):
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                continue  # a command, a key press or the time: look again
            self._step_requested = False
            await self._tick()
            next_t = max(next_t + 1 / self.fps, time.monotonic() - 1 / self.fps)

    def _choose_action(self) -> int:
        """Thread pool: the policy's action (it may read the emulator), or the held keys."""
        if self.policy is None:
            return self.action
        shown = self.real.obs[-self.rt.context_frames :] if self.has_real else list(self.dream.shown)
        obs = controls.Observation(np.stack(shown), self.env if self.has_real else None, self.rt.meanings)
        return int(self.policy.act(obs))

    def _env_step(self, action: int) -> tuple[np.ndarray, float, bool, int]:
        obs, reward, term, trunc, info = self.env.step(action)
        self._record(obs, action, reward, term, info)
        done = bool(term or trunc) or len(self.real.actions) >= self.max_episode_steps
        return obs, float(reward), done, int(info.get("lives", 0))

    async def _dream_step(self, action: int) -> tuple[np.ndarray, float, float, bool, float]:
        d = self.dream
        act_ctx = with_action(d.act_ctx, torch.tensor([action]))
        noise = DreamNoise.draw(1, d.obs_ctx.shape[2:], self.dream_rng)
        nxt, reward, end_prob, hidden, ms = await self.rt.worker.dream(
            d.obs_ctx, act_ctx, d.hidden, self.sampler, owner=id(self), noise=noise
        )
        d.obs_ctx, d.act_ctx = slide(d.obs_ctx, act_ctx, nxt)
        d.hidden = hidden
        frame = tensor_to_frames(nxt[0]).cpu().numpy()
        d.shown.append(frame)
        d.episode_return += reward
        end = bool(noise.uniform[0, 1] < end_prob)  # the model's own draw of the end (DreamStep.end)
        if end:
            d.lives = max(0, d.lives - 1)
        if WAITING.get(self.rt.game) is not None:  # a game that waits for the serve after each end
            d.waiting = end or (d.waiting and "FIRE" not in self.rt.meanings[action])
        return frame, reward, end_prob, end, ms

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        seq, action = self._next_input()
        if self.policy is not None:
            self._latched = None  # the keys are ignored while a policy plays
            action = await loop.run_in_executor(self.executor, self._choose_action)
        self._applied = action
        jobs = []
        if self.has_real:
            jobs.append(loop.run_in_executor(self.executor, self._env_step, action))
        if self.has_dream:
            jobs.append(self._dream_step(action))
        agent_info = self.policy.insight() if isinstance(self.policy, controls.Insight) else None
        results = await asyncio.gather(*jobs)
        real = results[0] if self.has_real else None
        dream = results[-1] if self.has_dream else None
        self.tick += 1
        self._tick_times.append(time.monotonic())
        real_info = dream_info = None
        if real is not None:
            obs, reward, done, lives = real
            real_info = RealInfo(reward=reward, done=done, lives=lives, episode_return=float(sum(self.real.rewards)))
        if dream is not None:
            dframe, dreward, end_prob, end, self.last_dream_ms = dream
            dream_info = DreamInfo(
                reward=dreward,
                end_prob=end_prob,
                end=end,
                lives=self.dream.lives,
                episode_return=self.dream.episode_return,
            )
        tick_ms = (time.perf_counter() - t0) * 1000
        self._emit(
            real[0] if real else None,
            dream[0] if dream else None,
            real_info,
            dream_info,
            self.last_dream_ms if dream else 0.0,
            tick_ms,
            action=action,
            seq=seq,
            agent=None if agent_info is None else AgentInfo(probs=agent_info[0], value=agent_info[1]),
        )
        if real is not None and real[2]:
            self.over = True
            await self.send(
                EpisodeEnd(
                    length=len(self.real.actions),
                    real_return=float(sum(self.real.rewards)),
                    dream_return=self.dream.episode_return if self.dream else None,
                )
            )
            await self._announce("over")

    def measured_fps(self) -> float:
        t = [x for x in self._tick_times if x > time.monotonic() - 2.0]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 and t[-1] > t[0] else 0.0

    def _emit(
        self,
        real: np.ndarray | None,
        dream: np.ndarray | None,
        real_info: RealInfo | None,
        dream_info: DreamInfo | None,
        ms: float,
        tick_ms: float,
        action: int | None = None,
        seq: int | None = None,
        agent: AgentInfo | None = None,
    ) -> None:
        names, frames = [], []
        for name, f in (("real", real), ("dream", dream)):
            if f is not None:
                names.append(name)
                frames.append(f)
        h, w = frames[0].shape[:2]
        header = {
            "tick": self.tick,
            "seq": self.seq if seq is None else seq,
            "action": self.action if action is None else action,
            "mode": self.mode,
            "width": w,
            "height": h,
            "frames": names,
            "real": real_info,
            "dream": dream_info,
            "agent": agent,
            "waiting_for_serve": self.waiting_for_serve,
            "ms": ms,
            "tick_ms": tick_ms,
            "fps": self.measured_fps(),
        }
        self.emit_frame(header, frames)

    # -- saving human play -------------------------------------------------------------------
    def check_save(self) -> None:
        if not self.has_real:
            raise SessionError("no_real_play", "only Real or Side-by-side play has real frames to save")
        if self._saving:
            raise SessionError("busy", "an episode is already being saved")

    def snapshot_episode(self) -> Episode:
        self.check_save()
        n = len(self.real.actions)
        return Episode(
            obs=np.stack(self.real.obs[: n + 1]),
            actions=np.array(self.real.actions[:n], dtype=np.int64),
            rewards=np.array(self.real.rewards[:n], dtype=np.float32),
            terminated=np.array(self.real.terminated[:n], dtype=bool),
            life_lost=np.array(self.real.life_lost[:n], dtype=bool),
            meta={
                "game": self.rt.game,
                "policy": self.control,
                "source": "browser",
                "seed": self.seed,
                "mode": self.mode,
                "action_meanings": self.rt.meanings,
            },
        )

    def save_episode(self) -> Awaitable[tuple[str, Path, int, float]]:
        """Save the real play since the last reset: (file, path, steps, return) once written.

        Checked and marked busy at once, so a second request before this one is written is
        refused (`busy`); one with nothing played since the last save gives that file again."""
        ep = self.snapshot_episode()
        self._saving = True
        return self._write_episode(ep, self.real)

    async def _write_episode(self, ep: Episode, track: _RealTrack) -> tuple[str, Path, int, float]:
        root = self.data_dir / self.rt.game
        try:
            if track.saved is None or track.saved[0] != len(ep):
                name = await asyncio.get_running_loop().run_in_executor(self.executor, EpisodeStore(root).add, ep)
                track.saved = (len(ep), (name, root / name, len(ep), float(ep.rewards.sum())))
        finally:
            self._saving = False
        return track.saved[1]

    async def close(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, env.close)
