"""The playability suite on the real emulator: the real game itself (restored from the same cloned
states) scores perfectly, and each probe catches a dream built to break its rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.world_model.measures import BALL_FIELD, ball_position
from training.world_model.playability import breakout, core, suites

REPO = Path(__file__).resolve().parents[2]
GAME = "Breakout"
KW = {"idle_steps": 24, "play_steps": 50, "branch_steps": 6, "progress": False}


@pytest.fixture(scope="module")
def starts():
    return breakout.make_starts(GAME, 4, seed=core.SEED, progress=False)


@pytest.fixture(scope="module")
def oracle(starts):
    res = breakout.run(GAME, core.OracleDreamer(GAME), starts, **KW)
    res.pop("_cases")
    return res


class Tamper:
    """Wraps a dreamer and breaks one rule on purpose."""

    def __init__(self, inner, ball=False, hold=False, end_every=0, reward_every=0, no_reward=False, swallow=False):
        self.inner, self.ball, self.hold, self.no_reward = inner, ball, hold, no_reward
        self.end_every, self.reward_every, self.swallow = end_every, reward_every, swallow

    def reset(self, frames, actions, states):
        self.inner.reset(frames, actions, states)
        self.last, self.t = frames[:, -1].copy(), 0
        self.swallowed = np.zeros(len(frames), bool)

    def step(self, actions):
        f, r, e = self.inner.step(actions)
        self.t += 1
        if self.hold:  # never moves: the frame before the dream began, forever
            f = self.last.copy()
        if self.ball:  # a ball drawn in the middle of the open field, always
            rows, cols = BALL_FIELD[GAME]
            f = f.copy()
            f[:, rows.start + 10 : rows.start + 12, cols.start + 40 : cols.start + 42] = 200
        if self.swallow:  # the ball vanishes once it reaches the paddle, and the field stays empty
            rows, cols = BALL_FIELD[GAME]
            f = f.copy()
            for i, frame in enumerate(f):
                b = ball_position(frame, GAME)
                if b is not None and b[0] >= rows.stop - rows.start - 1.5:  # on the paddle
                    self.swallowed[i] = True
                if self.swallowed[i]:
                    f[i, rows, cols] = 0
        if self.end_every:
            e = np.full_like(e, self.t % self.end_every == 0)
        if self.reward_every:
            r = np.full_like(r, float(self.t % self.reward_every == 0))
        if self.no_reward:  # breaks the bricks, never scores
            r = np.zeros_like(r)
        return f, r, e


def test_starts_are_what_they_claim(starts):
    g = core.RealGame(GAME)
    assert len(starts["waiting"]) == 4 and len(starts["in_play"]) == 4
    assert {s.kind for s in starts["waiting"]} == {"reset", "life_lost"}
    for s in starts["waiting"]:
        g.restore(s)
        assert int(g.env.unwrapped.ale.getRAM()[101]) == 0  # the game waits for FIRE
        assert ball_position(s.frames[-1], GAME) is None
    for s in starts["in_play"]:
        g.restore(s)
        assert int(g.env.unwrapped.ale.getRAM()[101]) != 0


def test_where_the_serve_goes_is_hidden_from_the_frames():
    """Why the played rollouts start from a real serve: after a reset and 3 NOOPs every episode
    shows the same 4 frames, yet FIRE puts the ball in different columns (the game's frame counter
    decides), so no world model can know which; comparing its ball to the real one after its own
    serve would measure a coin."""
    g = core.RealGame(GAME)
    contexts, columns = [], set()
    for seed in range(core.SEED, core.SEED + 8):
        g.reset(seed)
        for _ in range(3):
            g.step(g.idx("NOOP"))
        contexts.append(np.stack(g.frames))
        g.step(g.idx("FIRE"))
        columns.add(ball_position(g.frames[-1], GAME)[1])
    assert all((c == contexts[0]).all() for c in contexts)
    assert len(columns) >= 2


def test_served_starts_show_the_ball_in_flight(starts):
    g = core.RealGame(GAME)
    served = breakout.served_starts(g, starts["waiting"], np.random.default_rng(0))
    assert len(served) == len(starts["waiting"])
    for s in served:
        assert len(s.frames) == core.HISTORY and len(s.actions) == core.HISTORY - 1
        assert all(ball_position(f, GAME) is not None for f in s.frames[-core.CONTEXT :])
        g.restore(s)
        assert int(g.env.unwrapped.ale.getRAM()[101]) != 0


def test_the_real_game_obeys_every_rule(oracle):
    assert oracle["phantom_serve"] == 0 and oracle["phantom_serve_n"] >= 3
    assert oracle["serve"] == 1
    assert oracle["multi_ball"] == 0 and oracle["multi_ball_frames"] > 50
    assert oracle["ball_where_none_1_15"] == 0 and oracle["ball_where_none_16_50"] == 0
    assert oracle["life_loss_recall"] == 1 and oracle["life_loss_n"] >= 1
    assert oracle["phantom_life_loss"] == 0 and oracle["life_loss_without_real"] == 0
    assert oracle["score_recall"] == 1 and oracle["score_precision"] == 1 and oracle["score_real_events"] >= 1
    assert oracle["score_recall_ball_with_real"] == 1 and oracle["score_ball_with_real_events"] >= 1
    assert oracle["score_precision_ball_with_real"] == 1 and oracle["score_precision_ball_with_real_events"] >= 1
    assert oracle["branch_agreement"] == 1
    assert oracle["ball_recall_16_50"] == 1
    assert oracle["paddle_bounce"] == 1 and oracle["paddle_bounce_n"] >= 1
    assert suites.goals_missed(oracle) == []


def test_a_dream_that_swallows_the_ball_at_the_paddle_fails_the_bounce(starts, oracle):
    res = breakout.run(GAME, Tamper(core.OracleDreamer(GAME), swallow=True), starts, **KW)
    assert res["paddle_bounce_n"] >= 1
    assert res["paddle_bounce"] == 0 and res["paddle_bounce_ball_gone"] == 1
    assert res["ball_recall_16_50"] < oracle["ball_recall_16_50"]


def test_a_nudged_ball_starts_where_it_was_put(starts):
    """The reference for ball precision moves the real ball by Atari pixels (RAM): by none, the real
    game itself; by 3 to the right, a ball 1-1.5 pixels of 64 to the right on the next frame."""
    g = core.RealGame(GAME)
    served = breakout.served_starts(g, starts["waiting"], np.random.default_rng(0))[:2]
    frames = np.stack([s.frames for s in served])
    actions = np.stack([s.actions for s in served])
    noop = np.zeros(len(served), int)
    real = core.OracleDreamer(GAME)
    real.reset(frames, actions, [s.state for s in served])
    r = real.step(noop)[0]
    for (dx, dy), lo, hi in (((0, 0), 0.0, 0.0), ((3, 0), 0.9, 1.6)):
        nudged = breakout.NudgedOracle(GAME, dx, dy)
        nudged.reset(frames, actions, [s.state for s in served])
        n = nudged.step(noop)[0]
        for a, b in zip(r, n):
            shift = ball_position(b, GAME)[1] - ball_position(a, GAME)[1]
            assert lo <= shift <= hi
    with pytest.raises(ValueError, match="Pong"):
        breakout.NudgedOracle("Pong", 1, 0)


def test_ball_nudge_mode_takes_no_checkpoint():
    from training.playability import main

    for argv in (["--ball-nudge", "--checkpoint", "checkpoints/Breakout"], []):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2


def test_a_dream_that_always_draws_a_ball_fails_the_ball_probes(starts, oracle):
    res = breakout.run(GAME, Tamper(core.OracleDreamer(GAME), ball=True), starts, **KW)
    assert res["phantom_serve"] == 1
    assert res["ball_where_none_1_15"] == 1 and res["ball_where_none_16_50"] == 1
    assert res["multi_ball"] > 0.8  # the drawn ball plus the real one
    worse = suites.worse_than(res, oracle)
    assert any(w.startswith("phantom_serve") for w in worse) and any(w.startswith("multi_ball") for w in worse)
    assert "phantom_serve" in res["_cases"]


def test_a_dream_that_never_serves_fails_serve_and_ball_recall(starts):
    res = breakout.run(GAME, Tamper(core.OracleDreamer(GAME), hold=True), starts, **KW)
    assert res["serve"] == 0
    assert res["ball_recall_16_50"] < 0.2
    assert "serve" in " ".join(suites.goals_missed(res))


def test_a_dream_that_replays_the_wrong_branch_fails_branching(starts, oracle):
    meanings = core.RealGame(GAME).meanings
    left, right = meanings.index("LEFT"), meanings.index("RIGHT")
    every_noop = breakout.run(GAME, core.OracleDreamer(GAME, {a: 0 for a in range(len(meanings))}), starts, **KW)
    assert every_noop["branch_agreement"] < 0.7
    swapped = breakout.run(GAME, core.OracleDreamer(GAME, {left: right, right: left}), starts, **KW)
    assert swapped["branch_psnr"]["LEFT"] < 45 < oracle["branch_psnr"]["LEFT"]


def test_invented_life_losses_and_points_are_caught(starts):
    res = breakout.run(GAME, Tamper(core.OracleDreamer(GAME), end_every=10, reward_every=7), starts, **KW)
    assert res["phantom_life_loss"] == 1  # no rollout's ball leaves through the bottom before step 10
    assert res["life_loss_without_real"] == 1
    assert res["phantom_score"] == 1
    assert res["score_precision"] < 0.5
    assert res["score_precision_ball_with_real"] < 0.5  # its ball is the real one: invented points count


def test_a_dream_that_never_scores_fails_score_recall(starts, oracle):
    res = breakout.run(GAME, Tamper(core.OracleDreamer(GAME), no_reward=True), starts, **KW)
    assert res["score_recall"] == 0 and res["score_recall_ball_with_real"] == 0
    assert res["score_ball_with_real_events"] == oracle["score_ball_with_real_events"] >= 1
    assert any(w.startswith("score_recall_ball_with_real") for w in suites.worse_than(res, oracle))


def test_a_paddle_that_misses_loses_lives_by_the_rules(starts):
    """A dream whose paddle ignores the keys (the real game, every action played as NOOP) lets balls
    fall that the real paddle catches: it loses lives the real game keeps, and every one of them
    after its own ball left through the bottom. The rule probe passes; the reported open-loop
    figure, which cannot tell this from an invented loss, does not."""
    n = len(core.RealGame(GAME).meanings)
    res = breakout.run(GAME, core.OracleDreamer(GAME, {a: 0 for a in range(n)}), starts, **KW)
    assert res["life_loss_without_real"] > 0
    assert res["phantom_life_loss"] == 0


def test_a_lost_life_is_paid_for_by_one_exit_of_the_ball():
    assert breakout.unexplained_losses([20], [11]) == []
    assert breakout.unexplained_losses([20, 22], [11]) == [22]  # a second drop for one ball
    assert breakout.unexplained_losses([20], [5]) == [20]  # too long after the ball left
    assert breakout.unexplained_losses([11], [11]) == [11]  # the same step: the ball had not left yet
    assert breakout.end_events(np.array([0, 1, 1, 0, 1], bool)) == [1, 4]


def test_a_dream_loss_is_explained_by_its_own_ball_leaving_through_the_bottom():
    """unexplained_dream_losses: the start's frames go before the dream's, so a ball that left in
    the context explains a loss early in the dream; steps are the dream's."""
    rows, cols = BALL_FIELD[GAME]

    def frames(n, ball_until=0):  # a ball low in the open field in the first `ball_until` frames
        f = np.zeros((n, 64, 64, 3), np.uint8)
        f[:ball_until, rows.stop - 4 : rows.stop - 2, cols.start + 20 : cols.start + 22] = 200
        return f

    def ends(*steps, n=30):
        e = np.zeros(n, bool)
        e[list(steps)] = True
        return e

    empty, dream = frames(4), frames(30, ball_until=10)  # the dream's ball leaves after step 9
    assert breakout.unexplained_dream_losses(empty, dream, ends(14, 15), GAME) == ([14], [])  # 5 steps after
    assert breakout.unexplained_dream_losses(empty, dream, ends(14, 17), GAME) == ([14, 17], [17])  # one exit, one loss
    assert breakout.unexplained_dream_losses(empty, frames(30), ends(14), GAME) == ([14], [14])  # no ball ever left
    assert breakout.unexplained_dream_losses(empty, dream, ends(25), GAME) == ([25], [25])  # 16 steps after: too late
    assert breakout.unexplained_dream_losses(empty, dream, ends(n=30), GAME) == ([], [])
    left_in_context = frames(4, ball_until=4)  # the ball leaves between the last context frame and step 0
    assert breakout.unexplained_dream_losses(left_in_context, frames(30), ends(4), GAME) == ([4], [])


