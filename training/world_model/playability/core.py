"""What every game's playability suite stands on (the suites: breakout.py, pong.py, boxing.py).

- the dream: anything with the `Dreamer` interface, the world model through `ModelDreamer`, or in
  tests the real emulator itself (`OracleDreamer`);
- the real side: `RealGame` (one emulator and the frames and actions that led to its state), its
  `Start` states and `Rollout`s;
- measuring: blobs, visible differences, dreaming a batch of starts (`dream_batch`), matching events
  of the real game and the dream (`match_events`), and `Probe`, one row of a suite;
- what the Pong and Boxing suites share: held-action branches, the played rollouts, the score
  probes (reward head and score digits) and player control.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from games.envs import action_meanings, make_env
from games.experts import EXPERTS

CONTEXT = 4
"""Frames of play before a start: 3 steps after a reset, a lost life or a serve."""
HISTORY = 16
"""Frames each start keeps, for models that see more than 4 (`context_frames`); a start with
fewer behind it (just after a reset) repeats its first frame, with NOOPs between, as the training
windows do at an episode's start. A dream takes the last `context_frames` of them."""
SEED = 2_000_000
"""First episode seed of the suite's start states; no other part of the project uses seeds here."""


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

    def __init__(self, model, steps: int | None = None, seed: int = 0, **sampler: float) -> None:
        """The model's own sampler (`WorldModel.sampler_config`) with `steps` Euler steps (None: its
        own, 3, or 1 for a distilled model) and any other `sampler` settings (action_guidance=...)."""
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


# -- measuring frames and events ---------------------------------------------------------------
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


def with_real(real: np.ndarray, dream: np.ndarray, steps, locate: Callable, radius: float) -> bool:
    """Whether, at the first of `steps` (frame indices, searched in the order given) where
    `locate(frame)` finds the real object, the dream's is within `radius` (Chebyshev) of it
    (real, dream: (T, H, W, C)); False when the real object is drawn in none of them."""
    for k in steps:
        r = locate(real[k])
        if r is not None:
            d = locate(dream[k])
            return d is not None and max(abs(a - b) for a, b in zip(d, r)) <= radius
    return False


def matched_where(events: list, others: list, together: Callable[[int, int], bool]) -> tuple[float | None, int]:
    """Share of the `events` (per rollout j, (T,) bool) at steps t where `together(j, t)` that have
    one of `others` within 1 step; and how many such events there were."""
    hit = n = 0
    for j, (ev, ot) in enumerate(zip(events, others)):
        near = np.nonzero(ot)[0]
        for t in np.nonzero(ev)[0]:
            if together(j, int(t)):
                n += 1
                hit += bool(np.any(np.abs(near - t) <= 1))
    return share(hit, n), n


def points_matched_where(
    res: dict, where: str, real: list, d_rew: list, digits: list, together: Callable[[int, int], bool]
) -> None:
    """The points counted only at steps where `together(j, t)` (the dream's objects with the real
    ones; `matched_where`), into `res`: score_recall_{where} (real points the reward head scores
    within 1 step), digit_recall_{where} (real points whose dreamed `digits` change within 1 step)
    and score_precision_{where} (dreamed points with a real one within 1 step), each with its
    count under the key + "_events". real: rollouts (`Rollout`); d_rew: dreamed rewards (T,) each."""
    real_ev, d_ev = [r.rewards != 0 for r in real], [rew != 0 for rew in d_rew]
    for name, events, others in (
        ("score_recall", real_ev, d_ev),
        ("digit_recall", real_ev, digits),
        ("score_precision", d_ev, real_ev),
    ):
        res[f"{name}_{where}"], res[f"{name}_{where}_events"] = matched_where(events, others, together)


@dataclass
class Probe:
    key: str
    label: str
    higher_is_better: bool
    goal: float | None = None
    gated: bool = True
    """Whether ship.py's gate compares it (a reported figure explains a gated one)."""


SCORE_PRECISION_BALL_WITH_REAL = Probe(
    "score_precision_ball_with_real",
    "dreamed points with a real point within 1 step, the dream's ball with the real one before",
    True,
    None,
    False,
)
"""The reported precision of the games with a ball (Breakout, Pong): a dreamed point counts where the
dream's ball was with the real one before it, not where its own ball, parted from the real one,
scores by the rules."""


# -- what the Pong and Boxing suites share: objects, branches, played rollouts, the score ---------
CONTROL_RADIUS = 1
"""Pixels (of 64) between the dream's and the real player position for a controlled branch."""


def control_error(real: tuple | None, dream: tuple | None) -> float | None:
    """Pixels (Chebyshev) between the dreamed player position and the real one; None when either
    is not drawn. Within CONTROL_RADIUS is a controlled branch."""
    return None if real is None or dream is None else max(abs(x - y) for x, y in zip(real, dream))


