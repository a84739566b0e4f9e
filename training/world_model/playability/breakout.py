"""Breakout's playability suite (docs/playability.md).

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
  plain recall is reported, as the trajectories part within 15-20 steps); precision the same way
  (`score_precision_ball_with_real`, reported); phantom score: share of rollouts with a dreamed
  point and no real one;
- branching: from mid-game states each action held for `branch_steps` steps, real and dream:
  PSNR per branch, and the share of action pairs where the dream's branches differ exactly when
  the real ones do;
- fidelity over the played rollouts: ball recall per dreamed step, PSNR and motion PSNR at
  h = 1, 5, 15, 50 beside repeat-last.
- paddle_bounce (reported): real bounces off the paddle where the dream's ball was with the real
  one `BOUNCE_LEAD` steps before: share where it is still with it `BOUNCE_LEAD` steps after (the
  ball recall lost at the paddle; `paddle_bounce_ball_gone`: of the misses, the share where the
  dream draws no ball at all).

The played rollouts (life loss, score, ball recall, fidelity) start from the waiting states served
for real (`served_starts`: FIRE and 3 steps, so the context shows the ball in flight) and from the
mid-game states. Where a serve puts the ball is hidden from the frames (Breakout picks one of four
columns by its frame counter), so a rollout started from the wait would compare the dream's ball
with a coin the dream cannot see.

`serve_belief` and `long_dream_losses` are the quick one-figure modes of the command
(`--serve-belief`, `--long-dreams`).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from games.experts import EXPERTS, WAITING
from training.world_model.measures import (
    BALL_FIELD,
    BALL_RADIUS,
    PADDLE_ROWS,
    ball_position,
    ball_recall,
    motion_mask,
    psnr,
)
from training.world_model.playability import core

SUITE = 3
"""Version of the probes' definitions: figures of different versions are not compared (ship.py
measures the shipped model again). 2: the played rollouts start from a real serve. 3: a phantom
life loss is one the dream's own ball did not lose, and score recall is gated where the dream's ball
is with the real one (the open-loop figures that also count trajectories parting are reported)."""
EXIT_WINDOW = 12
"""Steps after its ball leaves the field through the bottom within which a lost life is the rule
(Breakout pauses 9 steps before the counter drops; `training.world_model.data.LIFE_LOSS_PAUSE`)."""
SCORE_LOOKBACK = 8
"""Steps before a real point searched for the last frame with the real ball in the open field (the
ball hits bricks above it), where the dream's ball must be within `BALL_RADIUS` of it."""
SERVE_STEPS = 6
"""Steps dreamed after FIRE from a waiting start for the serve probe."""
BANDS = ((1, 1), (2, 5), (6, 15), (16, 50))
"""Dreamed steps (first, last) over which ball recall is pooled."""
BOUNCE_LEAD = 2
"""Steps before and after a real paddle bounce at which the dream's ball is compared with the real one."""


# -- start states ----------------------------------------------------------------------------
def make_starts(game: str, n: int, seed: int = core.SEED, progress: bool = True) -> dict[str, list[core.Start]]:
    """n waiting starts (half after a reset, half after a lost life) and n in-play starts, each
    from its own episode seed seed, seed+1, ... Waiting: the game has no ball and waits for FIRE;
    in play: served and played by the scripted expert for 5-150 steps."""
    g, waiting, expert = core.RealGame(game), WAITING[game], EXPERTS[game]
    out: dict[str, list[core.Start]] = {"waiting": [], "in_play": []}
    rng = np.random.default_rng(seed)
    for k in tqdm(range(n), desc="start states", disable=not progress, leave=False):
        sd = seed + k
        g.reset(sd)
        for _ in range(core.CONTEXT - 1):
            g.step(g.idx("NOOP"))
        if k % 2 == 1:  # serve, then run from the ball until the life is lost
            g.step(g.idx("FIRE"))
            for _ in range(400):
                a = expert(g.env, rng)
                mirror = {"LEFT": "RIGHT", "RIGHT": "LEFT"}.get(g.meanings[a], "NOOP")
                if g.step(g.idx(mirror))[1]:
                    break
            for _ in range(core.CONTEXT - 1):  # context: the empty field after the loss
                g.step(g.idx("NOOP"))
        if waiting(g.env):
            out["waiting"].append(g.start("reset" if k % 2 == 0 else "life_lost", sd))
        g.reset(sd)
        for _ in range(core.CONTEXT - 1):
            g.step(g.idx("NOOP"))
        g.step(g.idx("FIRE"))
        for _ in range(int(rng.integers(5, 151))):
            if g.step(expert(g.env, rng))[2]:  # game over
                break
        if not waiting(g.env):
            out["in_play"].append(g.start("in_play", sd))
    return out


