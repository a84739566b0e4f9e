"""What L frames can know of a game's future: twins of real states, measured with no model.

A world model sees the last L frames and actions. Where the real game's future depends on RAM that
those frames do not show (a random number generator, the computer's timers), two states can draw the
same L frames and then part, and no L-frame model can follow both. This measures how often, in the
emulator alone:

1. **Starts**: in-play states after 10-200 steps of the game's expert, each with the emulator state
   L agent steps before it and the expert's L actions from there (`origins`; every L ends on the
   same start).
2. **Hidden bytes** (`hidden_bytes`): one RAM byte of the earlier state set to a value the byte
   takes elsewhere in play, the L steps replayed. Where the L frames come out pixel-equal to the
   real ones the perturbed state is a *twin*: a model that sees those frames cannot tell it from the
   real one. A byte whose twins' frames over some held move differ from the real ones is hidden
   state that matters.
3. **The ceiling** (`ceiling`): all hidden bytes set together, from one moment of other play, and
   the L steps replayed; the draws that are twins sample what the real state could be given the L
   frames (rejection sampling, with the other play as the prior). From the start and from each twin,
   each move of the control probe is held `steps` steps. A model that draws the right distribution
   ends its player within `core.CONTROL_RADIUS` of the real one about as often as a twin does: per
   start 1 - parted / (moves x (twins + 1)), the real state counted as one of its own twins, and
   the mean over starts is the best a sampling L-frame model can score on player control.

It is an estimate, not a bound: the prior is other play's joint hidden bytes (not their distribution
given what the screen shows), the hidden bytes are those that one byte at a time reveals, and a
model that picks the most likely outcome instead of sampling one could score a little higher.
The command: training/twins.py; the figures: docs/playability.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from games.experts import EXPERTS
from training.world_model.playability import core
from training.world_model.playability.boxing import BOXING_MOVES, boxing_player
from training.world_model.playability.pong import pong_player_position

TWINS_SEED = 6_000_000
"""First episode seed of the starts; the prior's play uses TWINS_SEED + 1,000,000 on. No other part
of the project uses these seeds."""
PRIOR_EPISODES, PRIOR_STEPS = 8, 400
"""Episodes and steps per episode of the expert's play whose RAM is the prior."""


CONTROL = {"Boxing": (list(BOXING_MOVES), boxing_player), "Pong": (None, pong_player_position)}
"""Per game: the control probe's held moves (None: every action) and where its player is."""


@dataclass
class Origin:
    """The emulator L agent steps before a start, and the L steps that lead there."""

    before: core.Start  # the state L steps before the start, with its window of frames and actions
    acts: list[int]  # the L actions to the start
    seen: np.ndarray  # (L, H, W, C): the frames they draw, the last one the start's
    start: core.Start


def origins(game: str, n: int, contexts: list[int], seed: int = TWINS_SEED, progress: bool = True) -> list[dict]:
    """Per episode seed seed + k (k < n): {L: Origin} for every L in contexts, all ending on one
    start after 10-200 + max(contexts) steps of the expert (seeds whose round ends first are skipped)."""
    g, expert, rng = core.RealGame(game), EXPERTS[game], np.random.default_rng(seed)
    longest, out = max(contexts), []
    for k in tqdm(range(n), desc="starts", disable=not progress, leave=False):
        g.reset(seed + k)
        before = int(rng.integers(10, 201))
        done, trail = False, []  # (Start, action taken, frame it drew) of the last `longest` steps
        for t in range(before + longest):
            if t >= before:
                trail.append((g.start("in_play", seed + k),))
            a = expert(g.env, rng)
            done = g.step(a)[2]
            if t >= before:
                trail[-1] += (a, g.frames[-1])
            if done:
                break
        if done:
            continue
        start = g.start("in_play", seed + k)
        out.append(
            {
                L: Origin(trail[-L][0], [t[1] for t in trail[-L:]], np.stack([t[2] for t in trail[-L:]]), start)
                for L in contexts
            }
        )
    return out


def prior(game: str, seed: int = TWINS_SEED + 1_000_000) -> np.ndarray:
    """(N, RAM bytes) uint8: the RAM at every step of the expert's play in other episodes."""
    g, expert, rng = core.RealGame(game), EXPERTS[game], np.random.default_rng(seed)
    rows = []
    for k in range(PRIOR_EPISODES):
        g.reset(seed + k)
        for _ in range(PRIOR_STEPS):
            done = g.step(expert(g.env, rng))[2]
            rows.append(g.env.unwrapped.ale.getRAM().copy())
            if done:
                break
    return np.stack(rows)


def replay(g: core.RealGame, o: Origin, ram: dict[int, int]) -> object | None:
    """The origin with `ram` ({byte: value}) written, its L actions replayed: the ALE state at the
    start when every frame equals the real one (a twin), else None."""
    g.restore(o.before)
    ale = g.env.unwrapped.ale
    for j, v in ram.items():
        ale.setRAM(j, int(v))
    for a, seen in zip(o.acts, o.seen):
        g.step(a)
        if not np.array_equal(g.frames[-1], seen):
            return None
    return ale.cloneState()


def futures(g: core.RealGame, start: core.Start, moves: list[int], steps: int) -> np.ndarray:
    """Each move held `steps` steps from the start -> frames (moves, steps, H, W, C)."""
    return core.real_branches(g, [start], moves, steps)[0][0]


