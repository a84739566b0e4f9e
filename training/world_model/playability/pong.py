"""Pong's playability suite (`PONG_PROBES`, docs/playability.md): the player's paddle under each
action, the serve after a point, one ball, the points (reward head and score digits), the
computer's paddle; objects read from the 64x64 frames.

Regions and colours are measured on real frames of `games.envs.make_env` (210x160 -> 64x64 RGB, area
resampling); tests/training/test_playability_pong_boxing.py checks each detector against the RAM.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from games.experts import EXPERTS
from training.world_model.measures import BALL_RADIUS
from training.world_model.playability import core

PONG_SUITE = 2
"""Version of Pong's probe definitions (figures of different versions are not compared). 2: the
gated point probes ask for the rule (`point_rules`): recall where the dream's ball is with the real
one, and points the dream's own ball did not earn; the plain recall and phantom figures of version 1
are reported, not gated."""
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
OPPONENT_RADIUS = 2
"""Pixels between the dream's and the real opponent paddle (Pong) for a tracked frame."""
GOAL_COLS = 4
"""A ball seen this close to the left (col <= 4) or right (col >= 59) edge of the 64-wide frame is
past a paddle: on real frames the ball of a point is seen at col 1-3 (left) or 61-62 (right) on the
step of its reward or the one before."""
EXIT_LOOKBACK = 4
"""Steps before a point (and 1 after, the reward head's tolerance) in which its ball must be seen
past a paddle for the point to be earned (`earned`)."""


def pong_player(frame: np.ndarray) -> float | None:
    """Row (in the field) of the player's green paddle's centre, None when not drawn."""
    f = frame[PONG_FIELD, PONG_PLAYER_COLS].astype(np.int16)
    p = core.mean_position(f[..., 1] - f[..., 0] > 30)
    return None if p is None else p[0]


def pong_player_position(frame: np.ndarray) -> tuple[float] | None:
    """`pong_player` as a position (row,), for the control probe."""
    p = pong_player(frame)
    return None if p is None else (p,)


def pong_opponent(frame: np.ndarray) -> float | None:
    """Row (in the field) of the computer's orange paddle's centre, None when not drawn. Orange
    is told from a faint ball by its blue: the ball is white, so it raises blue with red."""
    f = frame[PONG_FIELD, PONG_OPPONENT_COLS].astype(np.int16)
    r, b = f[..., 0], f[..., 2]
    p = core.mean_position((r > 165) & (b < 110) & (b < 17 + 1.5 * (r - 144)))
    return None if p is None else p[0]


def pong_ball_mask(frame: np.ndarray) -> np.ndarray:
    """The field's ball pixels: the white ball (236, 236, 236) covers under one pixel, so its pixels
    are a mix with the brown field (144, 72, 17); red and blue both high is neither paddle."""
    f = frame[PONG_FIELD].astype(np.int16)
    return (f[..., 2] > 90) & (f[..., 0] > 150)


def pong_ball(frame: np.ndarray) -> tuple[float, float] | None:
    return core.mean_position(pong_ball_mask(frame))


def earned(frames: np.ndarray, t: int, sign: float = 0.0) -> bool:
    """Whether a point at step t of frames (context first) was earned by the ball drawn in them:
    the ball seen past a paddle within EXIT_LOOKBACK steps before t (or 1 after). With a `sign`, past
    the paddle that point's side defends: +1 (the player's point) the computer's, on the left; -1
    (the computer's) the player's, on the right."""
    for k in range(max(0, t - EXIT_LOOKBACK), min(len(frames), t + 2)):
        b = pong_ball(frames[k])
        if b is not None and (
            (sign >= 0 and b[1] <= GOAL_COLS) or (sign <= 0 and b[1] >= frames.shape[2] - 1 - GOAL_COLS)
        ):
            return True
    return False


def unearned_points(start_frames: np.ndarray, frames: np.ndarray, events: np.ndarray, signs=None) -> int:
    """How many of the points `events` ((T,) bool) of dreamed `frames` (T, H, W, C) their own ball did
    not earn (`earned`); the start's frames go first, so a ball that left in the context counts."""
    seq, n = np.concatenate([start_frames, frames]), len(start_frames)
    return sum(
        not earned(seq, n + int(t), 0.0 if signs is None else float(np.sign(signs[t]))) for t in np.nonzero(events)[0]
    )


def ball_with_real(real: np.ndarray, dream: np.ndarray, t: int) -> bool:
    """Whether, at the last of the EXIT_LOOKBACK + 1 steps up to t where the real ball is drawn, the
    dream's ball is within BALL_RADIUS (Chebyshev) of it (real, dream: (T, H, W, C))."""
    return core.with_real(real, dream, range(t, max(-1, t - 1 - EXIT_LOOKBACK), -1), pong_ball, BALL_RADIUS)


