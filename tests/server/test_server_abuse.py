"""Bad input: the offending client gets a clear error or a documented close code; another
session keeps playing and the server stays up."""

from __future__ import annotations

import json

import pytest
from server_helpers import make_client, recv, start
from starlette.websockets import WebSocketDisconnect

from server.protocol import CloseCode

# (what is sent, expected error code). Text unless bytes.
BAD_INPUTS: list[tuple[str | bytes, str]] = [
    ("{not json", "bad_json"),
    ("", "bad_json"),
    ("[" * 2000 + "]" * 2000, "bad_json"),  # nested past the parser's recursion limit
    ("null", "bad_message"),
    ("[1, 2, 3]", "bad_message"),
    ('"start"', "bad_message"),
    ("{}", "unknown_type"),
    ('{"type": "launch_missiles"}', "unknown_type"),
    ('{"type": 7}', "unknown_type"),
    ('{"type": ["input"]}', "unknown_type"),
    ('{"type": "input", "seq": 1}', "invalid"),  # missing action
    ('{"type": "input", "seq": 1, "action": 300}', "invalid"),  # over the schema's 0..255
    ('{"type": "input", "seq": 1, "action": 9}', "bad_action"),  # Breakout has 4 actions
    ('{"type": "input", "seq": -1, "action": 0}', "invalid"),
    ('{"type": "input", "seq": 1, "action": "LEFT"}', "invalid"),
    ('{"type": "input", "seq": 1.5, "action": 0}', "invalid"),
    ('{"type": "input", "seq": 1, "action": true}', "invalid"),
    ('{"type": "input", "seq": 1e400, "action": 0}', "invalid"),
    ('{"type": "configure", "steps": 0}', "invalid"),
    ('{"type": "configure", "steps": 11}', "invalid"),
    ('{"type": "configure", "fps": 0}', "invalid"),
    ('{"type": "configure", "fps": 1000}', "invalid"),
    ('{"type": "configure", "sampler": "dpm"}', "invalid"),
    ('{"type": "configure", "mode": "matrix"}', "invalid"),
    ('{"type": "configure", "control": "skynet"}', "bad_control"),
    ('{"type": "pause", "paused": "yes"}', "invalid"),
    ('{"type": "start", "game": "Pitfall"}', "unknown_game"),
    ('{"type": "start", "game": "Breakout", "steps": -3}', "invalid"),
    ('{"type": "ping", "extra": 1}', "invalid"),
    ('{"type": "reset", "seed": -5}', "invalid"),
    (b"\x00\x01binary", "binary_not_expected"),
    (b"DAF1" + bytes(100), "binary_not_expected"),
]


def test_twenty_plus_kinds_of_bad_input_leave_others_playing(client):
    assert len(BAD_INPUTS) >= 20
    with client.websocket_connect("/ws") as good, client.websocket_connect("/ws") as bad:
        start(good, mode="side", fps=30)
        start(bad, mode="dream", fps=30)
        for payload, code in BAD_INPUTS:
            if isinstance(payload, bytes):
                bad.send_bytes(payload)
            else:
                bad.send_text(payload)
            err = recv(bad, "error")
            assert err["code"] == code, (payload[:60], err)
            assert err["message"] and not err["fatal"]
        # The bad client's session still plays, and so does the good one.
        bad.send_json({"type": "input", "seq": 1, "action": 3})
        assert recv(bad, "frame")["header"]["frames"] == ["dream"]
        tick = recv(good, "frame")["header"]["tick"]
        assert recv(good, "frame")["header"]["tick"] > tick
    assert client.get("/api/health").json()["status"] == "ok"


def test_messages_before_start(client):
    with client.websocket_connect("/ws") as ws:
        assert recv(ws)["type"] == "hello"
        for kind in ("input", "reset", "step", "resync", "save_episode"):
            msg = {"type": kind, **({"seq": 1, "action": 0} if kind == "input" else {})}
            ws.send_text(json.dumps(msg))
            assert recv(ws, "error")["code"] == "not_started"


@pytest.mark.parametrize("kind", ["text", "bytes"])
def test_oversized_message_closes_1009(client, kind):
    with client.websocket_connect("/ws") as good, client.websocket_connect("/ws") as ws:
        start(good, mode="dream", fps=30)
        assert recv(ws)["type"] == "hello"
        big = '{"type": "ping", "t": "' + "x" * 10_000 + '"}'
        ws.send_text(big) if kind == "text" else ws.send_bytes(big.encode())
        err = recv(ws, "error")
        assert err["code"] == "too_big" and err["fatal"]
        with pytest.raises(WebSocketDisconnect) as e:
            recv(ws)
        assert e.value.code == CloseCode.TOO_BIG
        recv(good, "frame")


def test_flood_is_rate_limited_then_closed(snapshot_dir, data_dir):
    with make_client(snapshot_dir, data_dir, rate_limit_per_s=1, rate_burst=5, flood_close_after=20) as c:
        with c.websocket_connect("/ws") as good, c.websocket_connect("/ws") as flood:
            start(good, mode="dream", fps=30)
            assert recv(flood)["type"] == "hello"
            for i in range(100):
                flood.send_text(json.dumps({"type": "ping", "t": i}))
            codes = set()
            with pytest.raises(WebSocketDisconnect) as e:
                for _ in range(400):
                    msg = recv(flood)
                    codes.add(msg.get("code"))
            assert e.value.code == CloseCode.ABUSE
            assert {"rate_limited", "flood"} <= codes
            tick = recv(good, "frame")["header"]["tick"]
            assert recv(good, "frame")["header"]["tick"] > tick
        assert c.get("/api/health").json()["status"] == "ok"


def test_too_many_errors_closes_4008(snapshot_dir, data_dir):
    with make_client(snapshot_dir, data_dir, max_errors=5) as c:
        with c.websocket_connect("/ws") as ws:
            assert recv(ws)["type"] == "hello"
            for _ in range(5):
                ws.send_text("nope")
            codes = []
            with pytest.raises(WebSocketDisconnect) as e:
                for _ in range(10):
                    codes.append(recv(ws)["code"])
            assert e.value.code == CloseCode.ABUSE and codes[-1] == "too_many_errors"
