"""Playability: does the dream obey the player and the game's rules?

    python training/playability.py --checkpoint checkpoints/Breakout --starts 32 \\
        --out docs/models/Breakout-playability.json --image docs/models/Breakout-playability.png

Matched-action fidelity on held-out play can be excellent while a person cannot play inside the
dream: the data rarely shows what happens when the player does something unusual, so the metric
never asks. This suite asks. It puts the real emulator in a state (a fresh serve, a lost life,
mid-game), clones it (ALE `cloneState`), and gives the real game and the dream, started from the
same 4 real frames, the same counterfactual actions: idle without FIRE, serve, play, miss on
purpose, hold each action. Each probe counts one kind of rule violation.

Breakout probes (each row of `PROBES` says what its figure is and which way is better):

- phantom_serve: from a game that waits for FIRE (after reset or a lost life), `idle_steps`
  steps of NOOP/LEFT/RIGHT and never FIRE: share of dreams that draw a ball (the real game never
  does);
- serve: FIRE, then `SERVE_STEPS` of play: share of dreams whose first ball comes within 2 steps
  of the real one;
- multi_ball: over frames where the real field has one ball, share of dreamed frames with 2+
  separate ball blobs;
- ball_where_none: over frames where the real field has no ball, share of dreamed frames that
  draw one (steps 1-15 and 16-50 reported apart);
- life_loss recall: real lost lives whose dream fires its end head within 3 steps; phantom life
  loss: share of the played rollouts where the dream loses a life its own ball did not lose (no
  exit of the dream's ball through the bottom of the field in the `EXIT_WINDOW` steps before; a
  broken rule); reported beside it, not gated: `life_loss_without_real`, rollouts where the dream
  loses a life and the real game does not, which also counts the dream's ball falling past a paddle
  that the real actions steer after the real ball (a trajectory that left the real one, the rules
  kept);
- score: reward events of the dream (reward head) vs the real game, +-1 step: precision, recall;
  recall where the dream's ball is with the real one (`score_recall_ball_with_real`, gated: the
  plain recall is reported, as the trajectories part within 15-20 steps); phantom score: share of
  rollouts with a dreamed point and no real one;
- branching: from mid-game states each action held for `branch_steps` steps, real and dream:
  PSNR per branch, and the share of action pairs where the dream's branches differ exactly when
  the real ones do;
- fidelity over the played rollouts: ball recall per dreamed step, PSNR and motion PSNR at
  h = 1, 5, 15, 50 beside repeat-last.

The played rollouts (life loss, score, ball recall, fidelity) start from the waiting states served
for real (`served_starts`: FIRE and 3 steps, so the context shows the ball in flight) and from the
mid-game states. Where a serve puts the ball is hidden from the frames (Breakout picks one of four
columns by its frame counter), so a rollout started from the wait would compare the dream's ball
with a coin the dream cannot see.

Start states come from scripted play on episode seeds from `--seed` on (default 2,000,000: no
collection, training or selection in this project uses them). The dream is anything with the
`Dreamer` interface: the world model (`ModelDreamer`), or in tests the real emulator itself
(`OracleDreamer`, which must score perfectly) and deliberately broken dreams that each probe
must catch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from games.envs import action_meanings, make_env
from games.experts import EXPERTS, WAITING
from training.measures import BALL_FIELD, BALL_RADIUS, ball_position, ball_recall, motion_mask, psnr

CONTEXT = 4
"""Frames of play before a start: 3 steps after a reset, a lost life or a serve."""
HISTORY = 16
"""Frames each start keeps, for models that see more than 4 (`context_frames`); a start with
fewer behind it (just after a reset) repeats its first frame, with NOOPs between, as the training
windows do at an episode's start. A dream takes the last `context_frames` of them."""
SEED = 2_000_000
"""First episode seed of the suite's start states; no other part of the project uses seeds here."""
SUITE = 3
"""Version of the probes' definitions: figures of different versions are not compared (ship.py
measures the shipped model again). 2: the played rollouts start from a real serve. 3: a phantom
life loss is one the dream's own ball did not lose, and score recall is gated where the dream's ball
is with the real one (the open-loop figures that also count trajectories parting are reported)."""
EXIT_WINDOW = 12
"""Steps after its ball leaves the field through the bottom within which a lost life is the rule
(Breakout pauses 9 steps before the counter drops; `training.data.LIFE_LOSS_PAUSE`)."""
SCORE_LOOKBACK = 8
"""Steps before a real point searched for the last frame with the real ball in the open field (the
ball hits bricks above it), where the dream's ball must be within `BALL_RADIUS` of it."""
SERVE_STEPS = 6
"""Steps dreamed after FIRE from a waiting start for the serve probe."""


# -- what the dream is ---------------------------------------------------------------------------
class Dreamer(Protocol):
    """A batch of dreams. reset from real context frames (and the emulator states they came from,
    which only an oracle may use); step with one action per dream."""

    def reset(self, frames: np.ndarray, actions: np.ndarray, states: list) -> None:
        """frames uint8 (B, n, H, W, C), the last one the start's (n = HISTORY: a dream takes as many
        as it sees); actions (B, n - 1) between them; states: ALE states."""

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> next frames uint8 (B, H, W, C), reward (B,) in {-1, 0, 1}, end (B,) bool."""


def model_context(model, frames: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The last `context_frames` of a start's frames (B, n, ...) and the actions between them."""
    L = model.cfg.context_frames
    if frames.shape[1] < L:
        raise ValueError(f"the model sees {L} frames, the starts hold {frames.shape[1]}")
    return frames[:, -L:], actions[:, actions.shape[1] - (L - 1) :]


class ModelDreamer:
    """The world model through `Dreams`. Reward and end are the heads' most likely class (the
    probes ask what the model predicts, not what one sample of it says)."""

    def __init__(self, model, steps: int = 3, seed: int = 0, **sampler: float) -> None:
        """The model's own sampler (`WorldModel.sampler_config`) with `steps` Euler steps and any
        other `sampler` settings (action_guidance=...)."""
        self.model, self.sampler, self.seed = model, model.sampler_config(num_steps=steps, **sampler), seed

    def reset(self, frames: np.ndarray, actions: np.ndarray, states: list) -> None:
        from model.world_model import Dreams

        frames, actions = model_context(self.model, frames, actions)
        self.dreams = Dreams(self.model, self.sampler, seed=self.seed)
        self.dreams.reset(torch.from_numpy(frames), torch.from_numpy(actions))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frames, _, _ = self.dreams.step(torch.from_numpy(np.asarray(actions)))
        probs, end_prob = self.dreams.last.reward_probs.cpu(), self.dreams.last.end_prob.cpu()
        return frames.numpy(), probs.argmax(-1).numpy() - 1, end_prob.numpy() > 0.5


class OracleDreamer:
    """The real emulator restored to each start's state: the dream a perfect world model would
    give. `action_map` permutes the actions it is given (a dream that plays the wrong branch).
    One emulator plays every dream in turn (restore its state, step, clone it again): an agent step
    keeps no state outside ALE's, and loading a ROM costs more than a thousand steps."""

    def __init__(self, game: str, action_map: dict[int, int] | None = None) -> None:
        self.game, self.action_map = game, action_map or {}
        self.env = None

    def reset(self, frames: np.ndarray, actions: np.ndarray, states: list) -> None:
        if self.env is None:
            self.env = make_env(self.game)
            self.env.reset()  # the wrappers want one reset before restoreState + step
        ale = self.env.unwrapped.ale
        self.states, self.lives = list(states), []
        for s in states:
            ale.restoreState(s)
            self.lives.append(ale.lives())

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ale, out, rew, end = self.env.unwrapped.ale, [], [], []
        for i, s in enumerate(self.states):
            ale.restoreState(s)
            o, r, term, _, info = self.env.step(self.action_map.get(int(actions[i]), int(actions[i])))
            self.states[i] = ale.cloneState()
            out.append(o)
            rew.append(np.sign(r))
            end.append(term or info["lives"] < self.lives[i])
            self.lives[i] = info["lives"]
        return np.stack(out), np.array(rew), np.array(end)


# -- the real side: start states and rollouts --------------------------------------------------
@dataclass
class Start:
    """A real emulator state with the 4 frames and 3 actions that led to it."""

    state: object
    frames: np.ndarray  # (4, H, W, C)
    actions: np.ndarray  # (3,)
    lives: int
    kind: str  # "reset", "life_lost" or "in_play"
    seed: int


@dataclass
class Rollout:
    """Real frames, rewards and life losses after a start under a fixed action sequence."""

    actions: np.ndarray  # (T,)
    frames: np.ndarray  # (T, H, W, C)
    rewards: np.ndarray  # (T,)
    lost: np.ndarray  # (T,) bool: a life lost (or game over) at this step