def run_on_the_shipped_model(*args: str) -> subprocess.CompletedProcess:
    """training/playability.py on checkpoints/Breakout with one thread."""
    cmd = [sys.executable, str(REPO / "training/playability.py"), "--checkpoint", str(REPO / "checkpoints/Breakout")]
    return subprocess.run(cmd + [*args, "--threads", "1"], capture_output=True, text=True, cwd=REPO, timeout=900)


def test_cli_writes_json_and_image_for_the_shipped_model(tmp_path):
    out, img = tmp_path / "p.json", tmp_path / "p.png"
    proc = run_on_the_shipped_model("--starts", "2", "--out", str(out), "--image", str(img))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["starts"] == {"waiting": 2, "in_play": 2, "served": 2} and 0 <= res["phantom_serve"] <= 1
    assert res["backend"] == "torch"  # the figures say which path dreamed them (--backend)
    assert img.stat().st_size > 1000
    assert "dreams that serve a ball without FIRE" in proc.stdout


def test_serve_belief_of_the_shipped_model(tmp_path):
    """The quick serve probe: every dream of the shipped model serves on FIRE whatever the noise,
    and its estimate at sigma_max is brighter in the field for FIRE than for NOOP."""
    out = tmp_path / "sb.json"
    proc = run_on_the_shipped_model("--serve-belief", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["dreams"] == 8 and res["served"] == 8
    assert res["estimate_fire"] > res["estimate_noop"] + 20
    assert "serve on the first step after FIRE: 8/8" in proc.stdout


def test_long_dreams_count_lost_lives_and_which_the_ball_lost(tmp_path):
    """The long-dream count: 200 dreamed steps of the expert's real actions from 1 served and 1
    mid-game start; every lost life the dream's own ball did not lose is counted apart."""
    out = tmp_path / "long.json"
    proc = run_on_the_shipped_model("--long-dreams", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["steps"] == 200 and 1 <= res["dreams"] <= 2 and res["seed"] == 3_000_000
    assert 0 <= res["unexplained"] <= res["dream_losses"]
    assert res["losses_per_100"] == pytest.approx(100 * res["dream_losses"] / (200 * res["dreams"]))
    assert f"{res['dreams']} dreams x 200 steps" in proc.stdout


def test_cli_rejects_bad_input(tmp_path):
    base = [sys.executable, str(REPO / "training/playability.py")]
    bad = subprocess.run(
        base + ["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "error:" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "o.json").exists()
    few = subprocess.run(
        base + ["--checkpoint", "checkpoints/Breakout", "--starts", "1"], capture_output=True, text=True, cwd=REPO
    )
    assert few.returncode == 2 and "--starts" in few.stderr
    neg = subprocess.run(
        base + ["--checkpoint", "checkpoints/Breakout", "--long-dreams", "-1"], capture_output=True, text=True, cwd=REPO
    )
    assert neg.returncode == 2 and "--long-dreams" in neg.stderr
