"""Boxing's playability suite (`BOXING_PROBES`, docs/playability.md): the boxer under each move,
the punch, the points (reward head and score digits; also where the dream's boxers are with the
real ones), the round clock, one opponent; objects read from the 64x64 frames, as Pong's are
(pong.py; the same test file checks both games' detectors against the emulator's RAM).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from games.experts import EXPERTS
from training.world_model.playability import core

BOXING_RING = (slice(8, 57), slice(8, 56))
"""Rows and columns of Boxing's ring, ropes included (the boxers never leave it)."""
BOXING_SCORE = (slice(0, 4), slice(4, 64))
"""The two scores (player left, computer right); columns 0-3 are the emulator's black border."""
BOXING_CLOCK = (slice(4, 8), slice(16, 44))
"""The round clock (2:00 counting down; one second is 15 agent steps, RAM 17/18 = seconds/minutes)."""
BOXING_SUITE = 2
"""Version 2 added, reported: the points counted where the dream's boxers are with the real ones,
and control over the branches where the computer lands no punch on the player."""
BOXERS_RADIUS = 2
"""Pixels (of 64, Chebyshev) within which each of the dream's boxers (its centroid) is with the real
one: a boxer is about 6 pixels wide and 12 tall, a step moves it up to 2."""


def boxing_player(frame: np.ndarray) -> tuple[float, float] | None:
    """Centroid (row, col in the ring) of the white boxer (214, 214, 214), the player."""
    return core.mean_position(frame[BOXING_RING].min(-1) > 150)


def boxing_opponent_mask(frame: np.ndarray) -> np.ndarray:
    """The black boxer's pixels in the ring (the ring is green, its ropes orange)."""
    return frame[BOXING_RING].astype(np.int16).sum(-1) < 200


def boxing_opponent(frame: np.ndarray) -> tuple[float, float] | None:
    """Centroid (row, col in the ring) of the black boxer, the computer."""
    return core.mean_position(boxing_opponent_mask(frame))


def boxers_with_real(real: np.ndarray, dream: np.ndarray, k: int) -> bool:
    """Whether in frame k of real and dream ((T, H, W, C)) both of the dream's boxers are within
    BOXERS_RADIUS of the real ones."""
    return all(core.with_real(real, dream, [k], find, BOXERS_RADIUS) for find in (boxing_player, boxing_opponent))


def points_with_real(
    res: dict, real: list[core.Rollout], starts: list[core.Start], d_frames, d_rew, digits: list[np.ndarray]
) -> None:
    """The points counted only at steps where, in the frame before, the dream's boxers are with the
    real ones (`boxers_with_real`; at the first step the start's own frame, which both share):

    - `score_precision_boxers_with_real`: dreamed points (reward head) with a real point within 1 step;
    - `score_recall_boxers_with_real`, `digit_recall_boxers_with_real`: real points the dream scores
      (reward head; `digits`, the dreamed score's changes from `core.score_probes`) within 1 step.

    Reported beside the plain figures, which count every step: in open loop the dream's boxers part
    from the real ones (the computer's moves are not all in 4 frames) and a punch can land in the
    dream where the real one misses. Where the boxers agree, a dreamed point the real game does not
    give is the dream's (or its reward head's) own error."""
    # frame t of these is the one before step t: the start's, then the rollout's
    real_seq = [np.concatenate([s.frames[-1:], r.frames]) for s, r in zip(starts, real)]
    dream_seq = [np.concatenate([s.frames[-1:], d]) for s, d in zip(starts, d_frames)]

    def together(j: int, t: int) -> bool:
        return boxers_with_real(real_seq[j], dream_seq[j], t)

    core.points_matched_where(res, "boxers_with_real", real, d_rew, digits, together)


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


def control_unpunched(res: dict, real_b: np.ndarray, d_b: np.ndarray, real_r: np.ndarray) -> None:
    """`player_control_unpunched` (reported): the control probe over the branches in which the
    computer lands no punch on the player in the real game (no point for it, `real_r` < 0). A landed
    punch knocks the player back, and when it lands follows the computer's moves, not the keys.
    real_b, d_b: (S, A, T, H, W, C) frames of the held moves; real_r: (S, A, T) real rewards."""
    ok = n = 0
    for i, a in zip(*np.nonzero(~(real_r < 0).any(-1))):
        r, d = boxing_player(real_b[i, a, -1]), boxing_player(d_b[i, a, -1])
        if r is not None:
            n += 1
            ok += d is not None and core.control_error(r, d) <= core.CONTROL_RADIUS
    res["player_control_unpunched"], res["player_control_unpunched_n"] = core.share(ok, n), n


# -- start states and the probes -------------------------------------------------------------------
def boxing_starts(game: str, n: int, seed: int = core.SEED, progress: bool = True) -> dict[str, list[core.Start]]:
    """Per episode seed: an in-play start after 10-200 steps of the expert (a round lasts 1,800)."""
    g, expert, rng = core.RealGame(game), EXPERTS[game], np.random.default_rng(seed)
    out: dict[str, list[core.Start]] = {"in_play": []}
    for k in tqdm(range(n), desc="start states", disable=not progress, leave=False):
        g.reset(seed + k)
        if not any(g.step(expert(g.env, rng))[2] for _ in range(int(rng.integers(10, 201)))):
            out["in_play"].append(g.start("in_play", seed + k))
    return out