def served_starts(g: core.RealGame, waiting: list[core.Start], rng: np.random.Generator) -> list[core.Start]:
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
        for _ in range(core.CONTEXT - 1):
            done = done or g.step(expert(g.env, rng))[2]
        if not done and all(ball_position(f, g.game) is not None for f in g.frames[-core.CONTEXT :]):
            out.append(g.start("served", s.seed))
    return out


# -- measuring frames ----------------------------------------------------------------------------
def ball_blobs(frame: np.ndarray, game: str) -> int:
    """Separate bright blobs in the game's open field (8-connected after a 1-pixel dilation, so
    a ball drawn in two touching halves counts once)."""
    rows, cols = BALL_FIELD[game]
    return core.count_blobs(frame[rows, cols].max(-1) > 50)


PROBES = [
    core.Probe("phantom_serve", "dreams that serve a ball without FIRE", False, 0.05),
    core.Probe("serve", "FIRE: dream's ball within 2 steps of the real serve", True, 0.90),
    core.Probe("multi_ball", "frames with 2+ ball blobs where the real game has one", False, 0.03),
    core.Probe("ball_where_none_1_15", "frames with a ball where the real field has none, steps 1-15", False, None),
    core.Probe("ball_where_none_16_50", "frames with a ball where the real field has none, steps 16-50", False, 0.10),
    core.Probe("life_loss_recall", "real lost lives the dream's end head sees within 3 steps", True, 0.80),
    core.Probe(
        "phantom_life_loss",
        "rollouts where the dream loses a life its own ball did not lose (a broken rule)",
        False,
        0.05,
    ),
    core.Probe(
        "life_loss_without_real",
        "rollouts where the dream loses a life and the real game does not (counts parting trajectories)",
        False,
        gated=False,
    ),
    core.Probe("score_precision", "dreamed points with a real point within 1 step", True, None),
    core.SCORE_PRECISION_BALL_WITH_REAL,
    core.Probe(
        "score_recall_ball_with_real",
        "real points the dream scores within 1 step, its ball with the real one before",
        True,
        0.80,
    ),
    core.Probe(
        "score_recall", "real points the dream scores within 1 step (parting trajectories too)", True, None, False
    ),
    core.Probe("phantom_score", "rollouts with a dreamed point and no real one", False, 0.05),
    core.Probe(
        "branch_agreement", "action pairs whose dreamed branches differ exactly when the real ones do", True, None
    ),
    core.Probe("ball_recall_16_50", "ball recall over dreamed steps 16-50", True, 0.50),
    core.Probe(
        "paddle_bounce",
        "real paddle bounces the dream's ball makes with it (within 3 px 2 steps before and after)",
        True,
        None,
        False,
    ),
]


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
    steps = range(t - 1, max(-1, t - 1 - SCORE_LOOKBACK), -1)
    return core.with_real(real, dream, steps, lambda f: ball_position(f, game), BALL_RADIUS)


def paddle_bounces(real: np.ndarray, game: str) -> list[int]:
    """Steps t where the real ball (frames (T, H, W, C)) turns upward at the paddle: at t it is within
    PADDLE_ROWS of the bottom of the open field and not above where it was at t - 1, and at t + 1 it
    is higher. A ball that stays on the paddle row for two steps turns on the second; one that dips
    below the open field into the paddle's rows at t - 1 (not drawn there) turns at t."""
    rows = BALL_FIELD[game][0]
    bottom = rows.stop - rows.start - 1
    pos = [ball_position(f, game) for f in real]
    out = []
    for t in range(1, len(pos) - 1):
        a, b, c = pos[t - 1], pos[t], pos[t + 1]
        if b is None or c is None:
            continue
        if b[0] >= bottom - PADDLE_ROWS and (a is None or b[0] >= a[0]) and c[0] < b[0] - 0.5:
            out.append(t)
    return out