class RealGame:
    """One emulator with a window of its last 4 frames and 3 actions."""

    def __init__(self, game: str) -> None:
        self.game, self.env = game, make_env(game)
        self.meanings = action_meanings(self.env)
        self.reset(0)  # the wrappers want one reset before restoreState + step

    def reset(self, seed: int) -> None:
        obs, info = self.env.reset(seed=seed)
        self.frames, self.actions, self.lives = [obs], [], info["lives"]

    def step(self, a: int) -> tuple[float, bool, bool]:
        obs, r, term, trunc, info = self.env.step(int(a))
        lost = term or info["lives"] < self.lives
        self.lives = info["lives"]
        self.frames, self.actions = (self.frames + [obs])[-HISTORY:], (self.actions + [int(a)])[-(HISTORY - 1) :]
        return r, lost, term or trunc

    def start(self, kind: str, seed: int) -> Start:
        frames = [self.frames[0]] * (HISTORY - len(self.frames)) + self.frames
        actions = [0] * (HISTORY - 1 - len(self.actions)) + self.actions  # 0: NOOP in ALE's minimal sets
        return Start(
            self.env.unwrapped.ale.cloneState(),
            np.stack(frames),
            np.array(actions),
            self.lives,
            kind,
            seed,
        )

    def restore(self, s: Start) -> None:
        self.env.unwrapped.ale.restoreState(s.state)
        self.frames, self.actions, self.lives = list(s.frames), list(s.actions), s.lives

    def rollout(self, s: Start, policy: Callable[[RealGame, int], int]) -> Rollout:
        """Play from s with policy(game, t) until its T steps are done (it returns -1 to stop)."""
        self.restore(s)
        acts, frames, rews, lost = [], [], [], []
        t = 0
        while (a := policy(self, t)) >= 0:
            r, lo, done = self.step(a)
            acts.append(a), frames.append(self.frames[-1]), rews.append(r), lost.append(lo)
            t += 1
            if done:  # pad a finished game with its last frame, as a dream would have to hold it
                break
        return Rollout(np.array(acts), np.stack(frames), np.array(rews), np.array(lost))

    def idx(self, name: str) -> int:
        return self.meanings.index(name)


