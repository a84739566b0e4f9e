"""What the page relies on: the serve state, taps shorter than a tick, score and lives of both
games, `tick` from 0 after every new start, each control's modes, the start limit, and the close
code a restarting server sends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_helpers import make_client, recv, recv_all, start
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server.protocol import CloseCode

REPO = Path(__file__).resolve().parents[2]
NOOP, FIRE, RIGHT = 0, 1, 2  # Breakout's minimal action set: NOOP FIRE RIGHT LEFT


def frame_with(ws, cond, limit: int = 60) -> dict:
    """The header of the first frame for which cond(header) holds."""
    for _ in range(limit):
        head = recv(ws, "frame")["header"]
        if cond(head):
            return head
    raise AssertionError(f"no such frame within {limit} frames")


def test_waiting_for_serve_until_fire_in_the_real_game(client) -> None:
    """Breakout waits for FIRE after the start: the emulator's RAM says so; FIRE serves."""
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="side", fps=30, seed=2)
        heads = [recv(ws, "frame")["header"] for _ in range(4)]
        assert all(h["waiting_for_serve"] for h in heads)
        ws.send_json({"type": "input", "seq": 1, "action": FIRE})
        served = frame_with(ws, lambda h: h["seq"] == 1)
        assert served["action"] == FIRE and not served["waiting_for_serve"]
        ws.send_json({"type": "reset"})
        again = frame_with(ws, lambda h: h["tick"] == 0)
        assert again["waiting_for_serve"]


def test_waiting_for_serve_in_the_dream(client) -> None:
    """Dream mode: waiting until an action with FIRE, and again after each end the dream draws
    (the tiny untrained model draws ends often); dream lives count those ends down."""
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="dream", fps=30, seed=3)
        first = frame_with(ws, lambda h: h["tick"] == 0)
        assert first["waiting_for_serve"]
        head = frame_with(ws, lambda h: h["dream"] is not None)
        assert head["dream"]["lives"] == 5 - head["dream"]["end"]
        ws.send_json({"type": "input", "seq": 1, "action": FIRE})  # held from now on
        prev = frame_with(ws, lambda h: h["seq"] == 1 and not h["dream"]["end"])
        assert not prev["waiting_for_serve"]
        for _ in range(200):
            head = recv(ws, "frame")["header"]
            if head["dream"]["end"]:
                assert head["waiting_for_serve"]
                assert head["dream"]["lives"] == max(0, prev["dream"]["lives"] - 1)
                break
            assert not head["waiting_for_serve"]
            prev = head
        else:
            pytest.fail("the dream drew no end in 200 ticks")


@pytest.mark.parametrize(("mode", "fps"), [("side", 1), ("dream", 2), ("real", 1)])
def test_a_tap_between_two_ticks_is_played(client, mode: str, fps: int) -> None:
    """keydown and keyup before the next tick (a 30 ms tap at 1-2 fps): the next tick plays the
    press, and the release after it."""
    with client.websocket_connect("/ws") as ws:
        start(ws, mode=mode, fps=fps, seed=5)
        recv(ws, "frame")  # a tick just went: the next one is 1 / fps away
        ws.send_json({"type": "input", "seq": 1, "action": RIGHT})
        time.sleep(0.03)
        ws.send_json({"type": "input", "seq": 2, "action": NOOP})
        pressed = frame_with(ws, lambda h: h["seq"] >= 1, limit=10)
        assert (pressed["seq"], pressed["action"]) == (1, RIGHT)
        released = recv(ws, "frame")["header"]
        assert (released["seq"], released["action"]) == (2, NOOP)


def test_a_held_key_is_played_once_and_kept(client) -> None:
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="real", fps=30, seed=5)
        ws.send_json({"type": "input", "seq": 1, "action": RIGHT})
        heads = [frame_with(ws, lambda h: h["seq"] == 1)] + [recv(ws, "frame")["header"] for _ in range(3)]
        assert all(h["action"] == RIGHT for h in heads)