def _moves(g: core.RealGame) -> tuple[list[int], list[str]]:
    names = CONTROL[g.game][0] or g.meanings
    return [g.idx(m) for m in names], list(names)


def hidden_bytes(
    game: str, starts: list[Origin], ram: np.ndarray, steps: int = 8, seed: int = TWINS_SEED, progress: bool = True
) -> dict[int, dict[str, int]]:
    """Per RAM byte whose twins ever part: {byte: {"twins": starts where it made one, "parted":
    those whose future frames differ from the real ones}}. One value per byte and start, drawn from
    the byte's values in `ram` (the prior) other than the real one."""
    g, rng = core.RealGame(game), np.random.default_rng(seed)
    moves, _ = _moves(g)
    found: dict[int, dict[str, int]] = {}
    for o in tqdm(starts, desc="hidden bytes", disable=not progress, leave=False):
        real = futures(g, o.start, moves, steps)
        g.env.unwrapped.ale.restoreState(o.before.state)
        now = g.env.unwrapped.ale.getRAM().copy()
        for j in range(ram.shape[1]):
            values = np.unique(ram[:, j])
            values = values[values != now[j]]
            if not len(values) or (twin := replay(g, o, {j: int(rng.choice(values))})) is None:
                continue
            parted = not np.array_equal(futures(g, replace(o.start, state=twin), moves, steps), real)
            row = found.setdefault(j, {"twins": 0, "parted": 0})
            row["twins"], row["parted"] = row["twins"] + 1, row["parted"] + parted
    return {j: row for j, row in sorted(found.items()) if row["parted"]}


def ceiling(
    game: str,
    starts: list[Origin],
    ram: np.ndarray,
    hidden: list[int],
    draws: int,
    steps: int = 8,
    seed: int = TWINS_SEED,
    progress: bool = True,
) -> dict:
    """The player-control ceiling of a model that sees the starts' L frames (module docstring):
    `draws` joint draws of the `hidden` bytes from rows of `ram` per start."""
    g, rng = core.RealGame(game), np.random.default_rng(seed)
    moves, names = _moves(g)
    locate = CONTROL[game][1]
    per_start, by_move = [], {m: [] for m in names}
    twins = pairs = parted = 0
    for o in tqdm(starts, desc="twins", disable=not progress, leave=False):
        real = [locate(f[-1]) for f in futures(g, o.start, moves, steps)]
        n_twins, apart = 0, np.zeros(len(moves))
        for _ in range(draws):
            row = ram[rng.integers(len(ram))]
            if (twin := replay(g, o, {j: int(row[j]) for j in hidden})) is None:
                continue
            n_twins += 1
            for a, f in enumerate(futures(g, replace(o.start, state=twin), moves, steps)):
                if real[a] is None:  # as the control probe: no real player, no branch
                    continue
                err = core.control_error(real[a], locate(f[-1]))
                apart[a] += err is None or err > core.CONTROL_RADIUS
        counted = [a for a in range(len(moves)) if real[a] is not None]
        if not counted:
            continue
        twins, pairs, parted = twins + n_twins, pairs + n_twins * len(counted), parted + int(apart.sum())
        per_start.append(1 - apart[counted].sum() / (len(counted) * (n_twins + 1)))
        for a in counted:
            by_move[names[a]].append(1 - apart[a] / (n_twins + 1))
    return {
        "context_frames": len(starts[0].acts) if starts else 0,
        "starts": len(per_start),
        "draws": draws * len(per_start),
        "twins": twins,
        "twin_move_pairs": pairs,
        "parted": parted,
        "starts_with_a_parting_twin": int(sum(p < 1 for p in per_start)),
        "ceiling": float(np.mean(per_start)) if per_start else None,
        "ceiling_by_move": {m: float(np.mean(v)) if v else None for m, v in by_move.items()},
        "_per_start": per_start,
    }


def context_ceilings(
    game: str,
    contexts: list[int],
    n: int,
    draws: int,
    steps: int = 8,
    seed: int = TWINS_SEED,
    progress: bool = True,
) -> dict:
    """The whole measure for one game: the hidden bytes of the shortest context, then the ceiling
    for every context on the same starts. JSON-able."""
    if game not in CONTROL:
        raise ValueError(f"twins know the player of {sorted(CONTROL)}, not {game!r}")
    if not contexts or min(contexts) < 1 or n < 1 or draws < 1 or steps < 1:
        raise ValueError(f"contexts, starts, draws and steps must be >= 1, got {contexts}, {n}, {draws}, {steps}")
    contexts = sorted(set(contexts))
    starts = origins(game, n, contexts, seed, progress)
    if not starts:
        raise ValueError(f"no start: each of the {n} episodes ended before its start (10-200 + {max(contexts)} steps)")
    ram = prior(game, seed + 1_000_000)
    hidden = hidden_bytes(game, [s[contexts[0]] for s in starts], ram, steps, seed, progress)
    res = {
        "game": game,
        "seed": seed,
        "held_steps": steps,
        "prior_rows": len(ram),
        "hidden_bytes": {str(j): row for j, row in hidden.items()},
        "hidden_from": contexts[0],
        "by_context": {},
    }
    for L in contexts:
        c = ceiling(game, [s[L] for s in starts], ram, list(hidden), draws, steps, seed, progress)
        c.pop("_per_start")
        res["by_context"][str(L)] = c
    return res
