"""Real Atari environments (docs/design.md §1), built on gymnasium's own AtariPreprocessing, and the
stacks of recent frames that pixel policies see."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

GAMES = ("Breakout", "Pong", "Boxing")
"""Games with a scripted expert. Any other ALE game name works for random play."""

FRAME_SIZE = 64
FRAME_STACK = 4
"""Frames a policy sees at once (the DBC pixel policies)."""


class UnknownGameError(ValueError):
    pass


def _register() -> None:
    import ale_py

    gym.register_envs(ale_py)


def available_games() -> list[str]:
    """Names accepted by make_env (ALE ROMs that ship inside ale-py)."""
    _register()
    return sorted({k.split("/")[1].split("-")[0] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")})


def check_game(game: str) -> str:
    """Return the game's canonical name or raise UnknownGameError naming the choices."""
    _register()
    if f"ALE/{game}-v5" not in gym.registry:
        known = ", ".join(GAMES)
        raise UnknownGameError(f"unknown game {game!r}: expected an ALE game name such as {known}")
    return game


def make_env(game: str, seed: int | None = None, terminal_on_life_loss: bool = False) -> gym.Env:
    """ALE/<game>-v5 with frameskip 1 and no sticky actions, then AtariPreprocessing to 64x64 RGB.

    terminal_on_life_loss: DIAMOND ends training episodes on a life loss, test episodes not.
    """
    check_game(game)
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False)
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=30,
        frame_skip=4,
        screen_size=FRAME_SIZE,
        grayscale_obs=False,
        terminal_on_life_loss=terminal_on_life_loss,
    )
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def action_meanings(env_or_game: gym.Env | str) -> list[str]:
    """Names of the minimal action set, e.g. ['NOOP', 'FIRE', 'RIGHT', 'LEFT'] for Breakout."""
    if isinstance(env_or_game, str):
        env = make_env(env_or_game)
        try:
            return list(env.unwrapped.get_action_meanings())
        finally:
            env.close()
    return list(env_or_game.unwrapped.get_action_meanings())


def ram(env: gym.Env) -> np.ndarray:
    """The emulator's 128 bytes of RAM (object positions for the scripted experts)."""
    return env.unwrapped.ale.getRAM()


def stack_frames(obs: np.ndarray, k: int = FRAME_STACK) -> np.ndarray:
    """Episode frames (T+1, H, W, 3) -> stacks (T+1, k, H, W, 3) of the last k frames (first frame repeated)."""
    idx = np.arange(len(obs))[:, None] + np.arange(-k + 1, 1)[None]  # (T+1, k)
    return obs[np.clip(idx, 0, None)]


class FrameStack:
    """The last k frames of a running episode, as the policies see them."""

    def __init__(self, k: int = FRAME_STACK) -> None:
        self.k = k
        self.frames: list[np.ndarray] = []

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.frames = [frame] * self.k
        return self.get()

    def push(self, frame: np.ndarray) -> np.ndarray:
        self.frames = [*self.frames[1:], frame]
        return self.get()

    def get(self) -> np.ndarray:
        return np.stack(self.frames)  # (k, H, W, 3)