def point_rules(
    res: dict, real: list[core.Rollout], starts: list[core.Start], d_frames, d_rew, digits: list[np.ndarray]
) -> None:
    """A point is scored when the ball passes a paddle, never otherwise, judged in the dream's own
    world, and compared with the real points where the dream's ball is with the real one:

    - `unearned_score` (gated): rollouts where the reward head scores a point the dream's own ball
      did not earn (not seen past the paddle of that side); `unearned_digits` the same for a change
      of the dreamed score digits;
    - `score_recall_ball_with_real`, `digit_recall_ball_with_real` (gated): real points where the
      dream's ball was with the real one that the dream scores (reward head; digits) within 1 step;
    - `score_precision_ball_with_real` (reported): dreamed points where its ball was with the real
      one that have a real point within 1 step.

    `digits`: the dreamed score's changes per rollout, as `core.score_probes` returns them.

    The ball is under a pixel wide; from a 4-frame context its sub-pixel position is hidden, so in
    open loop the dream's ball parts from the real one within 10-20 steps and then scores (or not)
    by the rules where the real one does not: the plain recall and phantom figures count that too."""
    bad_r = sum(unearned_points(s.frames, d, rew != 0, rew) > 0 for s, d, rew in zip(starts, d_frames, d_rew))
    bad_d = sum(unearned_points(s.frames, d, dg) > 0 for s, d, dg in zip(starts, d_frames, digits))
    res["unearned_score"], res["unearned_digits"] = core.share(bad_r, len(real)), core.share(bad_d, len(real))
    res["unearned_n"] = len(real)

    def together(j: int, t: int) -> bool:
        return ball_with_real(real[j].frames, d_frames[j], t)

    core.points_matched_where(res, "ball_with_real", real, d_rew, digits, together)


# -- start states and the probes -------------------------------------------------------------------
def pong_starts(game: str, n: int, seed: int = core.SEED, progress: bool = True) -> dict[str, list[core.Start]]:
    """Per episode seed seed, seed+1, ...: an in-play start (the expert plays 20-150 steps, then on
    until the ball has been in the field for 4 frames), and from there an after-point start (the
    player runs from the ball until a point is scored; the start is 2 steps after the point, the
    ball gone and the new score drawn, the serve about `PONG_SERVE_PAUSE` - 2 steps away)."""
    g, expert, rng = core.RealGame(game), EXPERTS[game], np.random.default_rng(seed)
    out: dict[str, list[core.Start]] = {"in_play": [], "after_point": []}
    for k in tqdm(range(n), desc="start states", disable=not progress, leave=False):
        g.reset(seed + k)
        done, warmup = False, int(rng.integers(20, 151))
        for t in range(warmup + 60):
            done = g.step(expert(g.env, rng))[2]
            if done or (t >= warmup and all(pong_ball(f) is not None for f in g.frames[-core.CONTEXT :])):
                break
        if done:
            continue
        if all(pong_ball(f) is not None for f in g.frames[-core.CONTEXT :]):
            out["in_play"].append(g.start("in_play", seed + k))
        for _ in range(300):
            r, _, done = g.step(core.mirrored(game, g, rng, fire=False))
            if r or done:
                break
        for _ in range(2):  # the computer's new score is drawn a step after its point
            done = done or g.step(g.idx("NOOP"))[2]
        if r and not done:
            out["after_point"].append(g.start("after_point", seed + k))
    return out


