"""Scripted expert policies that read object positions from the emulator's RAM (docs/design.md §1).

Each expert maps the env (for its RAM) to an index into the game's minimal action set. They
give data that covers the interesting states (random Breakout almost never hits the ball) and
demonstrations for imitation learning.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from games.envs import action_meanings, ram

Policy = Callable[[gym.Env, np.random.Generator], int]


def _index(env: gym.Env, name: str) -> int:
    return action_meanings(env).index(name)


def _track(env: gym.Env, ball: int, paddle: int, increase: str, decrease: str, dead_zone: int) -> int:
    """Move the paddle along one axis towards the ball: `increase` raises the paddle's RAM
    position, `decrease` lowers it; NOOP within the dead zone."""
    delta = ball - paddle
    if delta > dead_zone:
        return _index(env, increase)
    if delta < -dead_zone:
        return _index(env, decrease)
    return _index(env, "NOOP")


def breakout_expert(env: gym.Env, rng: np.random.Generator, offset: int = 8, dead_zone: int = 3) -> int:
    """Serve when the ball is out of play, else centre the paddle under the ball.

    RAM: 72 = paddle x (left edge), 99 = ball x, 101 = ball y (0 when out of play).
    """
    r = ram(env)
    if int(r[101]) == 0:
        return _index(env, "FIRE")
    return _track(env, int(r[99]), int(r[72]) + offset, "RIGHT", "LEFT", dead_zone)


def pong_expert(env: gym.Env, rng: np.random.Generator, offset: int = 4, dead_zone: int = 3) -> int:
    """Track the ball's height with the right paddle. RAM: 51 = paddle y, 54 = ball y (0 = none).

    In Pong's minimal set RIGHT moves the paddle up and LEFT moves it down (its RAM y grows
    downwards).
    """
    r = ram(env)
    if int(r[54]) == 0:
        return _index(env, "FIRE")
    return _track(env, int(r[54]), int(r[51]) + offset, "LEFT", "RIGHT", dead_zone)


def boxing_expert(
    env: gym.Env,
    rng: np.random.Generator,
    reach: int = 16,
    offset: int = 18,
    lane_dx: int = 22,
    dead_zone: int = 3,
) -> int:
    """Close in along the opponent's row, then step off it by `offset` and punch (about 5 points
    scored per point conceded where random play breaks even; docs/new-game.md §2).

    RAM (x 30..109 grows rightwards, y 1..89 downwards; checked by moving the boxers, and by
    pinning them with setRAM and punching): 32 / 34 = player x / y, 33 / 35 = opponent x / y,
    55 / 57 = extension of the player's upper / lower arm (0 = retracted, out to 72).

    What the emulator showed (boxers pinned with setRAM, FIRE pressed): a punch lands only when
    the two y differ by 12..24 (the glove meets the head above or below the body's middle), for
    2 points within 16 in x, 1 point within 24. With the y closer than 12 neither boxer can land
    one: a safe lane. A punch starts only from retracted arms and a fresh press of FIRE (held
    FIRE keeps the arm out and the boxer still); a missed punch takes 45 frames to retract.

    So: while farther than `lane_dx` in x, or while the arms are out inside the lane, move to
    the opponent's y, `reach` away in x on the side the player is on. Within `lane_dx` with the
    arms in, move to `offset` above or below the opponent (the player's side of it; the other
    one at the ropes), and FIRE (combined with the move) when the y differ by 12..24 and the x
    by at most 24. Reads RAM only and uses no randomness.
    """
    r = ram(env)
    px, py, ox, oy = int(r[32]), int(r[34]), int(r[33]), int(r[35])
    dx, dy = ox - px, oy - py
    arms_in = int(r[55]) == 0 and int(r[57]) == 0
    ty = oy
    if abs(dx) <= lane_dx and (arms_in or abs(dy) >= 12):
        above = dy >= 0  # the player's head is above the opponent's
        ty = oy - offset if above else oy + offset
        if not 1 <= ty <= 87:
            ty = oy + offset if above else oy - offset
    tx = ox - reach if dx >= 0 else ox + reach
    ey, ex = ty - py, tx - px
    name = "DOWN" if ey > dead_zone else "UP" if ey < -dead_zone else ""
    name += "RIGHT" if ex > dead_zone else "LEFT" if ex < -dead_zone else ""
    if arms_in and 12 <= abs(dy) <= 24 and abs(dx) <= 24:
        name += "FIRE"
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


def breakout_waiting(env: gym.Env) -> bool:
    """True while Breakout waits for FIRE: no ball in play (RAM 101 = ball y is 0)."""
    return int(ram(env)[101]) == 0


WAITING: dict[str, Callable[[gym.Env], bool]] = {"Breakout": breakout_waiting}
"""Per game: whether the game waits for the player to serve (no ball in play)."""


def rule_showing(
    expert: Policy,
    waiting: Callable[[gym.Env], bool] | None,
    epsilon: float,
    max_idle: int = 80,
    miss_prob: float = 0.25,
) -> Policy:
    """Play that shows the rules a world model must not invent (the phantom serve, life loss).

    - While the game waits for a serve, idle for U{0..max_idle} steps with runs of the actions
      other than FIRE (so the data shows an empty field staying empty under NOOP/LEFT/RIGHT),
      then FIRE.
    - Each served ball is, with probability miss_prob, missed on purpose (the paddle runs away
      from the ball until the life is lost); otherwise epsilon-mixed expert play.
    Games without a `waiting` test get idle runs at random instead (1 % of steps start one).
    """
    mixed = epsilon_mixed(expert, epsilon)
    state = {"idle": None, "run": 0, "action": 0, "miss": False, "was_waiting": True}

    def idle_action(env: gym.Env, rng: np.random.Generator) -> int:
        names = action_meanings(env)
        if state["run"] <= 0:
            choices = [i for i, n in enumerate(names) if "FIRE" not in n]
            state["action"], state["run"] = int(rng.choice(choices)), int(rng.integers(1, 9))
        state["run"] -= 1
        return state["action"]

    def policy(env: gym.Env, rng: np.random.Generator) -> int:
        is_waiting = waiting(env) if waiting is not None else state["idle"] is not None
        if waiting is None and state["idle"] is None and rng.random() < 0.01:
            state["idle"], is_waiting = int(rng.integers(0, max_idle + 1)), True
        if is_waiting:
            if state["idle"] is None:
                state["idle"] = int(rng.integers(0, max_idle + 1))
            if state["idle"] > 0:
                state["idle"] -= 1
                return idle_action(env, rng)
            state["idle"] = None
            state["miss"] = bool(rng.random() < miss_prob)
            return _index(env, "FIRE") if "FIRE" in action_meanings(env) else idle_action(env, rng)
        if state["miss"]:  # run away from the ball: the expert's move, mirrored
            a = action_meanings(env)[expert(env, rng)]
            mirror = {"LEFT": "RIGHT", "RIGHT": "LEFT", "UP": "DOWN", "DOWN": "UP"}
            name = "".join(mirror.get(part, part) for part in re.findall("UP|DOWN|LEFT|RIGHT|FIRE|NOOP", a))
            if name == "NOOP" or name not in action_meanings(env):  # lined up: step aside
                return idle_action(env, rng)
            return _index(env, name)
        return mixed(env, rng)

    return policy


def make_policy(game: str, kind: str, epsilon: float = 0.25) -> Policy:
    """kind: 'random', 'expert', 'mixed' (epsilon-mixed expert) or 'rules' (rule_showing)."""
    if kind == "random":
        return random_policy
    if game not in EXPERTS:
        raise ValueError(
            f"no scripted expert for {game!r} (experts exist for {', '.join(EXPERTS)}): "
            "collect with the 'random' policy"
        )
    if kind == "expert":
        return EXPERTS[game]
    if kind == "mixed":
        return epsilon_mixed(EXPERTS[game], epsilon)
    if kind == "rules":
        return rule_showing(EXPERTS[game], WAITING.get(game), epsilon)
    raise ValueError(f"unknown policy kind {kind!r}: expected one of {', '.join(POLICY_KINDS)}")


POLICY_KINDS = ("random", "expert", "mixed", "rules")