def idle_actions(meanings: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """n actions in runs of 1-8 of the actions without FIRE (NOOP, LEFT, RIGHT, ...)."""
    choices = [i for i, m in enumerate(meanings) if "FIRE" not in m]
    out: list[int] = []
    while len(out) < n:
        out += [int(rng.choice(choices))] * int(rng.integers(1, 9))
    return np.array(out[:n])


def make_starts(game: str, n: int, seed: int = SEED, progress: bool = True) -> dict[str, list[Start]]:
    """n waiting starts (half after a reset, half after a lost life) and n in-play starts, each
    from its own episode seed seed, seed+1, ... Waiting: the game has no ball and waits for FIRE;
    in play: served and played by the scripted expert for 5-150 steps."""
    g, waiting, expert = RealGame(game), WAITING[game], EXPERTS[game]
    out: dict[str, list[Start]] = {"waiting": [], "in_play": []}
    rng = np.random.default_rng(seed)
    for k in tqdm(range(n), desc="start states", disable=not progress, leave=False):
        sd = seed + k
        g.reset(sd)
        for _ in range(CONTEXT - 1):
            g.step(g.idx("NOOP"))
        if k % 2 == 1:  # serve, then run from the ball until the life is lost
            g.step(g.idx("FIRE"))
            for _ in range(400):
                a = expert(g.env, rng)
                mirror = {"LEFT": "RIGHT", "RIGHT": "LEFT"}.get(g.meanings[a], "NOOP")
                if g.step(g.idx(mirror))[1]:
                    break
            for _ in range(CONTEXT - 1):  # context: the empty field after the loss
                g.step(g.idx("NOOP"))
        if waiting(g.env):
            out["waiting"].append(g.start("reset" if k % 2 == 0 else "life_lost", sd))
        g.reset(sd)
        for _ in range(CONTEXT - 1):
            g.step(g.idx("NOOP"))
        g.step(g.idx("FIRE"))
        for _ in range(int(rng.integers(5, 151))):
            if g.step(expert(g.env, rng))[2]:  # game over
                break
        if not waiting(g.env):
            out["in_play"].append(g.start("in_play", sd))
    return out


def served_starts(g: RealGame, waiting: list[Start], rng: np.random.Generator) -> list[Start]:
    """Each waiting start served for real: FIRE, then the expert for 3 steps, so the 4 context
    frames show the ball in flight. The played rollouts start here, not from the wait: where the
    serve puts the ball is the game's hidden choice (Breakout: one of four columns, by its frame
    counter), so a dream that serves correctly still draws its ball elsewhere 3 times in 4, and
    everything compared after it (ball recall, life losses, points) would measure that coin
    instead of the dream's physics. The serve probe itself runs from the wait."""
    expert, fire, out = EXPERTS[g.game], g.idx("FIRE"), []
    for s in waiting:
        g.restore(s)
        done = g.step(fire)[2]
        for _ in range(CONTEXT - 1):
            done = done or g.step(expert(g.env, rng))[2]
        if not done and all(ball_position(f, g.game) is not None for f in g.frames[-CONTEXT:]):
            out.append(g.start("served", s.seed))
    return out


# -- measuring frames ----------------------------------------------------------------------------
def ball_blobs(frame: np.ndarray, game: str) -> int:
    """Separate bright blobs in the game's open field (8-connected after a 1-pixel dilation, so
    a ball drawn in two touching halves counts once)."""
    rows, cols = BALL_FIELD[game]
    return count_blobs(frame[rows, cols].max(-1) > 50)


def count_blobs(lit: np.ndarray, grow: int = 1) -> int:
    """Separate blobs of a boolean mask (H, W): 8-connected after a `grow`-pixel dilation."""
    if not lit.any():
        return 0
    grown = lit.copy()
    for _ in range(grow):
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    seen = np.zeros_like(grown)
    count = 0
    for y, x in zip(*np.nonzero(grown)):
        if seen[y, x]:
            continue
        count += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < grown.shape[0] and 0 <= nx < grown.shape[1] and grown[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
    return count


def frames_differ(a: np.ndarray, b: np.ndarray, threshold: int = 24, min_pixels: int = 3) -> bool:
    """Whether two frames differ visibly: >= min_pixels pixels off by more than threshold/255."""
    return int((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1) > threshold).sum()) >= min_pixels


def dream_batch(
    dreamer: Dreamer, starts: list[Start], actions: np.ndarray, desc: str = "", progress: bool = False
) -> tuple[np.ndarray, ...]:
    """Dream every start under its own action row -> frames (B, T, H, W, C), rewards, ends (B, T)."""
    dreamer.reset(
        np.stack([s.frames for s in starts]), np.stack([s.actions for s in starts]), [s.state for s in starts]
    )
    frames, rews, ends = [], [], []
    for t in tqdm(range(actions.shape[1]), desc=f"dream {desc} x{len(starts)}", disable=not progress, leave=False):
        f, r, e = dreamer.step(actions[:, t])
        frames.append(f), rews.append(r), ends.append(e)
    return np.stack(frames, 1), np.stack(rews, 1), np.stack(ends, 1)


def share(hits: int, n: int) -> float | None:
    return hits / n if n else None


def match_events(real: list[np.ndarray], dream: list[np.ndarray], window: int = 1) -> dict:
    """Events (bool per step) of each rollout, real and dreamed, matched within `window` steps:
    precision (dreamed events with a real one near), recall (real events with a dreamed one near),
    phantom (share of the rollouts without a real event that have a dreamed one), and the counts."""
    tp_p = n_dream = tp_r = n_real = ph = n_noreal = 0
    for r, d in zip(real, dream):
        real_ev, dream_ev = np.nonzero(r)[0], np.nonzero(d)[0]
        n_dream += len(dream_ev)
        tp_p += sum(bool(np.any(np.abs(real_ev - t) <= window)) for t in dream_ev)
        n_real += len(real_ev)
        tp_r += sum(bool(np.any(np.abs(dream_ev - t) <= window)) for t in real_ev)
        if not len(real_ev):
            n_noreal += 1
            ph += bool(len(dream_ev))
    return {
        "precision": share(tp_p, n_dream),
        "dream_events": n_dream,
        "recall": share(tp_r, n_real),
        "real_events": n_real,
        "phantom": share(ph, n_noreal),
        "rollouts_without": n_noreal,
    }


@dataclass
class Probe:
    key: str
    label: str
    higher_is_better: bool
    goal: float | None = None
    gated: bool = True
    """Whether ship.py's gate compares it (a reported figure explains a gated one)."""


PROBES = [
    Probe("phantom_serve", "dreams that serve a ball without FIRE", False, 0.05),
    Probe("serve", "FIRE: dream's ball within 2 steps of the real serve", True, 0.90),
    Probe("multi_ball", "frames with 2+ ball blobs where the real game has one", False, 0.03),
    Probe("ball_where_none_1_15", "frames with a ball where the real field has none, steps 1-15", False, None),
    Probe("ball_where_none_16_50", "frames with a ball where the real field has none, steps 16-50", False, 0.10),
    Probe("life_loss_recall", "real lost lives the dream's end head sees within 3 steps", True, 0.80),
    Probe(
        "phantom_life_loss",
        "rollouts where the dream loses a life its own ball did not lose (a broken rule)",
        False,
        0.05,
    ),
    Probe(
        "life_loss_without_real",
        "rollouts where the dream loses a life and the real game does not (counts parting trajectories)",
        False,
        gated=False,
    ),
    Probe("score_precision", "dreamed points with a real point within 1 step", True, None),
    Probe(
        "score_recall_ball_with_real",
        "real points the dream scores within 1 step, its ball with the real one before",
        True,
        0.80,
    ),
    Probe("score_recall", "real points the dream scores within 1 step (parting trajectories too)", True, None, False),
    Probe("phantom_score", "rollouts with a dreamed point and no real one", False, 0.05),
    Probe("branch_agreement", "action pairs whose dreamed branches differ exactly when the real ones do", True, None),
    Probe("ball_recall_16_50", "ball recall over dreamed steps 16-50", True, 0.50),
]
TOLERANCE = 0.03
"""A probe is worse than a reference when it is more than this (3 points) on the wrong side."""


def end_events(end: np.ndarray) -> list[int]:
    """Steps where a run of end signals (bool per step) begins: a loss drawn over several frames
    is one loss."""
    return [t for t in np.nonzero(end)[0] if t == 0 or not end[t - 1]]


def bottom_exits(frames: np.ndarray, game: str) -> list[int]:
    """Indices k where the ball is in the lower half of the open field in frames[k] and gone in
    frames[k + 1]: it left through the bottom (a ball leaving upwards enters the bricks)."""
    rows = BALL_FIELD[game][0]
    half = (rows.stop - rows.start) / 2
    pos = [ball_position(f, game) for f in frames]
    return [k for k in range(len(pos) - 1) if pos[k] is not None and pos[k][0] >= half and pos[k + 1] is None]


def unexplained_losses(losses: list[int], exits: list[int], window: int = EXIT_WINDOW) -> list[int]:
    """The losses (steps) not paid for by an exit of the ball 1..window steps before; each exit pays
    for one loss."""
    free, out = sorted(exits), []
    for t in sorted(losses):
        k = next((e for e in free if 1 <= t - e <= window), None)
        if k is None:
            out.append(t)
        else:
            free.remove(k)
    return out


def unexplained_dream_losses(
    start_frames: np.ndarray, dream_frames: np.ndarray, ends: np.ndarray, game: str
) -> tuple[list[int], list[int]]:
    """The lives one dream lost and those of them its own ball did not lose -> (losses, unexplained),
    steps of the dream. A loss is where a run of its end signals `ends` (T,) begins (`end_events`); it
    is explained by an exit of the dream's ball through the bottom (`bottom_exits`) 1..EXIT_WINDOW
    steps before, each exit paying for one loss (`unexplained_losses`). The start's frames (n, H, W, C)
    go before the dreamed ones (T, H, W, C), so a ball that left in the context (step -1 and before)
    pays for a loss early in the dream."""
    seq = np.concatenate([start_frames, dream_frames])
    exits = [k - len(start_frames) for k in bottom_exits(seq, game)]
    losses = end_events(ends)
    return losses, unexplained_losses(losses, exits)


def ball_with_real(real: np.ndarray, dream: np.ndarray, t: int, game: str) -> bool:
    """Whether, at the last of the SCORE_LOOKBACK steps before step t where the real ball is in the
    open field, the dream's ball is within BALL_RADIUS of it (real, dream: (T, H, W, C))."""
    for k in range(t - 1, max(-1, t - 1 - SCORE_LOOKBACK), -1):
        rb = ball_position(real[k], game)
        if rb is not None:
            db = ball_position(dream[k], game)
            return db is not None and max(abs(db[0] - rb[0]), abs(db[1] - rb[1])) <= BALL_RADIUS
    return False


# -- the probes ------------------------------------------------------------------------------------
def run(
    game: str,
    dreamer: Dreamer,
    starts: dict[str, list[Start]],
    idle_steps: int = 60,
    play_steps: int = 50,
    branch_steps: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """All probes for one dreamer on the given starts. Returns a JSON-able dict, with the arrays
    for the worst-case image under '_cases'."""
    g = RealGame(game)
    rng = np.random.default_rng(seed)
    meanings = g.meanings
    fire = g.idx("FIRE")
    waiting, in_play = starts["waiting"], starts["in_play"]
    res: dict = {"game": game, "starts": {"waiting": len(waiting), "in_play": len(in_play)}}
    cases: dict = {}
    bar = tqdm(total=5, desc="playability", disable=not progress, leave=False)

    # 1. idle without FIRE from a waiting game: the phantom serve and balls where there are none.
    idle = np.stack([idle_actions(meanings, idle_steps, rng) for _ in waiting])
    real_idle = [
        g.rollout(s, lambda game, t, row=row: int(row[t]) if t < len(row) else -1) for s, row in zip(waiting, idle)
    ]
    keep = [i for i, r in enumerate(real_idle) if len(r.actions) == idle_steps]
    real_no_ball = [all(ball_position(f, game) is None for f in real_idle[i].frames) for i in keep]
    keep = [i for i, ok in zip(keep, real_no_ball) if ok]  # the real game never serves by itself
    d_idle, _, _ = dream_batch(dreamer, [waiting[i] for i in keep], idle[keep], "idle", progress)
    drew = [[ball_position(f, game) is not None for f in d] for d in d_idle]
    first = [row.index(True) + 1 for row in drew if any(row)]
    res["phantom_serve"] = share(sum(any(r) for r in drew), len(keep))
    res["phantom_serve_first_step_median"] = float(np.median(first)) if first else None
    res["phantom_serve_n"] = len(keep)
    if first:  # the dream that served soonest, around its first ball
        worst = min((row.index(True), k) for k, row in enumerate(drew) if any(row))
        lo = max(0, worst[0] - 4)
        real_w = real_idle[keep[worst[1]]].frames[lo : lo + 10]
        cases["phantom_serve"] = (real_w[None], d_idle[worst[1] : worst[1] + 1, lo : lo + 10])
    bar.update(1)

    # 2. serve: FIRE from each waiting start, then the expert for SERVE_STEPS steps; the dream's
    #    first ball must come within 2 steps of the real one.
    expert = EXPERTS[game]

    def serve_policy(game_: RealGame, t: int) -> int:
        return -1 if t >= SERVE_STEPS else fire if t == 0 else expert(game_.env, rng)

    real_serve = [g.rollout(s, serve_policy) for s in waiting]
    idx_serve = [i for i, r in enumerate(real_serve) if len(r.actions) == SERVE_STEPS]
    ok = n = 0
    delays: list[int | None] = []  # dream's first ball minus the real one's, in steps (None: never)
    if idx_serve:
        serve_acts = np.stack([real_serve[i].actions for i in idx_serve])
        d_serve, _, _ = dream_batch(dreamer, [waiting[i] for i in idx_serve], serve_acts, "serve", progress)
        for j, i in enumerate(idx_serve):
            r_first = next((t for t, f in enumerate(real_serve[i].frames) if ball_position(f, game) is not None), None)
            if r_first is None:
                continue
            n += 1
            d_first = next((t for t, f in enumerate(d_serve[j]) if ball_position(f, game) is not None), None)
            ok += d_first is not None and abs(d_first - r_first) <= 2
            delays.append(None if d_first is None else d_first - r_first)
    res["serve"], res["serve_n"], res["serve_delays"] = share(ok, n), n, delays
    bar.update(1)

    # 3. play: from every waiting start served for real (see served_starts), half with the expert,
    #    half missing on purpose; and from the in-play starts with the expert (score events).
    served = served_starts(g, waiting, rng)

    def play(kind: str):
        def policy(game_: RealGame, t: int) -> int:
            if t >= play_steps:
                return -1
            a = expert(game_.env, rng)
            if kind == "miss":
                return game_.idx({"LEFT": "RIGHT", "RIGHT": "LEFT"}.get(meanings[a], "NOOP"))
            return a

        return policy

    real_play = [g.rollout(s, play("expert" if i % 2 == 0 else "miss")) for i, s in enumerate(served)]
    idx_play = [i for i, r in enumerate(real_play) if len(r.actions) == play_steps]
    real_mid = [g.rollout(s, play("expert")) for s in in_play]
    idx_mid = [i for i, r in enumerate(real_mid) if len(r.actions) == play_steps]
    play_starts = [served[i] for i in idx_play] + [in_play[i] for i in idx_mid]
    play_real = [real_play[i] for i in idx_play] + [real_mid[i] for i in idx_mid]
    acts = np.stack([r.actions for r in play_real])
    d_play, d_rew, d_end = dream_batch(dreamer, play_starts, acts, "play", progress)
    real_frames = np.stack([r.frames for r in play_real])
    res["starts"]["served"] = len(served)
    bar.update(1)

    # one ball, and balls where the real field has none (idle and played rollouts together)
    one = multi = 0
    none_counts = {"1_15": [0, 0], "16_50": [0, 0], "51_plus": [0, 0]}
    worst_multi = (0, None)
    pairs = [(real_frames[j], d_play[j]) for j in range(len(play_real))]
    pairs += [(real_idle[i].frames, d_idle[k]) for k, i in enumerate(keep)]
    for real_seq, dream_seq in pairs:
        for t, (rf, df) in enumerate(zip(real_seq, dream_seq)):
            rb = ball_blobs(rf, game)
            if rb == 1:
                one += 1
                nb = ball_blobs(df, game)
                multi += nb >= 2
                if nb > worst_multi[0]:
                    worst_multi = (nb, (real_seq, dream_seq, t))
            elif rb == 0:
                band = "1_15" if t < 15 else "16_50" if t < 50 else "51_plus"
                none_counts[band][1] += 1
                none_counts[band][0] += ball_position(df, game) is not None
    res["multi_ball"], res["multi_ball_frames"] = share(multi, one), one
    for band, (hit, cnt) in none_counts.items():
        res[f"ball_where_none_{band}"], res[f"ball_where_none_{band}_frames"] = share(hit, cnt), cnt
    if worst_multi[1] is not None:
        rs, ds, t = worst_multi[1]
        lo = max(0, min(t - 4, len(rs) - 10))
        cases["multi_ball"] = (rs[None, lo : lo + 10], ds[None, lo : lo + 10])

    # life loss: the real game loses a life at step t -> the dream's end head within 3 steps
    rec = n_lost = 0
    for j, r in enumerate(play_real):
        for t in np.nonzero(r.lost)[0]:
            n_lost += 1
            rec += bool(d_end[j, max(0, t - 3) : t + 4].any())
    res["life_loss_recall"], res["life_loss_n"] = share(rec, n_lost), n_lost
    # A dreamed loss is the rule when the dream's own ball left the field through the bottom in the
    # EXIT_WINDOW steps before it (each exit pays for one loss); any other is phantom. Losing a life
    # the real game keeps is reported apart: after the dream's ball parted from the real one, the
    # paddle the real actions steer misses it, and a dream that keeps its rules loses that life.
    phantom = without_real = n_clean = 0
    for j, (s, r) in enumerate(zip(play_starts, play_real)):
        phantom += bool(unexplained_dream_losses(s.frames, d_play[j], d_end[j], game)[1])
        if not r.lost.any():
            n_clean += 1
            without_real += bool(d_end[j].any())
    res["phantom_life_loss"], res["phantom_life_loss_n"] = share(phantom, len(play_real)), len(play_real)
    res["life_loss_without_real"], res["life_loss_without_real_n"] = share(without_real, n_clean), n_clean

    # score: reward events +-1 step; recall also where the dream's ball is with the real one
    m = match_events([r.rewards != 0 for r in play_real], list(d_rew != 0))
    res["score_precision"], res["score_dream_events"] = m["precision"], m["dream_events"]
    res["score_recall"], res["score_real_events"] = m["recall"], m["real_events"]
    res["phantom_score"], res["phantom_score_n"] = m["phantom"], m["rollouts_without"]
    hit = n_with = 0
    for j, r in enumerate(play_real):
        for t in np.nonzero(r.rewards)[0]:
            if ball_with_real(real_frames[j], d_play[j], t, game):
                n_with += 1
                hit += bool((d_rew[j, max(0, t - 1) : t + 2] != 0).any())
    res["score_recall_ball_with_real"], res["score_ball_with_real_events"] = share(hit, n_with), n_with

    # fidelity over the played rollouts: ball recall per step, PSNR / motion PSNR vs repeat-last
    curve = ball_recall(d_play, real_frames, game)
    res["ball_recall"] = curve
    for a, b in ((1, 1), (2, 5), (6, 15), (16, 50)):
        hits = sum(curve["hits"][a - 1 : b])
        cnt = sum(curve["real_balls"][a - 1 : b])
        res[f"ball_recall_{a}_{b}"] = share(hits, cnt)
    last_ctx = np.stack([s.frames[-1] for s in play_starts])
    horizons = {}
    for h in (1, 5, 15, 50):
        if h > play_steps:
            continue
        real_h, prev_h = real_frames[:, h - 1], (real_frames[:, h - 2] if h > 1 else last_ctx)
        m = np.stack([motion_mask(rf, pf) for rf, pf in zip(real_h, prev_h)])
        horizons[h] = {
            "psnr_dream": psnr(d_play[:, h - 1], real_h),
            "psnr_repeat_last": psnr(np.broadcast_to(last_ctx, real_h.shape), real_h),
            "motion_psnr_dream": psnr(d_play[:, h - 1], real_h, m) if m.any() else None,
            "motion_psnr_repeat_last": psnr(np.broadcast_to(last_ctx, real_h.shape), real_h, m) if m.any() else None,
        }
    res["horizons"] = horizons
    cases["play"] = (real_frames[:1, :10], d_play[:1, :10])
    bar.update(1)

    # 4. branching: every action for branch_steps from mid-game states
    nA = len(meanings)
    b_starts = [s for s in in_play for _ in range(nA)]
    b_acts = np.repeat(np.tile(np.arange(nA), len(in_play))[:, None], branch_steps, 1)
    hold = lambda a: lambda game_, t: a if t < branch_steps else -1  # noqa: E731
    if in_play:  # the real frame after branch_steps steps of each action, from each state
        real_b = np.stack([g.rollout(s, hold(int(a))).frames[-1] for s, a in zip(b_starts, b_acts[:, 0])])
        d_b, _, _ = dream_batch(dreamer, b_starts, b_acts, "branches", progress)
        real_b = real_b.reshape(len(in_play), nA, *real_b.shape[1:])
        dream_last = d_b[:, -1].reshape(len(in_play), nA, *d_b.shape[2:])
        agree = pairs_n = 0
        worst_b = (1.0, None)
        for i in range(len(in_play)):
            agree_i = n_i = 0
            for a in range(nA):
                for b in range(a + 1, nA):
                    same = frames_differ(real_b[i, a], real_b[i, b]) == frames_differ(
                        dream_last[i, a], dream_last[i, b]
                    )
                    agree_i += same
                    n_i += 1
            agree, pairs_n = agree + agree_i, pairs_n + n_i
            if agree_i / n_i < worst_b[0]:
                worst_b = (agree_i / n_i, i)
        res["branch_agreement"], res["branch_pairs"] = share(agree, pairs_n), pairs_n
        res["branch_psnr"] = {meanings[a]: psnr(dream_last[:, a], real_b[:, a]) for a in range(nA)}
        if worst_b[1] is not None:
            i = worst_b[1]
            cases["branching"] = (real_b[i][None], dream_last[i][None])
    bar.update(1)
    bar.close()
    res["_cases"] = cases
    return res


# -- Pong and Boxing: objects read from the 64x64 frames ---------------------------------------------
# Regions and colours measured on real frames of `games.envs.make_env` (210x160 -> 64x64 RGB, area
# resampling); tests/training/test_playability_pong_boxing.py checks each detector against the RAM.
PONG_FIELD = slice(11, 59)
"""Rows of Pong's field between its white bars (rows 7-10 and 59-63); the scores are above, rows 0-6."""
PONG_SCORE = (slice(0, 7), slice(0, 64))
PONG_PLAYER_COLS = slice(54, 59)
"""Columns around the player's green paddle (92, 186, 92), drawn at column 56 (57 half-covered)."""
PONG_OPPONENT_COLS = slice(4, 10)
"""Columns around the computer's orange paddle (213, 130, 74), drawn at columns 6-7."""
PONG_SERVE_PAUSE = 16
"""Steps between a point (the ball leaving the field) and the next ball in the field (the game
serves by itself, FIRE or not): longer than a 4-frame context, so a 4-frame model cannot time it."""
BOXING_RING = (slice(8, 57), slice(8, 56))
"""Rows and columns of Boxing's ring, ropes included (the boxers never leave it)."""
BOXING_SCORE = (slice(0, 4), slice(4, 64))
"""The two scores (player left, computer right); columns 0-3 are the emulator's black border."""
BOXING_CLOCK = (slice(4, 8), slice(16, 44))
"""The round clock (2:00 counting down; one second is 15 agent steps, RAM 17/18 = seconds/minutes)."""
CONTROL_RADIUS = 1
"""Pixels (of 64) between the dream's and the real player position for a controlled branch."""
OPPONENT_RADIUS = 2
"""Pixels between the dream's and the real opponent paddle (Pong) for a tracked frame."""


def mean_position(lit: np.ndarray) -> tuple[float, float] | None:
    """Centroid (row, col) of a boolean mask, None when nothing is lit."""
    if not lit.any():
        return None
    y, x = np.nonzero(lit)
    return float(y.mean()), float(x.mean())


def pong_player(frame: np.ndarray) -> float | None:
    """Row (in the field) of the player's green paddle's centre, None when not drawn."""
    f = frame[PONG_FIELD, PONG_PLAYER_COLS].astype(np.int16)
    p = mean_position(f[..., 1] - f[..., 0] > 30)
    return None if p is None else p[0]


def pong_opponent(frame: np.ndarray) -> float | None:
    """Row (in the field) of the computer's orange paddle's centre, None when not drawn. Orange
    is told from a faint ball by its blue: the ball is white, so it raises blue with red."""
    f = frame[PONG_FIELD, PONG_OPPONENT_COLS].astype(np.int16)
    r, b = f[..., 0], f[..., 2]
    p = mean_position((r > 165) & (b < 110) & (b < 17 + 1.5 * (r - 144)))
    return None if p is None else p[0]


def pong_ball_mask(frame: np.ndarray) -> np.ndarray:
    """The field's ball pixels: the white ball (236, 236, 236) covers under one pixel, so its pixels
    are a mix with the brown field (144, 72, 17); red and blue both high is neither paddle."""
    f = frame[PONG_FIELD].astype(np.int16)
    return (f[..., 2] > 90) & (f[..., 0] > 150)


def pong_ball(frame: np.ndarray) -> tuple[float, float] | None:
    return mean_position(pong_ball_mask(frame))


def boxing_player(frame: np.ndarray) -> tuple[float, float] | None:
    """Centroid (row, col in the ring) of the white boxer (214, 214, 214), the player."""
    return mean_position(frame[BOXING_RING].min(-1) > 150)


def boxing_opponent_mask(frame: np.ndarray) -> np.ndarray:
    """The black boxer's pixels in the ring (the ring is green, its ropes orange)."""
    return frame[BOXING_RING].astype(np.int16).sum(-1) < 200


def region_changes(frames: np.ndarray, before: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    """(T,) bool: whether `region` (a score) visibly changes from the frame before each of frames
    (T, H, W, C); `before` is the frame the rollout starts from."""
    seq = np.concatenate([before[None], frames])[:, region[0], region[1]]
    return np.array([frames_differ(a, b, min_pixels=2) for a, b in zip(seq[:-1], seq[1:])])


def clock_agreement(real: np.ndarray, dream: np.ndarray, before: np.ndarray, every: int = 5) -> tuple[int, int]:
    """Does the dream's clock read what the real one does? Each distinct real clock picture of the
    rollout (the start's, then one per tick) is a reading; at every `every`-th step the dream's clock
    reads the nearest of them, which must be the real reading one step before, at, or after.
    -> (matched, checked) steps. A frozen clock stays on the first reading; a fast one runs ahead."""
    rows, cols = BOXING_CLOCK
    seq = np.concatenate([before[None], real])[:, rows, cols].astype(np.float32)
    tick = np.concatenate([[0], np.cumsum([(a != b).any() for a, b in zip(seq[:-1], seq[1:])])])
    pictures = np.stack([seq[np.argmax(tick == k)] for k in range(tick[-1] + 1)])
    ok = n = 0
    for t in range(every, len(real) + 1, every):
        d = dream[t - 1, rows, cols].astype(np.float32)
        reading = int(np.argmin(((pictures - d) ** 2).mean((1, 2, 3))))
        ok += reading in tick[max(0, t - 1) : t + 2]
        n += 1
    return ok, n


# -- Pong and Boxing: start states and the probes --------------------------------------------------
def pad_rollout(r: Rollout, steps: int) -> np.ndarray:
    """The rollout's frames, a finished game's last frame repeated up to `steps`."""
    return np.concatenate([r.frames, np.repeat(r.frames[-1:], steps - len(r.frames), 0)])


def held(a: int, steps: int) -> Callable[[RealGame, int], int]:
    return lambda game_, t: a if t < steps else -1


def branch_rollouts(
    g: RealGame, dreamer: Dreamer, starts: list[Start], actions: list[int], steps: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each action held `steps` steps from each start, real and dreamed -> frames (S, A, T, H, W, C)."""
    b_starts = [s for s in starts for _ in actions]
    acts = np.repeat(np.tile(actions, len(starts))[:, None], steps, 1)
    real = np.stack([pad_rollout(g.rollout(s, held(int(a), steps)), steps) for s, a in zip(b_starts, acts[:, 0])])
    dream, _, _ = dream_batch(dreamer, b_starts, acts, "branches", progress)
    shape = (len(starts), len(actions), steps, *real.shape[2:])
    return real.reshape(shape), dream.reshape(shape)


def mirrored(game: str, g: RealGame, rng: np.random.Generator, fire: bool = True) -> int:
    """The expert's move with every direction reversed (the player runs from the ball or the
    opponent); FIRE dropped unless `fire`."""
    name = g.meanings[EXPERTS[game](g.env, rng)]
    flip = {"UP": "DOWN", "DOWN": "UP", "LEFT": "RIGHT", "RIGHT": "LEFT"}
    parts = [flip.get(p, p) for p in re.findall("UP|DOWN|LEFT|RIGHT|FIRE", name) if fire or p != "FIRE"]
    name = "".join(parts) or "NOOP"
    return g.idx(name if name in g.meanings else "NOOP")


def played(game: str, dreamer: Dreamer, g: RealGame, starts: list[Start], steps: int, rng, progress: bool):
    """From each start, `steps` steps of the expert (even starts) or of its mirror (odd: miss the
    ball, run from the opponent), real and dreamed -> (real rollouts, the starts they came from,
    dreamed frames, rewards)."""

    def policy(i: int):
        return lambda game_, t: (
            -1
            if t >= steps
            else (EXPERTS[game](game_.env, rng) if i % 2 == 0 else mirrored(game, game_, rng, fire=False))
        )

    real = [g.rollout(s, policy(i)) for i, s in enumerate(starts)]
    keep = [i for i, r in enumerate(real) if len(r.actions) == steps]
    real, starts = [real[i] for i in keep], [starts[i] for i in keep]
    acts = np.stack([r.actions for r in real]) if real else np.zeros((0, steps), np.int64)
    d_frames, d_rew, _ = dream_batch(dreamer, starts, acts, "play", progress) if real else (None, None, None)
    return real, starts, d_frames, d_rew


def score_probes(res: dict, real: list[Rollout], starts: list[Start], d_frames, d_rew, region) -> None:
    """Points, from the reward head and from the score digits, against the real points (+-1 step)."""
    real_ev = [r.rewards != 0 for r in real]
    m = match_events(real_ev, [r != 0 for r in d_rew])
    res["score_precision"], res["score_dream_events"] = m["precision"], m["dream_events"]
    res["score_recall"], res["score_real_events"] = m["recall"], m["real_events"]
    res["phantom_score"], res["phantom_score_n"] = m["phantom"], m["rollouts_without"]
    digits = [region_changes(d, s.frames[-1], region) for d, s in zip(d_frames, starts)]
    m = match_events(real_ev, digits)
    res["digit_recall"], res["digit_phantom"], res["digit_n"] = m["recall"], m["phantom"], m["rollouts_without"]


def pong_starts(game: str, n: int, seed: int = SEED, progress: bool = True) -> dict[str, list[Start]]:
    """Per episode seed seed, seed+1, ...: an in-play start (the expert plays 20-150 steps, then on
    until the ball has been in the field for 4 frames), and from there an after-point start (the
    player runs from the ball until a point is scored; the start is 2 steps after the point, the
    ball gone and the new score drawn, the serve about `PONG_SERVE_PAUSE` - 2 steps away)."""
    g, expert, rng = RealGame(game), EXPERTS[game], np.random.default_rng(seed)
    out: dict[str, list[Start]] = {"in_play": [], "after_point": []}
    for k in tqdm(range(n), desc="start states", disable=not progress, leave=False):
        g.reset(seed + k)
        done, warmup = False, int(rng.integers(20, 151))
        for t in range(warmup + 60):
            done = g.step(expert(g.env, rng))[2]
            if done or (t >= warmup and all(pong_ball(f) is not None for f in g.frames[-CONTEXT:])):
                break
        if done:
            continue
        if all(pong_ball(f) is not None for f in g.frames[-CONTEXT:]):
            out["in_play"].append(g.start("in_play", seed + k))
        for _ in range(300):
            r, _, done = g.step(mirrored(game, g, rng, fire=False))
            if r or done:
                break
        for _ in range(2):  # the computer's new score is drawn a step after its point
            done = done or g.step(g.idx("NOOP"))[2]
        if r and not done:
            out["after_point"].append(g.start("after_point", seed + k))
    return out


def boxing_starts(game: str, n: int, seed: int = SEED, progress: bool = True) -> dict[str, list[Start]]:
    """Per episode seed: an in-play start after 10-200 steps of the expert (a round lasts 1,800)."""
    g, expert, rng = RealGame(game), EXPERTS[game], np.random.default_rng(seed)
    out: dict[str, list[Start]] = {"in_play": []}
    for k in tqdm(range(n), desc="start states", disable=not progress, leave=False):
        g.reset(seed + k)
        if not any(g.step(expert(g.env, rng))[2] for _ in range(int(rng.integers(10, 201)))):
            out["in_play"].append(g.start("in_play", seed + k))
    return out


def probes_begin(
    game: str, starts: dict[str, list[Start]], kinds: tuple[str, ...], parts: int, seed: int, progress: bool
):
    """What Pong's and Boxing's probes begin with -> (the real game, the rng from `seed`, the result
    with the game and how many starts of each of `kinds`, the worst cases, a progress bar of `parts`)."""
    g, rng = RealGame(game), np.random.default_rng(seed)
    res: dict = {"game": game, "starts": {k: len(starts[k]) for k in kinds}}
    return g, rng, res, {}, tqdm(total=parts, desc="playability", disable=not progress, leave=False)


def probes_end(res: dict, cases: dict, bar, real: list[Rollout], d_play) -> dict:
    """What Pong's and Boxing's probes end with: the first played rollout (`played`) as the "play"
    case, how many starts were played, the bar's last part, the cases under '_cases' -> res."""
    if real:
        cases["play"] = (real[0].frames[None, :10], d_play[:1, :10])
    res["starts"]["played"] = len(real)
    bar.update(1)
    bar.close()
    res["_cases"] = cases
    return res


def control_probe(res: dict, cases: dict, real_b, d_b, names: list[str], where: Callable) -> None:
    """player_control: branches whose dreamed player ends within CONTROL_RADIUS of the real one.
    real_b, d_b: (S, A, T, ...) held-action branches; where(frame) -> position tuple or None."""
    hits = n = 0
    by_action = {name: [0, 0] for name in names}
    worst = (2.0, None)
    for i in range(real_b.shape[0]):
        hi = ni = 0
        for a, name in enumerate(names):
            r, d = where(real_b[i, a, -1]), where(d_b[i, a, -1])
            if r is None:
                continue
            ok = d is not None and max(abs(x - y) for x, y in zip(r, d)) <= CONTROL_RADIUS
            hi, ni = hi + ok, ni + 1
            by_action[name][0] += ok
            by_action[name][1] += 1
        hits, n = hits + hi, n + ni
        if ni and hi / ni < worst[0]:
            worst = (hi / ni, i)
    res["player_control"], res["player_control_n"] = share(hits, n), n
    res["player_control_by_action"] = {k: share(h, m) for k, (h, m) in by_action.items()}
    if worst[1] is not None:
        cases["player_control"] = (real_b[worst[1], :, -1][None], d_b[worst[1], :, -1][None])


def run_pong(
    game: str,
    dreamer: Dreamer,
    starts: dict[str, list[Start]],
    play_steps: int = 50,
    branch_steps: int = 8,
    serve_steps: int = 30,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Pong's probes (`PONG_PROBES`) for one dreamer on `pong_starts`; JSON-able, with '_cases'."""
    g, rng, res, cases, bar = probes_begin(game, starts, ("in_play", "after_point"), 3, seed, progress)
    in_play, after = starts["in_play"], starts["after_point"]

    # 1. control: every action held; the paddle follows RIGHT (up) and LEFT (down) and nothing else
    if in_play:
        real_b, d_b = branch_rollouts(g, dreamer, in_play, list(range(len(g.meanings))), branch_steps, progress)
        control_probe(
            res, cases, real_b, d_b, g.meanings, lambda f: (lambda p: None if p is None else (p,))(pong_player(f))
        )
    bar.update(1)

    # 2. serve: from the step of a point, idle play; the dream's ball comes back with the real one
    idle = np.stack([idle_actions(g.meanings, serve_steps, rng) for _ in after]) if after else None
    real_s = [
        g.rollout(s, lambda game_, t, row=row: int(row[t]) if t < len(row) else -1)
        for s, row in zip(after, idle if after else [])
    ]
    keep = [i for i, r in enumerate(real_s) if len(r.actions) == serve_steps]
    ok = n = 0
    delays: list[int | None] = []
    serve_real, serve_starts, d_serve, d_serve_rew = [real_s[i] for i in keep], [after[i] for i in keep], None, None
    if keep:
        d_serve, d_serve_rew, _ = dream_batch(dreamer, serve_starts, idle[keep], "serve", progress)
        for j, r in enumerate(serve_real):
            r_first = next((t for t, f in enumerate(r.frames) if pong_ball(f) is not None), None)
            if r_first is None:
                continue
            d_first = next((t for t, f in enumerate(d_serve[j]) if pong_ball(f) is not None), None)
            n += 1
            ok += d_first is not None and abs(d_first - r_first) <= 2
            delays.append(None if d_first is None else d_first - r_first)
    res["serve"], res["serve_n"], res["serve_delays"] = share(ok, n), n, delays
    bar.update(1)

    # 3. play: the expert, or missing on purpose; points, one ball, the opponent paddle
    real, p_starts, d_play, d_rew = played(game, dreamer, g, in_play, play_steps, rng, progress)
    all_real, all_starts = real + serve_real, p_starts + serve_starts
    all_frames = [*(d_play if real else []), *(d_serve if keep else [])]
    all_rew = [*(d_rew if real else []), *(d_serve_rew if keep else [])]
    if all_real:
        score_probes(res, all_real, all_starts, all_frames, all_rew, PONG_SCORE)
    one = multi = near = seen = 0
    worst = (0, None)
    for r, d in zip(all_real, all_frames):
        for t, (rf, df) in enumerate(zip(r.frames, d)):
            if count_blobs(pong_ball_mask(rf)) == 1:
                one += 1
                nb = count_blobs(pong_ball_mask(df))
                multi += nb >= 2
                if nb > worst[0]:
                    worst = (nb, (r.frames, d, t))
            ro = pong_opponent(rf)
            if t < 15 and ro is not None:
                do = pong_opponent(df)
                seen += 1
                near += do is not None and abs(do - ro) <= OPPONENT_RADIUS
    res["multi_ball"], res["multi_ball_frames"] = share(multi, one), one
    res["opponent_tracking"], res["opponent_tracking_frames"] = share(near, seen), seen
    if worst[1] is not None:
        rs, ds, t = worst[1]
        lo = max(0, min(t - 4, len(rs) - 10))
        cases["multi_ball"] = (rs[None, lo : lo + 10], ds[None, lo : lo + 10])
    return probes_end(res, cases, bar, real, d_play)


BOXING_MOVES = ("NOOP", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT")


def run_boxing(
    game: str,
    dreamer: Dreamer,
    starts: dict[str, list[Start]],
    play_steps: int = 50,
    branch_steps: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Boxing's probes (`BOXING_PROBES`) for one dreamer on `boxing_starts`; JSON-able, with '_cases'."""
    g, rng, res, cases, bar = probes_begin(game, starts, ("in_play",), 2, seed, progress)
    in_play = starts["in_play"]

    # 1. control: NOOP and the 8 directions held; punch: FIRE against NOOP over the first 3 steps
    if in_play:
        acts = [g.idx(m) for m in (*BOXING_MOVES, "FIRE")]
        real_b, d_b = branch_rollouts(g, dreamer, in_play, acts, branch_steps, progress)
        control_probe(res, cases, real_b[:, :-1], d_b[:, :-1], list(BOXING_MOVES), boxing_player)
        agree = punches = 0
        for i in range(len(in_play)):
            r = any(frames_differ(real_b[i, -1, t], real_b[i, 0, t]) for t in range(3))
            d = any(frames_differ(d_b[i, -1, t], d_b[i, 0, t]) for t in range(3))
            agree, punches = agree + (r == d), punches + r
        res["punch"], res["punch_n"], res["punch_real"] = share(agree, len(in_play)), len(in_play), punches
    bar.update(1)

    # 2. play: the expert, or running from the opponent; points, the clock, one opponent
    real, p_starts, d_play, d_rew = played(game, dreamer, g, in_play, play_steps, rng, progress)
    if real:
        score_probes(res, real, p_starts, d_play, d_rew, BOXING_SCORE)
        ok = n = one = split = 0
        for r, s, d in zip(real, p_starts, d_play):
            o, c = clock_agreement(r.frames, d, s.frames[-1])
            ok, n = ok + o, n + c
            for rf, df in zip(r.frames, d):
                if count_blobs(boxing_opponent_mask(rf), grow=2) == 1:
                    one += 1
                    split += count_blobs(boxing_opponent_mask(df), grow=2) != 1
        res["clock"], res["clock_n"] = share(ok, n), n
        res["opponent_split"], res["opponent_split_frames"] = share(split, one), one
    return probes_end(res, cases, bar, real, d_play)


PONG_PROBES = [
    Probe(
        "player_control",
        "branches (each action held 8 steps) whose dreamed paddle ends within 1 px of the real one",
        True,
        0.90,
    ),
    Probe("serve", "after a point: dream's ball back within 2 steps of the real serve", True, None),
    Probe("multi_ball", "frames with 2+ ball blobs where the real game has one", False, 0.03),
    Probe("score_precision", "dreamed points (reward head) with a real point within 1 step", True, None),
    Probe("score_recall", "real points the dream scores (reward head) within 1 step", True, 0.80),
    Probe("phantom_score", "rollouts with a dreamed point (reward head) and no real one", False, 0.05),
    Probe("digit_recall", "real points whose dreamed score digits change within 1 step", True, 0.80),
    Probe("digit_phantom", "rollouts whose dreamed score digits change and no real point", False, 0.05),
    Probe(
        "opponent_tracking", "frames (steps 1-15) with the dream's opponent paddle within 2 px of the real", True, None
    ),
]
BOXING_PROBES = [
    Probe(
        "player_control", "branches (NOOP, 8 directions held 8 steps) whose dreamed boxer ends within 1 px", True, 0.90
    ),
    Probe(
        "punch",
        "starts where FIRE changes the dream (vs NOOP, 3 steps) exactly when it changes the real game",
        True,
        None,
    ),
    Probe("score_precision", "dreamed points (reward head) with a real point within 1 step", True, None),
    Probe("score_recall", "real points the dream scores (reward head) within 1 step", True, 0.80),
    Probe("phantom_score", "rollouts with a dreamed point (reward head) and no real one", False, 0.05),
    Probe("digit_recall", "real points whose dreamed score digits change within 1 step", True, 0.80),
    Probe("digit_phantom", "rollouts whose dreamed score digits change and no real point", False, 0.05),
    Probe("clock", "every 5th step: the dreamed clock reads the real one (+-1 step)", True, None),
    Probe("opponent_split", "frames with other than one black boxer where the real game has one", False, None),
]
SCORE_COUNTS = {
    "score_precision": "score_dream_events",
    "score_recall": "score_real_events",
    "phantom_score": "phantom_score_n",
    "digit_recall": "score_real_events",
    "digit_phantom": "digit_n",
}


@dataclass
class Suite:
    """One game's probes: how its start states are made, how its probes run, what they report."""

    version: int
    probes: list[Probe]
    make_starts: Callable[..., dict[str, list[Start]]]
    run: Callable[..., dict]
    counts: dict[str, str]
    """probe key -> the result key holding how many cases its figure counts (the table's n)."""


BREAKOUT_COUNTS = {
    "phantom_serve": "phantom_serve_n",
    "serve": "serve_n",
    "multi_ball": "multi_ball_frames",
    "ball_where_none_1_15": "ball_where_none_1_15_frames",
    "ball_where_none_16_50": "ball_where_none_16_50_frames",
    "life_loss_recall": "life_loss_n",
    "phantom_life_loss": "phantom_life_loss_n",
    "life_loss_without_real": "life_loss_without_real_n",
    "score_precision": "score_dream_events",
    "score_recall_ball_with_real": "score_ball_with_real_events",
    "score_recall": "score_real_events",
    "phantom_score": "phantom_score_n",
    "branch_agreement": "branch_pairs",
}
SUITES: dict[str, Suite] = {
    "Breakout": Suite(SUITE, PROBES, make_starts, run, BREAKOUT_COUNTS),
    "Pong": Suite(
        1,
        PONG_PROBES,
        pong_starts,
        run_pong,
        {
            "player_control": "player_control_n",
            "serve": "serve_n",
            "multi_ball": "multi_ball_frames",
            "opponent_tracking": "opponent_tracking_frames",
            **SCORE_COUNTS,
        },
    ),
    "Boxing": Suite(
        1,
        BOXING_PROBES,
        boxing_starts,
        run_boxing,
        {
            "player_control": "player_control_n",
            "punch": "punch_n",
            "clock": "clock_n",
            "opponent_split": "opponent_split_frames",
            **SCORE_COUNTS,
        },
    ),
}
"""Per game, its playability suite. `game in SUITES` says whether a game can be gated (Breakout's
suite keeps `SUITE`, `PROBES`, `make_starts` and `run` as they were)."""


def suite_of(res: dict) -> Suite:
    """The suite a result came from (results without a game are Breakout's, the first suite)."""
    return SUITES[res.get("game", "Breakout")]


def probe_keys(res: dict) -> list[str]:
    """The keys of the probes of the result's game."""
    return [p.key for p in suite_of(res).probes]


# -- comparing, reporting ------------------------------------------------------------------------
def worse_than(new: dict, ref: dict, tolerance: float = TOLERANCE) -> list[str]:
    """Probes on which `new` is more than `tolerance` worse than `ref` (both suite results)."""
    out = []
    for p in suite_of(new).probes:
        a, b = new.get(p.key), ref.get(p.key)
        if not p.gated or a is None or b is None:
            continue
        if (b - a if p.higher_is_better else a - b) > tolerance:
            out.append(f"{p.key}: {a:.3f} vs {b:.3f}")
    return out


def goals_missed(res: dict) -> list[str]:
    """The probes of the result's game whose figure misses its goal."""
    out = []
    for p in suite_of(res).probes:
        v = res.get(p.key)
        if p.goal is None or v is None:
            continue
        if (v < p.goal) if p.higher_is_better else (v > p.goal):
            out.append(f"{p.key}: {v:.3f} (goal {'>=' if p.higher_is_better else '<='} {p.goal})")
    return out


def table(res: dict, ref: dict | None = None, ref_name: str = "reference") -> str:
    """Markdown table of the probes of the result's game (with a reference column when given)."""
    head = "| probe | dream | " + (f"{ref_name} | " if ref else "") + "goal | n |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    suite = suite_of(res)
    counts = suite.counts
    fmt = lambda v: "–" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for p in suite.probes:
        goal = "" if p.goal is None else f"{'≥' if p.higher_is_better else '≤'} {100 * p.goal:.0f} %"
        goal = goal if p.gated else "reported, not gated"
        row = f"| {p.label} | {fmt(res.get(p.key))} | "
        if ref:
            row += f"{fmt(ref.get(p.key))} | "
        lines.append(row + f"{goal} | {res.get(counts.get(p.key, ''), '')} |")
    return "\n".join(lines)


CASE_CAPTIONS = {
    "phantom_serve": ", no FIRE pressed, around the dream's first ball",
    "multi_ball": ", around the frame with the most dreamed balls",
    "play": ", the first played rollout, steps 1-10",
    "branching": ", each action held 8 steps, in action order, the state where they agree least",
}


def cases_image(cases: dict, scale: int = 2) -> Image.Image:
    """Per probe, its worst case: the real frames over the dreamed ones, labelled."""
    rows = []
    for name, (real, dream) in cases.items():
        real, dream = real[0], dream[0]
        n = min(len(real), len(dream), 12)
        top = np.concatenate(list(real[:n]), 1)
        bot = np.concatenate(list(dream[:n]), 1)
        strip = np.concatenate([top, np.full((2, top.shape[1], 3), 255, np.uint8), bot], 0)
        img = Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST)
        canvas = Image.new("RGB", (img.width, img.height + 14), (20, 20, 20))
        what = CASE_CAPTIONS.get(name, "")
        ImageDraw.Draw(canvas).text((2, 1), f"{name}: real (top) / dream (bottom){what}", fill=(230, 230, 230))
        canvas.paste(img, (0, 14))
        rows.append(canvas)
    w = max(r.width for r in rows)
    out = Image.new("RGB", (w, sum(r.height + 4 for r in rows)), (20, 20, 20))
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + 4
    return out


def evaluate_model(
    model, starts_n: int = 32, seed: int = SEED, steps: int = 3, progress: bool = True, **sampler: float
) -> dict:
    """The whole suite for a world model (its game's probes) on `starts_n` starts from `seed`, dreamed
    with the model's own sampler, `steps` Euler steps and the `sampler` overrides; the result
    records the sampler settings used."""
    game = model.cfg.game
    if game not in SUITES:
        raise ValueError(f"no playability probes for {game!r} yet; they exist for {', '.join(SUITES)}")
    suite = SUITES[game]
    starts = suite.make_starts(game, starts_n, seed, progress)
    dreamer = ModelDreamer(model, steps, **sampler)
    res = suite.run(game, dreamer, starts, progress=progress)
    res.update({"suite": suite.version, "seed": seed, "euler_steps": steps, "starts_requested": starts_n})
    res["sampler"] = asdict(dreamer.sampler)
    return res


def serve_belief(model, starts: list[Start], noises: int = 4, steps: int = 3, **sampler: float) -> dict:
    """What the model believes about the serve, beyond one sampler noise: from each waiting start,
    FIRE once, dreamed with `noises` different initial noises -> the share of dreams with a ball on
    the first step; and the brightest open-field pixel (of 255) of the denoiser's estimate at
    sigma_max for FIRE and for NOOP (median over starts). A served ball is about 200 bright, an
    empty field about 30: an estimate far below the ball says the model doubts the serve, and a
    short deterministic sampler then ends on "no ball"."""
    from model.world_model.sampler import SamplerConfig

    game = model.cfg.game
    meanings = model.cfg.action_meanings
    frames, actions = model_context(model, np.stack([s.frames for s in starts]), np.stack([s.actions for s in starts]))
    served = 0
    for k in range(noises):
        dreamer = ModelDreamer(model, steps, seed=k, **sampler)
        dreamer.reset(frames, actions, [s.state for s in starts])
        f, _, _ = dreamer.step(np.full(len(starts), meanings.index("FIRE")))
        served += sum(ball_position(x, game) is not None for x in f)
    sigma = SamplerConfig().sigma_max
    device = next(model.parameters()).device
    obs = (torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 127.5 - 1).to(device)
    rows, cols = BALL_FIELD[game]
    brightest = {}
    for name in ("FIRE", "NOOP"):
        act = np.concatenate([actions, np.full((len(starts), 1), meanings.index(name))], 1)
        x = torch.randn(len(starts), *obs.shape[2:], generator=torch.Generator().manual_seed(0)) * sigma
        with torch.no_grad():
            est = model.denoiser.denoise(
                x.to(device),
                torch.full((len(starts),), sigma, device=device),
                obs,
                torch.from_numpy(act).to(device),
                torch.zeros(len(starts), dtype=torch.long, device=device),
            )
        img = ((est.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()
        brightest[name] = float(np.median(img[:, rows, cols].max((1, 2, 3))))
    return {
        "served": served,
        "dreams": noises * len(starts),
        "estimate_fire": brightest["FIRE"],
        "estimate_noop": brightest["NOOP"],
    }


def long_dream_losses(model, n: int, steps: int = 200, seed: int = 3_000_000, **sampler: float) -> dict:
    """Lost lives over long dreams: from n served and n mid-game starts (episode seeds from `seed`),
    `steps` steps of the scripted expert's real actions, dreamed; the dream's lost lives (end head,
    consecutive steps one loss) and how many its own ball did not lose (`unexplained_losses`), per
    100 dreamed steps. The suite's rollouts are 50 steps; a browser session runs for thousands, and an
    end head whose LSTM drifts past its training windows shows here."""
    game = model.cfg.game
    starts = make_starts(game, n, seed, progress=False)
    g, rng, expert = RealGame(game), np.random.default_rng(seed), EXPERTS[game]
    pool = served_starts(g, starts["waiting"], rng) + starts["in_play"]
    real = [g.rollout(s, lambda game_, t: -1 if t >= steps else expert(game_.env, rng)) for s in pool]
    keep = [i for i, r in enumerate(real) if len(r.actions) == steps]
    if not keep:
        raise ValueError(f"no start played {steps} steps without the game ending")
    frames, _, ends = dream_batch(
        ModelDreamer(model, **sampler), [pool[i] for i in keep], np.stack([real[i].actions for i in keep])
    )
    losses = unexplained = 0
    for j, i in enumerate(keep):
        lost, not_by_ball = unexplained_dream_losses(pool[i].frames, frames[j], ends[j], game)
        losses, unexplained = losses + len(lost), unexplained + len(not_by_ball)
    total = len(keep) * steps
    return {
        "dreams": len(keep),
        "steps": steps,
        "seed": seed,
        "dream_losses": losses,
        "unexplained": unexplained,
        "real_losses": int(sum(real[i].lost.sum() for i in keep)),
        "losses_per_100": 100 * losses / total,
        "unexplained_per_100": 100 * unexplained / total,
    }


def add_guidance_flags(p: argparse.ArgumentParser, help_g: str) -> None:
    """--action-guidance G and --guidance-sigma S (model/world_model/sampler.SamplerConfig), both optional."""
    p.add_argument("--action-guidance", type=float, default=None, metavar="G", help=help_g)
    p.add_argument("--guidance-sigma", type=float, default=None, metavar="S", help="guide the steps at noise >= S")


def guidance_overrides(p: argparse.ArgumentParser, a: argparse.Namespace) -> dict[str, float]:
    """The guidance flags that were given, as `WorldModel.sampler_config` overrides (p.error if < 0)."""
    flags = {"action_guidance": a.action_guidance, "guidance_sigma": a.guidance_sigma}
    given = {k: v for k, v in flags.items() if v is not None}
    if any(v < 0 for v in given.values()):
        p.error("--action-guidance and --guidance-sigma must be >= 0")
    return given


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="world-model snapshot (.safetensors or stem)")
    p.add_argument("--starts", type=int, default=32, help="waiting and in-play start states each")
    p.add_argument("--seed", type=int, default=SEED, help="first episode seed of the start states")
    p.add_argument("--steps", type=int, default=3, help="Euler steps per dreamed frame")
    p.add_argument("--compare", type=Path, default=None, help="a suite JSON to compare against")
    p.add_argument("--out", type=Path, default=None, help="JSON output")
    p.add_argument("--image", type=Path, default=None, help="PNG of the worst case per probe")
    p.add_argument("--threads", type=int, default=0)
    add_guidance_flags(p, "dream with action-contrast guidance G (default: the model's own sampler setting)")
    p.add_argument(
        "--serve-belief",
        type=int,
        default=0,
        metavar="N",
        help="only measure the serve from the first N waiting starts with 4 sampler noises each (quick)",
    )
    p.add_argument(
        "--long-dreams",
        type=int,
        default=0,
        metavar="N",
        help="only count lost lives over 200-step dreams from N served and N mid-game starts (seeds 3,000,000+)",
    )
    a = p.parse_args(argv)
    if a.starts < 2 or a.steps < 1 or a.long_dreams < 0:
        p.error(f"--starts must be >= 2, --steps >= 1, --long-dreams >= 0, got {a.starts}, {a.steps}, {a.long_dreams}")
    sampler = guidance_overrides(p, a)
    if a.threads:
        torch.set_num_threads(a.threads)
    from model.checkpoint import CheckpointError
    from model.world_model import WorldModel

    def quick(measure: Callable, line: Callable[[dict], str], **record) -> int:
        """A one-figure mode: measure(model) -> dict, printed as one line and written to --out."""
        try:
            res = measure(WorldModel.from_snapshot(a.checkpoint))
        except (CheckpointError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(line(res))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps({"checkpoint": str(a.checkpoint), **record, **res}, indent=1))
        return 0

    def long_dreams(model) -> dict:
        if model.cfg.game != "Breakout":
            raise ValueError(f"the long-dream count reads Breakout's ball, not {model.cfg.game!r}'s")
        return long_dream_losses(model, a.long_dreams, steps=200, **sampler)

    def belief(model) -> dict:
        if model.cfg.game not in WAITING:
            raise ValueError(f"no serve probe for {model.cfg.game!r}")
        starts = make_starts(model.cfg.game, a.serve_belief, a.seed)["waiting"][: a.serve_belief]
        return serve_belief(model, starts, steps=a.steps, **sampler)

    if a.long_dreams:
        return quick(
            long_dreams,
            lambda b: (
                f"{b['dreams']} dreams x {b['steps']} steps: {b['dream_losses']} lost lives in the dream "
                f"({b['losses_per_100']:.2f} per 100 steps), {b['unexplained']} its own ball did not lose "
                f"({b['unexplained_per_100']:.2f} per 100); the real game lost {b['real_losses']}"
            ),
        )
    if a.serve_belief:
        return quick(
            belief,
            lambda b: (
                f"serve on the first step after FIRE: {b['served']}/{b['dreams']} dreams; brightest field "
                f"pixel of the estimate at sigma_max: FIRE {b['estimate_fire']:.0f}, NOOP {b['estimate_noop']:.0f} "
                "(of 255)"
            ),
            seed=a.seed,
        )
    try:
        model = WorldModel.from_snapshot(a.checkpoint)
        ref = json.loads(a.compare.read_text()) if a.compare else None
        res = evaluate_model(model, a.starts, a.seed, a.steps, **sampler)
    except (CheckpointError, ValueError, OSError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cases = res.pop("_cases")
    res["checkpoint"] = str(a.checkpoint)
    print(table(res, ref, "compared"))
    missed = goals_missed(res)
    print("goals missed: " + ("; ".join(missed) if missed else "none"))
    if ref:
        worse = worse_than(res, ref)
        print("worse than the compared model: " + ("; ".join(worse) if worse else "none"))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
    if a.image and cases:
        cases_image(cases).save(a.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