def run_pong(
    game: str,
    dreamer: core.Dreamer,
    starts: dict[str, list[core.Start]],
    play_steps: int = 50,
    branch_steps: int = 8,
    serve_steps: int = 30,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Pong's probes (`PONG_PROBES`) for one dreamer on `pong_starts`; JSON-able, with '_cases'."""
    g, rng, res, cases, bar = core.probes_begin(game, starts, ("in_play", "after_point"), 3, seed, progress)
    in_play, after = starts["in_play"], starts["after_point"]

    # 1. control: every action held; the paddle follows RIGHT (up) and LEFT (down) and nothing else
    if in_play:
        real_b, d_b, _ = core.branch_rollouts(g, dreamer, in_play, list(range(len(g.meanings))), branch_steps, progress)
        core.control_probe(res, cases, real_b, d_b, g.meanings, pong_player_position)
    bar.update(1)

    # 2. serve: from the step of a point, idle play; the dream's ball comes back with the real one
    idle = np.stack([core.idle_actions(g.meanings, serve_steps, rng) for _ in after]) if after else None
    real_s = [
        g.rollout(s, lambda game_, t, row=row: int(row[t]) if t < len(row) else -1)
        for s, row in zip(after, idle if after else [])
    ]
    keep = [i for i, r in enumerate(real_s) if len(r.actions) == serve_steps]
    ok = n = 0
    delays: list[int | None] = []
    serve_real, serve_starts, d_serve, d_serve_rew = [real_s[i] for i in keep], [after[i] for i in keep], None, None
    if keep:
        d_serve, d_serve_rew, _ = core.dream_batch(dreamer, serve_starts, idle[keep], "serve", progress)
        for j, r in enumerate(serve_real):
            r_first = next((t for t, f in enumerate(r.frames) if pong_ball(f) is not None), None)
            if r_first is None:
                continue
            d_first = next((t for t, f in enumerate(d_serve[j]) if pong_ball(f) is not None), None)
            n += 1
            ok += d_first is not None and abs(d_first - r_first) <= 2
            delays.append(None if d_first is None else d_first - r_first)
    res["serve"], res["serve_n"], res["serve_delays"] = core.share(ok, n), n, delays
    bar.update(1)

    # 3. play: the expert, or missing on purpose; points, one ball, the opponent paddle
    real, p_starts, d_play, d_rew = core.played(game, dreamer, g, in_play, play_steps, rng, progress)
    all_real, all_starts = real + serve_real, p_starts + serve_starts
    all_frames = [*(d_play if real else []), *(d_serve if keep else [])]
    all_rew = [*(d_rew if real else []), *(d_serve_rew if keep else [])]
    if all_real:
        digits = core.score_probes(res, all_real, all_starts, all_frames, all_rew, PONG_SCORE)
        point_rules(res, all_real, all_starts, all_frames, all_rew, digits)
    one = multi = near = seen = 0
    worst = (0, None)
    for r, d in zip(all_real, all_frames):
        for t, (rf, df) in enumerate(zip(r.frames, d)):
            if core.count_blobs(pong_ball_mask(rf)) == 1:
                one += 1
                nb = core.count_blobs(pong_ball_mask(df))
                multi += nb >= 2
                if nb > worst[0]:
                    worst = (nb, (r.frames, d, t))
            ro = pong_opponent(rf)
            if t < 15 and ro is not None:
                do = pong_opponent(df)
                seen += 1
                near += do is not None and abs(do - ro) <= OPPONENT_RADIUS
    res["multi_ball"], res["multi_ball_frames"] = core.share(multi, one), one
    res["opponent_tracking"], res["opponent_tracking_frames"] = core.share(near, seen), seen
    if worst[1] is not None:
        rs, ds, t = worst[1]
        lo = max(0, min(t - 4, len(rs) - 10))
        cases["multi_ball"] = (rs[None, lo : lo + 10], ds[None, lo : lo + 10])
    return core.probes_end(res, cases, bar, real, d_play)


PONG_PROBES = [
    core.Probe(
        "player_control",
        "branches (each action held 8 steps) whose dreamed paddle ends within 1 px of the real one",
        True,
        0.90,
    ),
    core.Probe("serve", "after a point: dream's ball back within 2 steps of the real serve", True, None),
    core.Probe("multi_ball", "frames with 2+ ball blobs where the real game has one", False, 0.03),
    core.Probe(
        "score_recall_ball_with_real",
        "real points the dream scores (reward head) within 1 step, its ball with the real one before",
        True,
        0.80,
    ),
    core.Probe(
        "digit_recall_ball_with_real",
        "real points whose dreamed digits change within 1 step, the dream's ball with the real one before",
        True,
        0.80,
    ),
    core.Probe(
        "unearned_score", "rollouts where the dream scores a point (reward head) its own ball did not earn", False, 0.05
    ),
    core.Probe(
        "unearned_digits",
        "rollouts where the dreamed digits change without the dream's ball past a paddle",
        False,
        0.05,
    ),
    core.Probe("score_precision", "dreamed points (reward head) with a real point within 1 step", True, None, False),
    core.SCORE_PRECISION_BALL_WITH_REAL,
    core.Probe(
        "score_recall",
        "real points the dream scores (reward head) within 1 step (parting balls too)",
        True,
        None,
        False,
    ),
    core.Probe(
        "phantom_score",
        "rollouts with a dreamed point (reward head) and no real one (parting balls too)",
        False,
        None,
        False,
    ),
    core.Probe(
        "digit_recall", "real points whose dreamed digits change within 1 step (parting balls too)", True, None, False
    ),
    core.Probe(
        "digit_phantom",
        "rollouts whose dreamed digits change and no real point (parting balls too)",
        False,
        None,
        False,
    ),
    core.Probe(
        "opponent_tracking", "frames (steps 1-15) with the dream's opponent paddle within 2 px of the real", True, None
    ),
]
PONG_COUNTS = {
    "player_control": "player_control_n",
    "serve": "serve_n",
    "multi_ball": "multi_ball_frames",
    "opponent_tracking": "opponent_tracking_frames",
    "unearned_score": "unearned_n",
    "unearned_digits": "unearned_n",
    "score_recall_ball_with_real": "score_recall_ball_with_real_events",
    "digit_recall_ball_with_real": "digit_recall_ball_with_real_events",
    "score_precision_ball_with_real": "score_precision_ball_with_real_events",
    **core.SCORE_COUNTS,
}
"""Probe key -> the result key holding how many cases its figure counts (the table's n)."""
