"""Twins (training/world_model/playability/twins.py) on the real Boxing emulator: a byte the screen
shows makes no twin, the hidden bytes found are not the ones it shows, their twins part, and the
ceiling is exactly 1 when nothing hidden is changed; the command through its command line."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from training.world_model.playability import core, twins

PLAYER_X = 32
"""Boxing's RAM byte of the white boxer's x (tests/training/test_playability_pong_boxing.py)."""
SEED = twins.TWINS_SEED + 600  # starts of these tests only (on 1 of their 3 a twin moves the player)


@pytest.fixture(scope="module")
def boxing():
    starts = twins.origins("Boxing", 3, [4, 16], SEED, progress=False)
    return starts, twins.prior("Boxing", SEED + 1_000_000)


def test_a_byte_the_screen_shows_makes_no_twin_and_no_change_makes_one(boxing):
    """The pixel-equality check both ways: the boxer moved in RAM draws other frames; untouched RAM
    replays the very frames, and the state it ends in plays on like the real start."""
    starts, _ = boxing
    g = core.RealGame("Boxing")
    for s in starts:
        o = s[4]
        g.env.unwrapped.ale.restoreState(o.before.state)
        x = int(g.env.unwrapped.ale.getRAM()[PLAYER_X])
        assert twins.replay(g, o, {PLAYER_X: (x + 20) % 100 + 20}) is None
        same = twins.replay(g, o, {})
        assert same is not None
        moves = [g.idx("RIGHT"), g.idx("DOWN")]
        assert np.array_equal(
            twins.futures(g, replace(o.start, state=same), moves, 4), twins.futures(g, o.start, moves, 4)
        )


def test_hidden_bytes_are_not_the_players_and_their_twins_part(boxing):
    starts, ram = boxing
    hidden = twins.hidden_bytes("Boxing", [s[4] for s in starts], ram, seed=SEED, progress=False)
    assert hidden and PLAYER_X not in hidden and 34 not in hidden  # 34: the boxer's y
    assert all(0 < row["parted"] <= row["twins"] <= len(starts) for row in hidden.values())
    c = twins.ceiling("Boxing", [s[4] for s in starts], ram, list(hidden), draws=20, seed=SEED, progress=False)
    assert c["twins"] > 0 and c["parted"] > 0 and 0 < c["ceiling"] < 1
    assert c["starts"] == len(starts) and len(c["_per_start"]) == len(starts)
    # the same draws with nothing hidden changed: every draw is the real state's own twin, none parts
    same = twins.ceiling("Boxing", [s[4] for s in starts], ram, [], draws=5, seed=SEED, progress=False)
    assert same["twins"] == 5 * len(starts) and same["parted"] == 0 and same["ceiling"] == 1.0


def test_the_command_writes_its_table_and_refuses_bad_input(run_script, tmp_path):
    out = tmp_path / "twins.json"
    proc = run_script(
        "training/twins.py", "--game", "Boxing", "--contexts", "4,8", "--starts", "2", "--draws", "4",
        "--seed", str(SEED), "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert set(res["by_context"]) == {"4", "8"} and res["hidden_from"] == 4
    for c in res["by_context"].values():
        assert c["draws"] == 4 * c["starts"] and 0 <= c["ceiling"] <= 1 and "_per_start" not in c
    assert "| 4 |" in proc.stdout and "| 8 |" in proc.stdout
    too_long = ["--contexts", "3000", "--starts", "1"]  # a Boxing round ends before 3,000 steps: no start
    for bad in (["--contexts", "4,x"], ["--contexts", "0"], ["--starts", "0"], ["--game", "Tetris"], too_long):
        args = bad if bad[0] == "--game" else ["--game", "Boxing", *bad]
        proc = run_script("training/twins.py", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "error:" in proc.stderr
