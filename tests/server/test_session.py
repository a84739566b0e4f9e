"""A session's start: the seed frames are NOOPs only (the player serves), and its seed seeds the
dream too, so a session replays exactly."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from server_helpers import recv, start

from games.envs import action_meanings, ram
from model.world_model import WorldModel
from server.session import EARLY_INPUT, GameRuntime, Session, tick_due

# Breakout's field below the bricks in the 64x64 frame: empty (black, < 50 in every channel)
# until a ball is served.
FIELD = (slice(29, 57), slice(3, 61))


def no_ball(frame: np.ndarray) -> bool:
    return int(frame[FIELD].max()) <= 50


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seed_frames_are_noops_so_the_player_serves(snapshot_dir: Path, seed: int) -> None:
    """Nothing is pressed for the player: no ball in the field, and Breakout waits for the serve
    (RAM byte 101, the ball's y, is 0)."""
    meanings = action_meanings("Breakout")
    model = WorldModel.from_snapshot(snapshot_dir / "Breakout")
    runtime = GameRuntime("Breakout", model, None, meanings, {}, snapshot_dir / "Breakout")
    session = Session(runtime, None, lambda header, frames: None, None, seed=seed)
    frames, actions, info = session._env_reset()
    try:
        assert len(frames) == 4 and all(no_ball(f) for f in frames)
        assert int(ram(session.env)[101]) == 0
        assert actions == [meanings.index("NOOP")] * 3
        assert info["lives"] == 5
    finally:
        session.env.close()


def test_first_frame_over_the_websocket_has_no_ball(client) -> None:
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="side", fps=1, seed=4)
        first = recv(ws, "frame")
        assert first["header"]["tick"] == 0
        assert no_ball(first["frames"]["real"]) and no_ball(first["frames"]["dream"])


def dream_frames(client, seed: int, steps: int = 4) -> dict[int, np.ndarray]:
    """The dream frames of a Dream-mode session with NOOP held, by tick (pause, then single steps)."""
    got: dict[int, np.ndarray] = {}
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="dream", fps=1, seed=seed)
        ws.send_json({"type": "pause", "paused": True})
        ws.send_json({"type": "ping", "t": 1})
        while (msg := recv(ws))["type"] != "pong":  # frames ticked before the pause count too
            if msg["type"] == "frame":
                got[msg["header"]["tick"]] = msg["frames"]["dream"]
        for _ in range(steps):
            ws.send_json({"type": "step"})
            msg = recv(ws, "frame")
            got[msg["header"]["tick"]] = msg["frames"]["dream"]
    return got


def test_a_seeded_session_replays_its_dream(client) -> None:
    """Same seed and inputs -> the same dreamed frames, tick by tick; another seed, other frames.
    Each session draws its dream's noise from its own generator (sessions share the worker)."""
    first, again, other = (dream_frames(client, seed) for seed in (11, 11, 12))
    common = sorted(set(first) & set(again) & set(other) - {0})  # tick 0 is the real seed frame
    assert len(common) >= 3
    assert all(np.array_equal(first[t], again[t]) for t in common)
    assert all(not np.array_equal(first[t], other[t]) for t in common)


def test_a_key_press_pulls_its_tick_forward_by_half_a_frame() -> None:
    frame = 1 / 15
    assert tick_due(10.0, False, frame) == 10.0  # nothing pressed: the tick keeps its slot
    assert tick_due(10.0, True, frame) == pytest.approx(10.0 - EARLY_INPUT * frame)
    assert EARLY_INPUT == 0.5


def test_a_key_press_is_played_early_and_the_frame_rate_is_kept(client) -> None:
    """At 1 fps a press would wait up to a second for the next tick; it is played half a second
    after the tick before it, and the tick after it keeps its slot (two ticks in two seconds), so
    the press costs no frame rate. Bounds with 0.15-0.3 s to spare: a slow tick makes the first gap
    longer only past 0.35 s of work (the tiny test model takes milliseconds)."""
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="dream", fps=1, seed=0)
        recv(ws, "frame")  # the seed frame (tick 0), before the schedule runs
        recv(ws, "frame")
        t1 = time.monotonic()  # a tick on its slot, nothing pressed
        ws.send_json({"type": "input", "seq": 1, "action": 3})
        pressed = recv(ws, "frame")
        t2 = time.monotonic()
        assert pressed["header"]["seq"] == 1
        recv(ws, "frame")
        t3 = time.monotonic()
    assert t2 - t1 <= 0.85, f"the press waited {t2 - t1:.2f} s: not pulled forward (1 s without)"
    assert t3 - t1 >= 1.7, f"two ticks in {t3 - t1:.2f} s: the press moved the schedule (2 s kept)"