def near(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Both balls drawn and within BALL_RADIUS (Chebyshev) of each other."""
    return a is not None and b is not None and max(abs(a[0] - b[0]), abs(a[1] - b[1])) <= BALL_RADIUS


# -- the probes ------------------------------------------------------------------------------------
def run(
    game: str,
    dreamer: core.Dreamer,
    starts: dict[str, list[core.Start]],
    idle_steps: int = 60,
    play_steps: int = 50,
    branch_steps: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """All probes for one dreamer on the given starts. Returns a JSON-able dict, with the arrays
    for the worst-case image under '_cases'."""
    g = core.RealGame(game)
    rng = np.random.default_rng(seed)
    meanings = g.meanings
    fire = g.idx("FIRE")
    waiting, in_play = starts["waiting"], starts["in_play"]
    res: dict = {"game": game, "starts": {"waiting": len(waiting), "in_play": len(in_play)}}
    cases: dict = {}
    bar = tqdm(total=5, desc="playability", disable=not progress, leave=False)

    # 1. idle without FIRE from a waiting game: the phantom serve and balls where there are none.
    idle = np.stack([core.idle_actions(meanings, idle_steps, rng) for _ in waiting])
    real_idle = [
        g.rollout(s, lambda game, t, row=row: int(row[t]) if t < len(row) else -1) for s, row in zip(waiting, idle)
    ]
    keep = [i for i, r in enumerate(real_idle) if len(r.actions) == idle_steps]
    real_no_ball = [all(ball_position(f, game) is None for f in real_idle[i].frames) for i in keep]
    keep = [i for i, ok in zip(keep, real_no_ball) if ok]  # the real game never serves by itself
    d_idle, _, _ = core.dream_batch(dreamer, [waiting[i] for i in keep], idle[keep], "idle", progress)
    drew = [[ball_position(f, game) is not None for f in d] for d in d_idle]
    first = [row.index(True) + 1 for row in drew if any(row)]
    res["phantom_serve"] = core.share(sum(any(r) for r in drew), len(keep))
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

    def serve_policy(game_: core.RealGame, t: int) -> int:
        return -1 if t >= SERVE_STEPS else fire if t == 0 else expert(game_.env, rng)

    real_serve = [g.rollout(s, serve_policy) for s in waiting]
    idx_serve = [i for i, r in enumerate(real_serve) if len(r.actions) == SERVE_STEPS]
    ok = n = 0
    delays: list[int | None] = []  # dream's first ball minus the real one's, in steps (None: never)
    if idx_serve:
        serve_acts = np.stack([real_serve[i].actions for i in idx_serve])
        d_serve, _, _ = core.dream_batch(dreamer, [waiting[i] for i in idx_serve], serve_acts, "serve", progress)
        for j, i in enumerate(idx_serve):
            r_first = next((t for t, f in enumerate(real_serve[i].frames) if ball_position(f, game) is not None), None)
            if r_first is None:
                continue
            n += 1
            d_first = next((t for t, f in enumerate(d_serve[j]) if ball_position(f, game) is not None), None)
            ok += d_first is not None and abs(d_first - r_first) <= 2
            delays.append(None if d_first is None else d_first - r_first)
    res["serve"], res["serve_n"], res["serve_delays"] = core.share(ok, n), n, delays
    bar.update(1)

    # 3. play: from every waiting start served for real (see served_starts), half with the expert,
    #    half missing on purpose; and from the in-play starts with the expert (score events).
    served = served_starts(g, waiting, rng)

    def play(kind: str):
        def policy(game_: core.RealGame, t: int) -> int:
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
    d_play, d_rew, d_end = core.dream_batch(dreamer, play_starts, acts, "play", progress)
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
    res["multi_ball"], res["multi_ball_frames"] = core.share(multi, one), one
    for band, (hit, cnt) in none_counts.items():
        res[f"ball_where_none_{band}"], res[f"ball_where_none_{band}_frames"] = core.share(hit, cnt), cnt
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
    res["life_loss_recall"], res["life_loss_n"] = core.share(rec, n_lost), n_lost
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
    res["phantom_life_loss"], res["phantom_life_loss_n"] = core.share(phantom, len(play_real)), len(play_real)
    res["life_loss_without_real"], res["life_loss_without_real_n"] = core.share(without_real, n_clean), n_clean

    # score: reward events +-1 step; recall also where the dream's ball is with the real one
    m = core.match_events([r.rewards != 0 for r in play_real], list(d_rew != 0))
    res["score_precision"], res["score_dream_events"] = m["precision"], m["dream_events"]
    res["score_recall"], res["score_real_events"] = m["recall"], m["real_events"]
    res["phantom_score"], res["phantom_score_n"] = m["phantom"], m["rollouts_without"]
    real_rew = [r.rewards != 0 for r in play_real]

    def matched_with_real(events: list, others: list) -> tuple[float | None, int]:
        """`core.matched_where`: events at steps where the dream's ball was with the real one before."""
        return core.matched_where(events, others, lambda j, t: ball_with_real(real_frames[j], d_play[j], t, game))

    res["score_recall_ball_with_real"], res["score_ball_with_real_events"] = matched_with_real(real_rew, d_rew)
    # precision the same way (reported): a dreamed point counts where the dream's ball was with the
    # real one before it; a point its own ball, parted from the real one, scores by the rules does not
    res["score_precision_ball_with_real"], res["score_precision_ball_with_real_events"] = matched_with_real(
        list(d_rew), real_rew
    )

    # fidelity over the played rollouts: ball recall per step, PSNR / motion PSNR vs repeat-last
    curve = ball_recall(d_play, real_frames, game)
    res["ball_recall"] = curve
    for a, b in BANDS:
        hits = sum(curve["hits"][a - 1 : b])
        cnt = sum(curve["real_balls"][a - 1 : b])
        res[f"ball_recall_{a}_{b}"] = core.share(hits, cnt)
    # the paddle bounce: the dream's ball with the real one before a real bounce, and after it?
    kept = gone = n_bounce = 0
    for j in range(len(play_real)):
        for t in paddle_bounces(real_frames[j], game):
            if t - BOUNCE_LEAD < 0 or t + BOUNCE_LEAD >= play_steps:
                continue
            before = t - BOUNCE_LEAD
            if not near(ball_position(d_play[j, before], game), ball_position(real_frames[j, before], game)):
                continue
            n_bounce += 1
            after = ball_position(d_play[j, t + BOUNCE_LEAD], game)
            if near(after, ball_position(real_frames[j, t + BOUNCE_LEAD], game)):
                kept += 1
            else:
                gone += after is None
    res["paddle_bounce"], res["paddle_bounce_n"] = core.share(kept, n_bounce), n_bounce
    res["paddle_bounce_ball_gone"] = core.share(gone, n_bounce - kept)
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
        d_b, _, _ = core.dream_batch(dreamer, b_starts, b_acts, "branches", progress)
        real_b = real_b.reshape(len(in_play), nA, *real_b.shape[1:])
        dream_last = d_b[:, -1].reshape(len(in_play), nA, *d_b.shape[2:])
        agree = pairs_n = 0
        worst_b = (1.0, None)
        for i in range(len(in_play)):
            agree_i = n_i = 0
            for a in range(nA):
                for b in range(a + 1, nA):
                    same = core.frames_differ(real_b[i, a], real_b[i, b]) == core.frames_differ(
                        dream_last[i, a], dream_last[i, b]
                    )
                    agree_i += same
                    n_i += 1
            agree, pairs_n = agree + agree_i, pairs_n + n_i
            if agree_i / n_i < worst_b[0]:
                worst_b = (agree_i / n_i, i)
        res["branch_agreement"], res["branch_pairs"] = core.share(agree, pairs_n), pairs_n
        res["branch_psnr"] = {meanings[a]: psnr(dream_last[:, a], real_b[:, a]) for a in range(nA)}
        if worst_b[1] is not None:
            i = worst_b[1]
            cases["branching"] = (real_b[i][None], dream_last[i][None])
    bar.update(1)
    bar.close()
    res["_cases"] = cases
    return res


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
    "score_precision_ball_with_real": "score_precision_ball_with_real_events",
    "score_recall_ball_with_real": "score_ball_with_real_events",
    "score_recall": "score_real_events",
    "phantom_score": "phantom_score_n",
    "branch_agreement": "branch_pairs",
    "paddle_bounce": "paddle_bounce_n",
}


