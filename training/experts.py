"""Scripted expert policies that read object positions from the emulator's RAM (DESIGN.md §1).

Each expert maps the env (for its RAM) to an index into the game's minimal action set. They
give data that covers the interesting states (random Breakout almost never hits the ball) and
demonstrations for imitation learning.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from training.envs import action_meanings, ram

Policy = Callable[[gym.Env, np.random.Generator], int]


def _index(env: gym.Env, name: str) -> int:
    return action_meanings(env).index(name)


def breakout_expert(env: gym.Env, rng: np.random.Generator, offset: int = 8, dead_zone: int = 3) -> int:
    """Serve when the ball is out of play, else centre the paddle under the ball.

    RAM: 72 = paddle x (left edge), 99 = ball x, 101 = ball y (0 when out of play).
    """
    r = ram(env)
    paddle_x, ball_x, ball_y = int(r[72]), int(r[99]), int(r[101])
    if ball_y == 0:
        return _index(env, "FIRE")
    delta = ball_x - (paddle_x + offset)
    if delta > dead_zone:
        return _index(env, "RIGHT")
    if delta < -dead_zone:
        return _index(env, "LEFT")
    return _index(env, "NOOP")


def pong_expert(env: gym.Env, rng: np.random.Generator, offset: int = 4, dead_zone: int = 3) -> int:
    """Track the ball's height with the right paddle. RAM: 51 = paddle y, 54 = ball y (0 = none).

    In Pong's minimal set RIGHT moves the paddle up and LEFT moves it down.
    """
    r = ram(env)
    paddle_y, ball_y = int(r[51]), int(r[54])
    if ball_y == 0:
        return _index(env, "FIRE")
    delta = ball_y - (paddle_y + offset)
    if delta > dead_zone:
        return _index(env, "LEFT")
    if delta < -dead_zone:
        return _index(env, "RIGHT")
    return _index(env, "NOOP")


def boxing_expert(env: gym.Env, rng: np.random.Generator) -> int:
    """Line up with the opponent and punch. RAM: 32/34 = player x/y, 33/35 = opponent x/y."""
    r = ram(env)
    dx, dy = int(r[33]) - int(r[32]), int(r[35]) - int(r[34])
    vert = "DOWN" if dy > 2 else "UP" if dy < -2 else ""
    horiz = ""
    if abs(dx) > 28:
        horiz = "RIGHT" if dx > 0 else "LEFT"
    elif abs(dx) < 20:
        horiz = "LEFT" if dx > 0 else "RIGHT"  # back off a little to get in punching range
    name = vert + horiz
    if not vert and abs(dx) <= 32:
        name = (name + "FIRE") if name else "FIRE"
    return _index(env, name or "NOOP")


EXPERTS: dict[str, Policy] = {"Breakout": breakout_expert, "Pong": pong_expert, "Boxing": boxing_expert}


def random_policy(env: gym.Env, rng: np.random.Generator) -> int:
    return int(rng.integers(env.action_space.n))


def epsilon_mixed(expert: Policy, epsilon: float, repeat: int = 4) -> Policy:
    """With probability epsilon start a run of 1..`repeat` random actions, else follow the expert.

    Runs of random actions (rather than single ones) make the paddle travel both ways, so the
    data covers moves the expert would not make.
    """
    state = {"left": 0, "action": 0}

    def policy(env: gym.Env, rng: np.random.Generator) -> int:
        if state["left"] > 0:
            state["left"] -= 1
            return state["action"]
        if rng.random() < epsilon:
            state["action"] = int(rng.integers(env.action_space.n))
            state["left"] = int(rng.integers(repeat))
            return state["action"]
        return expert(env, rng)

    return policy


def make_policy(game: str, kind: str, epsilon: float = 0.25) -> Policy:
    """kind: 'random', 'expert' or 'mixed' (epsilon-mixed expert)."""
    if kind == "random":
        return random_policy
    if game not in EXPERTS:
        raise ValueError(f"no scripted expert for {game!r}; experts exist for {', '.join(EXPERTS)}")
    if kind == "expert":
        return EXPERTS[game]
    if kind == "mixed":
        return epsilon_mixed(EXPERTS[game], epsilon)
    raise ValueError(f"unknown policy kind {kind!r}: expected random, expert or mixed")