def test_score_and_lives_of_both_games(client) -> None:
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="side", fps=30, seed=1)
        head = frame_with(ws, lambda h: h["tick"] >= 2)
        assert head["real"]["lives"] == 5 and head["real"]["episode_return"] == 0
        dream = head["dream"]
        assert set(dream) == {"reward", "end_prob", "end", "lives", "episode_return"}
        assert 0 <= dream["lives"] <= 5 and isinstance(dream["end"], bool)


def test_tick_starts_from_zero_after_reset_resync_and_a_new_mode(client) -> None:
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="side", fps=30, seed=1)
        for command in ({"type": "reset"}, {"type": "resync"}, {"type": "configure", "mode": "dream"}):
            frame_with(ws, lambda h: h["tick"] >= 3)
            ws.send_json(command)
            got = recv_all(ws, "state")
            assert got["state"]["reason"] in ("reset", "resync", "configure")
            head = frame_with(ws, lambda h: h["tick"] <= 1)  # frames sent before the command come first
            assert head["tick"] == 0, command


def test_ready_lists_the_modes_of_each_control(client) -> None:
    with client.websocket_connect("/ws") as ws:
        ready = start(ws, mode="side")
        modes = ready["control_modes"]
        assert set(modes) == set(ready["policies"])
        assert modes["human"] == ["dream", "real", "side"] and modes["expert"] == ["real", "side"]
    game = client.get("/api/games").json()["games"][0]
    assert game["control_modes"] == modes


@pytest.mark.parametrize("text", ['{"type": "ping", "t": NaN}', '{"type": "ping", "t": -Infinity}'])
def test_nan_and_infinity_are_not_json(client, text: str) -> None:
    with client.websocket_connect("/ws") as ws:
        assert recv(ws)["type"] == "hello"
        ws.send_text(text)
        err = recv(ws)  # the answer: an error, not a pong
        assert err["type"] == "error" and err["code"] == "bad_json" and not err["fatal"]
        assert "not a JSON number" in err["message"]
        ws.send_json({"type": "ping", "t": 2})
        assert recv(ws, "pong")["t"] == 2


def test_a_flood_of_starts_is_refused_and_others_play_on(snapshot_dir, data_dir) -> None:
    # one start per 100 s for each websocket: the refusals do not depend on how fast the machine is
    with make_client(snapshot_dir, data_dir, start_rate_per_s=0.01) as c:
        with c.websocket_connect("/ws") as good, c.websocket_connect("/ws") as flood:
            start(good, mode="real", fps=30)
            assert recv(flood)["type"] == "hello"
            for _ in range(12):
                flood.send_json({"type": "start", "game": "Breakout", "mode": "real", "fps": 30})
            readies = refused = 0
            while readies + refused < 12:
                msg = recv(flood)
                readies += msg["type"] == "ready"
                refused += msg["type"] == "error" and msg["code"] == "too_many_starts"
            assert refused >= 6 and readies >= 1
            tick = recv(good, "frame")["header"]["tick"]
            assert frame_with(good, lambda h: h["tick"] > tick)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connect(url: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(url)
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not open"
            time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_closes_with_the_documented_code(snapshot_dir, tmp_path) -> None:
    """`python -m server` stopped with SIGTERM: the player's socket closes with 1012 (docs/protocol.md)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = ["--checkpoint-dir", str(snapshot_dir), "--port", str(port), "--data-dir", str(tmp_path), "--threads", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", *args, "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in proc.stdout:  # the emulator's banner may come first
            if "Dream Arcade: open" in line:  # models loaded; the socket opens next
                break
        with wait_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
            ws.send(json.dumps({"type": "start", "game": "Breakout", "mode": "real", "fps": 5}))
            while not isinstance(msg := ws.recv(timeout=30), bytes) and json.loads(msg)["type"] != "ready":
                pass
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=30)
            assert ws.close_code == CloseCode.RESTART == 1012
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