BOXING_MOVES = ("NOOP", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT")


def run_boxing(
    game: str,
    dreamer: core.Dreamer,
    starts: dict[str, list[core.Start]],
    play_steps: int = 50,
    branch_steps: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Boxing's probes (`BOXING_PROBES`) for one dreamer on `boxing_starts`; JSON-able, with '_cases'."""
    g, rng, res, cases, bar = core.probes_begin(game, starts, ("in_play",), 2, seed, progress)
    in_play = starts["in_play"]

    # 1. control: NOOP and the 8 directions held; punch: FIRE against NOOP over the first 3 steps
    if in_play:
        acts = [g.idx(m) for m in (*BOXING_MOVES, "FIRE")]
        real_b, d_b, real_r = core.branch_rollouts(g, dreamer, in_play, acts, branch_steps, progress)
        core.control_probe(res, cases, real_b[:, :-1], d_b[:, :-1], list(BOXING_MOVES), boxing_player)
        control_unpunched(res, real_b[:, :-1], d_b[:, :-1], real_r[:, :-1])
        agree = punches = 0
        for i in range(len(in_play)):
            r = any(core.frames_differ(real_b[i, -1, t], real_b[i, 0, t]) for t in range(3))
            d = any(core.frames_differ(d_b[i, -1, t], d_b[i, 0, t]) for t in range(3))
            agree, punches = agree + (r == d), punches + r
        res["punch"], res["punch_n"], res["punch_real"] = core.share(agree, len(in_play)), len(in_play), punches
    bar.update(1)

    # 2. play: the expert, or running from the opponent; points, the clock, one opponent
    real, p_starts, d_play, d_rew = core.played(game, dreamer, g, in_play, play_steps, rng, progress)
    if real:
        digits = core.score_probes(res, real, p_starts, d_play, d_rew, BOXING_SCORE)
        points_with_real(res, real, p_starts, d_play, d_rew, digits)
        ok = n = one = split = 0
        for r, s, d in zip(real, p_starts, d_play):
            o, c = clock_agreement(r.frames, d, s.frames[-1])
            ok, n = ok + o, n + c
            for rf, df in zip(r.frames, d):
                if core.count_blobs(boxing_opponent_mask(rf), grow=2) == 1:
                    one += 1
                    split += core.count_blobs(boxing_opponent_mask(df), grow=2) != 1
        res["clock"], res["clock_n"] = core.share(ok, n), n
        res["opponent_split"], res["opponent_split_frames"] = core.share(split, one), one
    return core.probes_end(res, cases, bar, real, d_play)


BOXING_PROBES = [
    core.Probe(
        "player_control", "branches (NOOP, 8 directions held 8 steps) whose dreamed boxer ends within 1 px", True, 0.90
    ),
    core.Probe(
        "player_control_unpunched",
        "the same, over the branches where the computer lands no punch on the player (real game)",
        True,
        None,
        False,
    ),
    core.Probe(
        "punch",
        "starts where FIRE changes the dream (vs NOOP, 3 steps) exactly when it changes the real game",
        True,
        None,
    ),
    core.Probe("score_precision", "dreamed points (reward head) with a real point within 1 step", True, None),
    core.Probe("score_recall", "real points the dream scores (reward head) within 1 step", True, 0.80),
    core.Probe("phantom_score", "rollouts with a dreamed point (reward head) and no real one", False, 0.05),
    core.Probe("digit_recall", "real points whose dreamed score digits change within 1 step", True, 0.80),
    core.Probe("digit_phantom", "rollouts whose dreamed score digits change and no real point", False, 0.05),
    core.Probe(
        "score_precision_boxers_with_real",
        "dreamed points (reward head) with a real point within 1 step, the dream's boxers with the real ones before",
        True,
        None,
        False,
    ),
    core.Probe(
        "score_recall_boxers_with_real",
        "real points the dream scores (reward head) within 1 step, the dream's boxers with the real ones before",
        True,
        None,
        False,
    ),
    core.Probe(
        "digit_recall_boxers_with_real",
        "real points whose dreamed score digits change within 1 step, the dream's boxers with the real ones before",
        True,
        None,
        False,
    ),
    core.Probe("clock", "every 5th step: the dreamed clock reads the real one (+-1 step)", True, None),
    core.Probe("opponent_split", "frames with other than one black boxer where the real game has one", False, None),
]
BOXING_COUNTS = {
    "player_control": "player_control_n",
    "player_control_unpunched": "player_control_unpunched_n",
    "punch": "punch_n",
    "clock": "clock_n",
    "opponent_split": "opponent_split_frames",
    **core.SCORE_COUNTS,
    **{f"{k}_boxers_with_real": f"{k}_boxers_with_real_events" for k in ("score_precision", "score_recall")},
    "digit_recall_boxers_with_real": "digit_recall_boxers_with_real_events",
}
"""Probe key -> the result key holding how many cases its figure counts (the table's n)."""
