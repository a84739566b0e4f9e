"""Agent control: the `Policy` hook a session calls each tick instead of reading the keyboard.

A policy sees the last frames the player sees (real ones when the emulator runs, else dreamed
ones) and, when it sets `needs_env`, the real emulator. Register more with `register_policy` or
the server's `--policy NAME=module:factory` flag; factory(game, action_meanings) -> Policy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from training.experts import EXPERTS, make_policy


@dataclass
class Observation:
    frames: np.ndarray
    """uint8 (L, H, W, 3): the last L frames shown to the player, oldest first."""
    env: gym.Env | None
    """The real emulator in Real and Side-by-side modes, else None."""
    action_meanings: list[str]


@runtime_checkable
class Policy(Protocol):
    name: str
    needs_env: bool

    def reset(self) -> None:
        """Called when the session (re)starts an episode."""

    def act(self, obs: Observation) -> int:
        """Index into the game's minimal action set."""


PolicyFactory = Callable[[str, list[str]], Policy]


class RandomPolicy:
    name, needs_env = "random", False

    def __init__(self, game: str, meanings: list[str], seed: int | None = None) -> None:
        self.n = len(meanings)
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, obs: Observation) -> int:
        return int(self.rng.integers(self.n))


class ExpertPolicy:
    """training.experts' scripted expert; reads object positions from the emulator's RAM."""

    name, needs_env = "expert", True

    def __init__(self, game: str, meanings: list[str], seed: int | None = None) -> None:
        self.expert = make_policy(game, "expert")
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, obs: Observation) -> int:
        if obs.env is None:
            raise ValueError("the expert policy needs the real emulator (Real or Side-by-side mode)")
        return int(self.expert(obs.env, self.rng))


@dataclass
class _Entry:
    factory: PolicyFactory
    games: tuple[str, ...] | None  # None = every game
    needs_env: bool


_REGISTRY: dict[str, _Entry] = {
    "random": _Entry(RandomPolicy, None, False),
    "expert": _Entry(ExpertPolicy, tuple(EXPERTS), True),
}


def register_policy(
    name: str, factory: PolicyFactory, games: tuple[str, ...] | None = None, needs_env: bool = False
) -> None:
    if name == "human":
        raise ValueError("'human' is reserved for keyboard control")
    _REGISTRY[name] = _Entry(factory, games, needs_env)


def register_from_spec(name: str, spec: str) -> None:
    """spec 'package.module:factory'; the factory may carry `games` and `needs_env` attributes."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"policy spec must be 'module:factory', got {spec!r}")
    factory = getattr(importlib.import_module(module), attr)
    register_policy(name, factory, getattr(factory, "games", None), bool(getattr(factory, "needs_env", False)))


def available(game: str) -> list[str]:
    """Control choices for a game: 'human' first, then registered policies that support it."""
    return ["human"] + [n for n, e in _REGISTRY.items() if e.games is None or game in e.games]


def needs_env(name: str) -> bool:
    return name in _REGISTRY and _REGISTRY[name].needs_env


def make(name: str, game: str, meanings: list[str]) -> Policy:
    if name not in available(game) or name == "human":
        raise ValueError(f"unknown control {name!r} for {game}: expected one of {', '.join(available(game))}")
    return _REGISTRY[name].factory(game, meanings)
