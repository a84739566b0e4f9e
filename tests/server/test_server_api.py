"""HTTP endpoints, keymap and protocol helpers."""

from __future__ import annotations

import numpy as np

from server.keymap import action_table, keymap, resolve
from server.protocol import FrameHeader, decode_frame, encode_frame


def test_health_and_games(client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["games"] == ["Breakout"]
    games = client.get("/api/games").json()["games"]
    assert games[0]["game"] == "Breakout"
    assert games[0]["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert "expert" in games[0]["policies"] and "random" in games[0]["policies"]
    km = games[0]["keymap"]
    assert km["keys"]["Space"] == "FIRE" and km["keys"]["KeyA"] == "LEFT"
    assert len(km["table"]) == 32


def test_metrics_shape(client):
    m = client.get("/api/metrics").json()
    assert {"sessions", "fps", "drops", "workers", "rss_bytes"} <= set(m)
    assert "Breakout" in m["workers"] and "batch_sizes" in m["workers"]["Breakout"]
    assert m["rss_bytes"] > 0


def test_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "Dream Arcade" in r.text
    assert client.get("/js/main.js").status_code == 200


def test_keymap_by_name():
    full = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT"]
    full += [
        "UPFIRE",
        "RIGHTFIRE",
        "LEFTFIRE",
        "DOWNFIRE",
        "UPRIGHTFIRE",
        "UPLEFTFIRE",
        "DOWNRIGHTFIRE",
        "DOWNLEFTFIRE",
    ]
    assert resolve({"UP", "RIGHT", "FIRE"}, full) == full.index("UPRIGHTFIRE")
    assert resolve({"UP", "RIGHT"}, full) == full.index("UPRIGHT")
    assert resolve({"LEFT", "RIGHT"}, full) == full.index("NOOP")  # opposites cancel
    breakout = ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert resolve({"RIGHT", "FIRE"}, breakout) in (1, 2)  # no RIGHTFIRE: a held subset
    assert resolve({"UP"}, breakout) == 0
    table = action_table(breakout)
    assert table[0] == 0 and table[1 << 3] == 2 and table[1 << 2] == 3 and table[1 << 4] == 1
    legend = keymap(breakout)["legend"]
    assert [row["action"] for row in legend] == breakout


def test_frame_round_trip():
    real = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    dream = real[::-1].copy()
    head = FrameHeader(
        tick=3, seq=7, action=1, mode="side", width=64, height=64, frames=["real", "dream"], real=None,
        dream=None, ms=1.0, tick_ms=2.0, fps=15.0, drops=0, server_time=0.0,
    )  # fmt: skip
    data = encode_frame(head, [real, dream])
    assert data[:4] == b"DAF1" and len(data) > 2 * 64 * 64 * 3
    header, frames = decode_frame(data)
    assert header["seq"] == 7 and np.array_equal(frames["real"], real) and np.array_equal(frames["dream"], dream)
