"""Pong's and Boxing's playability probes on the real emulator: the detectors agree with the RAM,
the real game itself (restored from the same cloned states) passes every probe, and each probe
fails for a dream built to break its rule."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from games.experts import EXPERTS
from training.world_model.playability import boxing, breakout, core, pong, suites

KW = {"play_steps": 40, "branch_steps": 8, "progress": False}


class Broken:
    """Wraps a dreamer and breaks one rule on purpose."""

    def __init__(self, inner, ignore_keys=False, paint=None, freeze=None, reward_every=0):
        self.inner, self.ignore_keys, self.paint = inner, ignore_keys, paint
        self.freeze, self.reward_every = freeze, reward_every

    def reset(self, frames, actions, states):
        self.inner.reset(frames, actions, states)
        self.first, self.t = frames[:, -1].copy(), 0

    def step(self, actions):
        f, r, e = self.inner.step(np.zeros_like(actions) if self.ignore_keys else actions)
        f, self.t = f.copy(), self.t + 1
        for rows, cols in self.freeze or ():  # regions held as they were before the dream began
            f[:, rows, cols] = self.first[:, rows, cols]
        if self.paint is not None:  # paint(frames, t) draws on the frames in place
            self.paint(f, self.t)
        if self.reward_every:
            r = np.full_like(r, float(self.t % self.reward_every == 0))
        return f, r, e


def probe_keys(game):
    return {p.key for p in suites.SUITES[game].probes}


# -- Pong ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pong_starts():
    return pong.pong_starts("Pong", 3, progress=False)


@pytest.fixture(scope="module")
def pong_dreamer():
    return core.OracleDreamer("Pong")  # one set of emulators for every run of this module


@pytest.fixture(scope="module")
def pong_oracle(pong_starts, pong_dreamer):
    res = pong.run_pong("Pong", pong_dreamer, pong_starts, **KW)
    res.pop("_cases")
    return res


def test_pong_detectors_follow_the_ram():
    """Paddles and ball read from the 64x64 frames move with the RAM's positions (51: player y,
    50: computer y, 54/49: ball y/x, 0 = no ball); the score digits change exactly on a point."""
    g, rng = core.RealGame("Pong"), np.random.default_rng(0)
    g.reset(core.SEED)
    rows, changes, points = [], [], []
    for t in range(200):
        a = EXPERTS["Pong"](g.env, rng) if t % 20 < 12 else core.mirrored("Pong", g, rng)
        r = g.step(a)[0]
        ram, f = g.env.unwrapped.ale.getRAM(), g.frames[-1]
        changes.append(core.region_changes(f[None], g.frames[-2], pong.PONG_SCORE)[0])
        points.append(r != 0)
        rows.append(
            (int(ram[51]), pong.pong_player(f), int(ram[50]), pong.pong_opponent(f), int(ram[54]), pong.pong_ball(f))
        )
    # the player's new score is drawn on its point's step, the computer's one step later
    changed, scored = np.nonzero(changes)[0], np.nonzero(points)[0]
    scored = scored[scored < len(points) - 1]  # a point on the last step is drawn after it
    assert len(scored) >= 2 and len(changed) == len(scored) and set(changed - scored) <= {0, 1}
    for ram_i, det_i in ((0, 1), (2, 3)):  # paddle row = a * RAM y + b (a = 64/210)
        pts = np.array([(x[ram_i], x[det_i]) for x in rows if x[det_i] is not None and 40 < x[ram_i] < 190])
        fit = np.polyfit(pts[:, 0], pts[:, 1], 1)
        off = np.abs(np.polyval(fit, pts[:, 0]) - pts[:, 1])
        # a pixel or so: the paddle moves up to ~4 px a step, and RAM and picture are not read at one instant
        assert 0.25 < fit[0] < 0.35 and np.median(off) <= 1.5 and off.max() <= 2.5
    balls = [x for x in rows if x[5] is not None]
    assert len(balls) > 50 and all(x[4] != 0 for x in balls)
    assert sum(x[4] == 0 for x in rows) > 10 and all(x[5] is None for x in rows if x[4] == 0)


def test_pong_the_real_game_passes_every_probe(pong_oracle):
    res = pong_oracle
    assert probe_keys("Pong") <= set(res)
    assert "phantom_serve" not in res and "life_loss_recall" not in res  # Breakout's probes only in Breakout's
    assert res["player_control"] == 1 and res["player_control_n"] == 3 * 6
    assert res["serve"] == 1 and res["serve_n"] >= 2 and res["serve_delays"] == [0] * res["serve_n"]
    assert res["multi_ball"] == 0 and res["multi_ball_frames"] > 50
    assert res["score_recall"] == 1 and res["score_precision"] == 1 and res["score_real_events"] >= 1
    assert res["digit_recall"] == 1 and res["digit_phantom"] == 0 and res["phantom_score"] == 0
    assert res["phantom_score_n"] >= 2
    assert res["unearned_score"] == 0 and res["unearned_digits"] == 0 and res["unearned_n"] >= 4
    assert res["score_precision_ball_with_real"] == 1 and res["score_precision_ball_with_real_events"] >= 1
    assert res["score_recall_ball_with_real"] == 1 and res["digit_recall_ball_with_real"] == 1
    assert res["score_recall_ball_with_real_events"] >= 1
    assert res["opponent_tracking"] == 1
    assert suites.goals_missed(res) == [] and suites.worse_than(res, res) == []


def test_pong_the_serve_comes_by_itself_after_a_pause(pong_starts):
    """No FIRE needed: PONG_SERVE_PAUSE steps after the ball leaves, the next ball is in the field."""
    g = core.RealGame("Pong")
    for s in pong_starts["after_point"]:
        r = g.rollout(s, lambda game_, t: g.idx("NOOP") if t < 30 else -1)
        first = next(t for t, f in enumerate(r.frames) if pong.pong_ball(f) is not None)
        assert abs(first + 1 + 2 - pong.PONG_SERVE_PAUSE) <= 2  # the start is 2 steps after the point


def test_pong_a_dream_that_ignores_the_keys_fails_control(pong_starts, pong_dreamer, pong_oracle):
    res = pong.run_pong("Pong", Broken(pong_dreamer, ignore_keys=True), pong_starts, **KW)
    assert res["player_control"] < 0.7
    assert any(m.startswith("player_control") for m in suites.goals_missed(res))
    assert any(w.startswith("player_control") for w in suites.worse_than(res, pong_oracle))


def test_pong_an_extra_ball_fails_one_ball(pong_starts, pong_dreamer):
    def ball(f, t):
        f[:, pong.PONG_FIELD.start + 20, 30] = 230

    res = pong.run_pong("Pong", Broken(pong_dreamer, paint=ball), pong_starts, **KW)
    assert res["multi_ball"] > 0.8


def test_pong_invented_points_are_caught(pong_starts, pong_dreamer):
    def digits(f, t):  # a digit that flips every 7 steps
        f[:, 1:6, 20:23] = 230 if (t // 7) % 2 else f[:, 1:6, 20:23]

    res = pong.run_pong("Pong", Broken(pong_dreamer, reward_every=7, paint=digits), pong_starts, **KW)
    assert res["phantom_score"] == 1 and res["digit_phantom"] == 1 and res["score_precision"] < 0.5
    assert res["unearned_score"] == 1 and res["unearned_digits"] == 1
    assert {"unearned_score", "unearned_digits"} <= {m.split(":")[0] for m in suites.goals_missed(res)}


def test_pong_a_point_counts_as_earned_only_where_its_ball_passed_a_paddle(pong_starts):
    """A real point is earned by the ball drawn before it, on the side it was scored; the same
    frames with the ball painted out, or the point given to the other side, are not."""
    g, rng = core.RealGame("Pong"), np.random.default_rng(0)
    s = pong_starts["in_play"][1]
    r = g.rollout(s, lambda game_, t: core.mirrored("Pong", game_, rng, fire=False) if t < 200 else -1)
    t = int(np.nonzero(r.rewards)[0][0])
    events, frames = r.rewards[: t + 1] != 0, r.frames[: t + 1]
    assert pong.unearned_points(s.frames, frames, events, r.rewards[: t + 1]) == 0
    assert pong.unearned_points(s.frames, frames, events, -r.rewards[: t + 1]) == 1
    erased, erased_start = frames.copy(), s.frames.copy()
    for f in [*erased, *erased_start]:
        f[pong.PONG_FIELD][pong.pong_ball_mask(f)] = (144, 72, 17)  # the field's brown
    assert pong.unearned_points(erased_start, erased, events) == 1


def test_pong_missed_points_and_a_frozen_opponent_are_caught(pong_starts, pong_dreamer):
    frozen = [pong.PONG_SCORE, (slice(0, 64), pong.PONG_OPPONENT_COLS)]  # the scores and the computer's paddle
    res = pong.run_pong("Pong", Broken(pong_dreamer, freeze=frozen, reward_every=10**6), pong_starts, **KW)
    assert res["score_recall"] == 0 and res["digit_recall"] == 0
    assert res["score_recall_ball_with_real"] == 0 and res["digit_recall_ball_with_real"] == 0
    missed = {m.split(":")[0] for m in suites.goals_missed(res)}
    assert {"score_recall_ball_with_real", "digit_recall_ball_with_real"} <= missed
    assert res["opponent_tracking"] < 0.8


def test_pong_a_dream_that_never_serves_fails_serve(pong_starts, pong_dreamer):
    def no_ball(f, t):
        for x in f:
            x[pong.PONG_FIELD][pong.pong_ball_mask(x)] = (144, 72, 17)  # the field's brown

    res = pong.run_pong("Pong", Broken(pong_dreamer, paint=no_ball), pong_starts, **KW)
    assert res["serve"] == 0


# -- Boxing ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def boxing_starts():
    return boxing.boxing_starts("Boxing", 3, progress=False)


@pytest.fixture(scope="module")
def boxing_dreamer():
    return core.OracleDreamer("Boxing")


@pytest.fixture(scope="module")
def boxing_oracle(boxing_starts, boxing_dreamer):
    res = boxing.run_boxing("Boxing", boxing_dreamer, boxing_starts, **KW)
    res.pop("_cases")
    return res


def test_boxing_detectors_follow_the_ram():
    """The white boxer's centroid moves with RAM 32/34 (player x/y); the clock changes exactly when
    RAM 17 (seconds) does, every 15 steps; the score digits change only on a point or the step
    after it (some new digits are drawn one frame late, so the probes allow one step), and on all
    but one of the 8 points here (step 107, the opponent's 6 -> 8: one pixel apart at 64x64)."""
    g, rng = core.RealGame("Boxing"), np.random.default_rng(0)
    g.reset(core.SEED)
    rows, ticks, points, digits = [], [], [], []
    for t in range(120):
        before = int(g.env.unwrapped.ale.getRAM()[17])
        r = g.step(EXPERTS["Boxing"](g.env, rng) if t % 30 < 20 else int(rng.integers(18)))[0]
        ram, f = g.env.unwrapped.ale.getRAM(), g.frames[-1]
        points += [t] if r != 0 else []
        digits += [t] if core.region_changes(f[None], g.frames[-2], boxing.BOXING_SCORE)[0] else []
        clock = (
            core.region_changes(f[None], g.frames[-2], boxing.BOXING_CLOCK)[0]
            or (f[boxing.BOXING_CLOCK] != g.frames[-2][boxing.BOXING_CLOCK]).any()
        )
        assert bool(clock) == (int(ram[17]) != before)
        ticks += [t] if clock else []
        rows.append((int(ram[32]), int(ram[34]), boxing.boxing_player(f)))
    assert len(ticks) >= 7 and set(np.diff(ticks)) == {15}
    assert len(points) >= 3  # the expert lands punches
    seen = [t for t in points if t in digits or t + 1 in digits]
    assert len(points) == 8 and len(seen) == 7
    assert all(t in points or t - 1 in points for t in digits)
    pts = np.array([(x, y, p[1], p[0]) for x, y, p in rows])
    for ram_i, det_i, scale in ((0, 2, 0.4), (1, 3, 0.305)):
        fit = np.polyfit(pts[:, ram_i], pts[:, det_i], 1)
        assert abs(fit[0] - scale) < 0.1 and np.abs(np.polyval(fit, pts[:, ram_i]) - pts[:, det_i]).max() <= 2.0


def test_boxing_the_real_game_passes_every_probe(boxing_oracle):
    res = boxing_oracle
    assert probe_keys("Boxing") <= set(res) and "multi_ball" not in res and "serve" not in res
    assert res["player_control"] == 1 and res["player_control_n"] == 3 * 9
    assert res["player_control_error_px"] == {"median": 0.0, "p90": 0.0, "no_player_drawn": 0}
    assert res["player_control_unpunched"] == 1 and 0 < res["player_control_unpunched_n"] <= 3 * 9
    assert res["punch"] == 1 and res["punch_real"] >= 1
    assert res["score_recall"] == 1 and res["score_precision"] == 1 and res["score_real_events"] >= 1
    assert res["digit_recall"] == 1 and res["digit_phantom"] == 0 and res["phantom_score"] == 0
    for k in ("score_precision", "score_recall", "digit_recall"):  # the boxers are with the real ones everywhere
        assert res[f"{k}_boxers_with_real"] == 1
    assert res["score_recall_boxers_with_real_events"] == res["score_real_events"]
    assert res["clock"] == 1 and res["clock_n"] == 3 * 8
    assert res["opponent_split"] == 0 and res["opponent_split_frames"] > 50
    assert suites.goals_missed(res) == []


def test_boxing_a_dream_that_ignores_the_keys_fails_control_and_punch(boxing_starts, boxing_dreamer, boxing_oracle):
    res = boxing.run_boxing("Boxing", Broken(boxing_dreamer, ignore_keys=True), boxing_starts, **KW)
    assert res["player_control"] < 0.5 and res["punch"] < 1 and res["player_control_unpunched"] < 0.5
    assert res["player_control_error_px"]["p90"] > 1  # the boxer stays while the real one moves
    worse = suites.worse_than(res, boxing_oracle)
    assert any(w.startswith("player_control") for w in worse) and any(w.startswith("punch") for w in worse)


def test_boxing_invented_points_a_frozen_clock_and_a_second_opponent_are_caught(boxing_starts, boxing_dreamer):
    def opponent(f, t):  # a black boxer's worth of pixels in the ring's lower-left corner
        f[:, 47:53, 14:17] = 0

    broken = Broken(boxing_dreamer, freeze=[boxing.BOXING_CLOCK], reward_every=7, paint=opponent)
    res = boxing.run_boxing("Boxing", broken, boxing_starts, **KW)
    assert res["phantom_score"] == 1 and res["score_precision"] < 0.5
    assert res["clock"] < 0.6
    assert res["opponent_split"] > 0.5


def test_boxing_points_where_the_boxers_agree_catch_invented_points_and_a_frozen_score(boxing_starts, boxing_dreamer):
    """With the boxers where the real ones are, a point every 7 steps is mostly invented and a score
    that never changes scores none of the real points; a dream whose boxer is elsewhere has its points
    left out of these figures."""
    broken = Broken(boxing_dreamer, freeze=[boxing.BOXING_SCORE], reward_every=7)
    res = boxing.run_boxing("Boxing", broken, boxing_starts, **KW)
    assert res["score_precision_boxers_with_real_events"] == res["score_dream_events"] > 0
    assert res["score_precision_boxers_with_real"] < 0.5
    assert res["digit_recall_boxers_with_real"] == 0 and res["digit_recall_boxers_with_real_events"] > 0
    g = core.RealGame("Boxing")
    real = g.rollout(boxing_starts["in_play"][0], lambda g_, t: -1 if t >= 5 else g_.idx("NOOP"))
    moved = np.roll(real.frames, 3, axis=2)  # both boxers 3 px to the right
    assert boxing.boxers_with_real(real.frames, real.frames, 4)
    assert not boxing.boxers_with_real(real.frames, moved, 4)


def test_boxing_control_unpunched_leaves_out_the_branches_where_the_player_is_hit(boxing_starts):
    frame = boxing_starts["in_play"][0].frames[-1]
    real_b = np.stack([frame, frame])[None, :, None]  # (1 start, 2 moves, 1 step, H, W, C)
    d_b = np.stack([frame, np.roll(frame, 3, axis=1)])[None, :, None]  # the second boxer drawn 3 px off
    res = {}
    boxing.control_unpunched(res, real_b, d_b, np.zeros((1, 2, 1)))
    assert (res["player_control_unpunched"], res["player_control_unpunched_n"]) == (0.5, 2)
    boxing.control_unpunched(res, real_b, d_b, np.array([[[0.0], [-1.0]]]))  # the computer scores in the second
    assert (res["player_control_unpunched"], res["player_control_unpunched_n"]) == (1.0, 1)


# -- per game --------------------------------------------------------------------------------------
def test_each_game_reports_only_its_own_probes(pong_oracle, boxing_oracle):
    assert set(suites.SUITES) == {"Breakout", "Pong", "Boxing"}
    assert suites.SUITES["Breakout"].probes is breakout.PROBES and suites.SUITES["Breakout"].version == breakout.SUITE
    pong_table, boxing_table = suites.table(pong_oracle), suites.table(boxing_oracle)
    assert "without FIRE" not in pong_table and "clock" not in pong_table and "2+ ball" in pong_table
    assert "clock" in boxing_table and "ball" not in boxing_table
    with pytest.raises(ValueError, match="Breakout, Pong, Boxing"):
        suites.evaluate_model(SimpleNamespace(cfg=SimpleNamespace(game="Seaquest")), 2)


def test_the_gate_lets_no_single_case_decide():
    """`worse_than` allows 3 points, or one case of a probe where one case is more: the same shipped
    Boxing model gave 1 and 2 phantom points in 5 rollouts on two CPUs. Two cases more are refused,
    and a probe with many cases keeps the 3 points."""
    ref = {
        "game": "Boxing",
        "phantom_score": 1 / 5,
        "phantom_score_n": 5,
        "player_control": 0.60,
        "player_control_n": 320,
    }
    one_more = {**ref, "phantom_score": 2 / 5}
    assert suites.worse_than(one_more, ref) == []
    two_more = {**ref, "phantom_score": 3 / 5}
    assert [w.split(":")[0] for w in suites.worse_than(two_more, ref)] == ["phantom_score"]
    assert "one case is 0.200" in suites.worse_than(two_more, ref)[0]
    # 320 branches: one case is 0.3 points, so 3 points is the tolerance; 3.4 points are refused
    control = {**ref, "player_control": 0.566}
    assert [w.split(":")[0] for w in suites.worse_than(control, ref)] == ["player_control"]
    assert suites.worse_than({**ref, "player_control": 0.575}, ref) == []
    # the smaller count sets the case: 5 cases against 40 allow a fifth
    assert suites.probe_tolerance("phantom_score", {**ref, "phantom_score_n": 40}, ref) == pytest.approx(0.2)
    # without a count the tolerance is the 3 points
    assert suites.probe_tolerance("phantom_score", {"game": "Boxing"}, {"game": "Boxing"}) == suites.TOLERANCE