def mean_position(lit: np.ndarray) -> tuple[float, float] | None:
    """Centroid (row, col) of a boolean mask, None when nothing is lit."""
    if not lit.any():
        return None
    y, x = np.nonzero(lit)
    return float(y.mean()), float(x.mean())


def region_changes(frames: np.ndarray, before: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    """(T,) bool: whether `region` (a score) visibly changes from the frame before each of frames
    (T, H, W, C); `before` is the frame the rollout starts from."""
    seq = np.concatenate([before[None], frames])[:, region[0], region[1]]
    return np.array([frames_differ(a, b, min_pixels=2) for a, b in zip(seq[:-1], seq[1:])])


def pad_rollout(r: Rollout, steps: int) -> np.ndarray:
    """The rollout's frames, a finished game's last frame repeated up to `steps`."""
    return np.concatenate([r.frames, np.repeat(r.frames[-1:], steps - len(r.frames), 0)])


def held(a: int, steps: int) -> Callable[[RealGame, int], int]:
    return lambda game_, t: a if t < steps else -1


def real_branches(g: RealGame, starts: list[Start], actions: list[int], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Each action held `steps` steps from each start in the real game -> frames (S, A, T, H, W, C)
    and rewards (S, A, T) (a finished game's last frame repeated, 0 reward after it)."""
    rollouts = [g.rollout(s, held(int(a), steps)) for s in starts for a in actions]
    real = np.stack([pad_rollout(r, steps) for r in rollouts])
    rewards = np.stack([np.pad(r.rewards, (0, steps - len(r.rewards))) for r in rollouts])
    shape = (len(starts), len(actions), steps)
    return real.reshape(*shape, *real.shape[2:]), rewards.reshape(shape)


def branch_rollouts(
    g: RealGame, dreamer: Dreamer, starts: list[Start], actions: list[int], steps: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each action held `steps` steps from each start, real and dreamed -> frames (S, A, T, H, W, C)
    real and dreamed, and the real rewards (S, A, T) (0 after a finished game)."""
    real, rewards = real_branches(g, starts, actions, steps)
    b_starts = [s for s in starts for _ in actions]
    acts = np.repeat(np.tile(actions, len(starts))[:, None], steps, 1)
    dream, _, _ = dream_batch(dreamer, b_starts, acts, "branches", progress)
    return real, dream.reshape(real.shape), rewards


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


def score_probes(res: dict, real: list[Rollout], starts: list[Start], d_frames, d_rew, region) -> list[np.ndarray]:
    """Points, from the reward head and from the score digits, against the real points (+-1 step).
    Returns the dreamed digit changes per rollout ((T,) bool, `region_changes`) for the game's own
    point probes."""
    real_ev = [r.rewards != 0 for r in real]
    m = match_events(real_ev, [r != 0 for r in d_rew])
    res["score_precision"], res["score_dream_events"] = m["precision"], m["dream_events"]
    res["score_recall"], res["score_real_events"] = m["recall"], m["real_events"]
    res["phantom_score"], res["phantom_score_n"] = m["phantom"], m["rollouts_without"]
    digits = [region_changes(d, s.frames[-1], region) for d, s in zip(d_frames, starts)]
    m = match_events(real_ev, digits)
    res["digit_recall"], res["digit_phantom"], res["digit_n"] = m["recall"], m["phantom"], m["rollouts_without"]
    return digits


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
    errors, lost = [], 0  # how far the dreamed player ends from the real one; branches with none drawn
    for i in range(real_b.shape[0]):
        hi = ni = 0
        for a, name in enumerate(names):
            r, d = where(real_b[i, a, -1]), where(d_b[i, a, -1])
            if r is None:
                continue
            err = control_error(r, d)
            errors += [] if err is None else [err]
            lost += err is None
            ok = err is not None and err <= CONTROL_RADIUS
            hi, ni = hi + ok, ni + 1
            by_action[name][0] += ok
            by_action[name][1] += 1
        hits, n = hits + hi, n + ni
        if ni and hi / ni < worst[0]:
            worst = (hi / ni, i)
    res["player_control"], res["player_control_n"] = share(hits, n), n
    res["player_control_by_action"] = {k: share(h, m) for k, (h, m) in by_action.items()}
    # reported, not gated: a near miss (1.5 px) and a lost player (10 px) fail the probe alike
    res["player_control_error_px"] = (
        {"median": float(np.median(errors)), "p90": float(np.percentile(errors, 90)), "no_player_drawn": lost}
        if errors
        else None
    )
    if worst[1] is not None:
        cases["player_control"] = (real_b[worst[1], :, -1][None], d_b[worst[1], :, -1][None])


SCORE_COUNTS = {
    "score_precision": "score_dream_events",
    "score_recall": "score_real_events",
    "phantom_score": "phantom_score_n",
    "digit_recall": "score_real_events",
    "digit_phantom": "digit_n",
}