# -- what the frames allow: the real game with its ball nudged -------------------------------------
BALL_RAM = (99, 101)
"""Breakout's RAM bytes for the ball's x and y, in Atari pixels: the screen is 160 wide, so one of
them is 0.4 of a 64x64 pixel across (210 high: 0.3 down)."""
NUDGES = ((1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (-2, 0), (0, 2), (0, -2))
"""(dx, dy) in Atari pixels for `ball_nudge_reference`: one and two pixels each way."""


class NudgedOracle(core.OracleDreamer):
    """The real game with its ball moved by (dx, dy) Atari pixels at the start (RAM `BALL_RAM`): a
    world model that gets every rule and every pixel right but places the ball less than a 64x64
    pixel off. How soon its ball parts from the real one says how precise a dream's ball must be for
    a given ball recall. Its ball recall is the figure meant (the played rollouts start with the
    ball in play); on a waiting start the bytes are moved too, and the idle and serve probes of a
    nudged game say nothing."""

    def __init__(self, game: str, dx: int, dy: int) -> None:
        if game != "Breakout":
            raise ValueError(f"the ball's RAM bytes are known for Breakout, not {game!r}")
        super().__init__(game)
        self.dx, self.dy = dx, dy

    def reset(self, frames: np.ndarray, actions: np.ndarray, states: list) -> None:
        super().reset(frames, actions, states)
        ale = self.env.unwrapped.ale
        for i, s in enumerate(self.states):
            ale.restoreState(s)
            ram = ale.getRAM()
            for byte, d in zip(BALL_RAM, (self.dx, self.dy)):
                ale.setRAM(byte, int(np.clip(int(ram[byte]) + d, 0, 255)))
            self.states[i] = ale.cloneState()


def ball_nudge_reference(
    n: int, seed: int = core.SEED, nudges: tuple[tuple[int, int], ...] = NUDGES, progress: bool = True
) -> dict:
    """Ball recall of the real game against itself with its ball nudged at the start, on the suite's
    played rollouts (the same `n` starts from `seed` as the suite's, the same actions): per nudge, and
    pooled over the nudges of each size (1 and 2 Atari pixels). The ball-recall goal is within what
    64x64 frames allow when a ball a pixel or two off keeps to the real trajectory that long."""
    starts = make_starts("Breakout", n, seed, progress=False)
    per, pooled = {}, {}
    for dx, dy in tqdm(nudges, desc="nudged balls", disable=not progress):
        res = run("Breakout", NudgedOracle("Breakout", dx, dy), starts, progress=False)
        curve = res["ball_recall"]
        per[f"{dx},{dy}"] = {f"ball_recall_{a}_{b}": res[f"ball_recall_{a}_{b}"] for a, b in BANDS}
        size = pooled.setdefault(max(abs(dx), abs(dy)), {f"{a}_{b}": [0, 0] for a, b in BANDS})
        for a, b in BANDS:
            size[f"{a}_{b}"][0] += sum(curve["hits"][a - 1 : b])
            size[f"{a}_{b}"][1] += sum(curve["real_balls"][a - 1 : b])
    return {
        "seed": seed,
        "starts": n,
        "per_nudge": per,
        "pooled_by_pixels": {
            str(px): {f"ball_recall_{k}": core.share(h, c) for k, (h, c) in bands.items()}
            for px, bands in pooled.items()
        },
    }


# -- the quick modes: the serve beyond one noise, lost lives over long dreams -----------------------
def serve_belief(model, starts: list[core.Start], noises: int = 4, steps: int | None = None, **sampler: float) -> dict:
    """What the model believes about the serve, beyond one sampler noise: from each waiting start,
    FIRE once, dreamed with `noises` different initial noises -> the share of dreams with a ball on
    the first step; and the brightest open-field pixel (of 255) of the denoiser's estimate at
    sigma_max for FIRE and for NOOP (median over starts). A served ball is about 200 bright, an
    empty field about 30: an estimate far below the ball says the model doubts the serve, and a
    short deterministic sampler then ends on "no ball"."""
    from model.world_model.sampler import SamplerConfig

    game = model.cfg.game
    meanings = model.cfg.action_meanings
    frames, actions = core.model_context(
        model, np.stack([s.frames for s in starts]), np.stack([s.actions for s in starts])
    )
    served = 0
    for k in range(noises):
        dreamer = core.ModelDreamer(model, steps, seed=k, **sampler)
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
    g, rng, expert = core.RealGame(game), np.random.default_rng(seed), EXPERTS[game]
    pool = served_starts(g, starts["waiting"], rng) + starts["in_play"]
    real = [g.rollout(s, lambda game_, t: -1 if t >= steps else expert(game_.env, rng)) for s in pool]
    keep = [i for i, r in enumerate(real) if len(r.actions) == steps]
    if not keep:
        raise ValueError(f"no start played {steps} steps without the game ending")
    frames, _, ends = core.dream_batch(
        core.ModelDreamer(model, **sampler), [pool[i] for i in keep], np.stack([real[i].actions for i in keep])
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
