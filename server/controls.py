"""The controls of the Control menu besides "human": the `Policy` hook a session calls each tick
instead of reading the keyboard (random, the scripted expert, the trained agent, and any registered).

A policy sees the last frames the player sees (real ones when the emulator runs, else dreamed
ones) and, when it sets `needs_env`, the real emulator. Register more with `register_policy` or
the server's `--policy NAME=module:factory` flag; factory(game, action_meanings) -> Policy.

Trained agents (`training/train.py --agent`) found beside the world models as
`<checkpoint_dir>/<Game>-agent.{safetensors,json}` are offered as the control "agent"
(`register_agent`); they also report what they think: `insight()` -> action probabilities and
value, sent to the page with every frame.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from games.experts import EXPERTS, make_policy
from model.agent import AgentPolicy


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


@runtime_checkable
class Insight(Protocol):
    def insight(self) -> tuple[list[float], float] | None:
        """(pi(. | x_<=t) over the minimal action set, V(x_<=t)) of the last `act`, or None."""


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
    """games.experts' scripted expert; reads object positions from the emulator's RAM."""

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


def control_modes(game: str) -> dict[str, list[str]]:
    """Per control choice for a game, the modes it can play in (one that reads the emulator has
    none in Dream mode)."""
    return {n: ["real", "side"] if needs_env(n) else ["dream", "real", "side"] for n in available(game)}


def make(name: str, game: str, meanings: list[str]) -> Policy:
    if name not in available(game) or name == "human":
        raise ValueError(f"unknown control {name!r} for {game}: expected one of {', '.join(available(game))}")
    return _REGISTRY[name].factory(game, meanings)


class TrainedAgent:
    """An actor-critic trained in the dream (model.agent.AgentPolicy), sampling its policy.

    Recurrent: `act` is called once per tick with the last frames shown (real in Real and
    Side-by-side modes, dreamed in Dream mode); the first call after `reset` burns the LSTM in.
    """

    name, needs_env = "agent", False

    def __init__(self, policy: AgentPolicy) -> None:
        self.policy = policy
        self._last: tuple[list[float], float] | None = None

    def reset(self) -> None:
        self.policy.reset()
        self._last = None

    def act(self, obs: Observation) -> int:
        action, probs, value = self.policy.act(obs.frames)
        self._last = (probs, value)
        return action

    def insight(self) -> tuple[list[float], float] | None:
        return self._last


_AGENTS: dict[str, str] = {}  # game -> agent snapshot path


def _make_agent(game: str, meanings: list[str]) -> TrainedAgent:
    return TrainedAgent(load_agent(_AGENTS[game], game, meanings))


def load_agent(path: str, game: str, meanings: list[str]) -> AgentPolicy:
    """An agent snapshot for this game and action set; CheckpointError / ValueError otherwise."""
    policy = AgentPolicy.from_snapshot(path)
    if policy.game != game or policy.action_meanings != list(meanings):
        raise ValueError(f"{path} is an agent for {policy.game} {policy.action_meanings}, not {game} {list(meanings)}")
    return policy


def forget_agents() -> None:
    """Withdraw the control "agent" (a new server registers the agents it finds)."""
    _AGENTS.clear()
    _REGISTRY.pop("agent", None)


def register_agent(game: str, path: str, meanings: list[str]) -> None:
    """Offer the agent snapshot at `path` as the control "agent" for `game` (checked by loading it)."""
    load_agent(path, game, meanings)
    _AGENTS[game] = path
    _REGISTRY["agent"] = _Entry(_make_agent, tuple(_AGENTS), False)
