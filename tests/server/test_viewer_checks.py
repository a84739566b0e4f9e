"""The policy viewer's websocket (/ws/viewer) passes the checks the play websocket (/ws) has, through
the same code (server/guard.py): Origin, the one session cap, message size and rate, start rate.
And the app leaves the viewer out only when an optional dependency is missing."""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import logging
import sys

import pytest
from server_helpers import make_client, recv
from starlette.websockets import WebSocketDisconnect

from server.app import create_app
from server.config import Settings
from server.protocol import CloseCode


def closed_with(ws) -> int:
    """Read until the server closes; the close code."""
    with pytest.raises(WebSocketDisconnect) as e:
        for _ in range(500):
            recv(ws)
    return e.value.code


def test_viewer_refuses_a_foreign_origin(snapshot_dir, data_dir):
    with make_client(snapshot_dir, data_dir, allowed_origins=["http://good.example"]) as c:
        with pytest.raises(WebSocketDisconnect) as e:
            with c.websocket_connect("/ws/viewer", headers={"origin": "http://evil.example"}) as ws:
                ws.send_json({"type": "warp"})
                recv(ws)
        assert e.value.code == CloseCode.ORIGIN_REJECTED
        for origin in ("http://good.example", "http://testserver"):  # allow-listed, the page's own
            with c.websocket_connect("/ws/viewer", headers={"origin": origin}) as ws:
                ws.send_json({"type": "warp"})
                assert recv(ws, "error")["code"] == "unknown_type"


def test_players_and_viewers_share_the_session_cap(snapshot_dir, data_dir):
    with make_client(snapshot_dir, data_dir, max_sessions=1) as c:
        with c.websocket_connect("/ws") as player:
            assert recv(player)["type"] == "hello"
            with c.websocket_connect("/ws/viewer") as viewer:
                viewer.send_json({"type": "warp"})  # not read: the server is full
                err = recv(viewer)
                assert err["type"] == "error" and err["code"] == "server_full" and err["fatal"]
                assert closed_with(viewer) == CloseCode.SERVER_FULL
        with c.websocket_connect("/ws/viewer") as viewer:
            viewer.send_json({"type": "warp"})
            assert recv(viewer, "error")["code"] == "unknown_type"  # admitted: its messages are read
            metrics = c.get("/api/metrics").json()["sessions"]
            assert metrics["active"] == 1 and metrics["list"][0]["endpoint"] == "viewer"
            with c.websocket_connect("/ws") as player:
                assert recv(player)["code"] == "server_full"
                assert closed_with(player) == CloseCode.SERVER_FULL
        assert c.get("/api/metrics").json()["sessions"]["rejected_full"] == 2


def test_viewer_flood_is_rate_limited_then_closed_while_a_player_plays(snapshot_dir, data_dir):
    with make_client(snapshot_dir, data_dir, rate_limit_per_s=1, rate_burst=5, flood_close_after=20) as c:
        with c.websocket_connect("/ws") as player, c.websocket_connect("/ws/viewer") as flood:
            assert recv(player)["type"] == "hello"
            player.send_json({"type": "start", "game": "Breakout", "mode": "dream", "fps": 30})
            recv(player, "ready")
            for _ in range(100):
                flood.send_text(json.dumps({"type": "pause"}))
            codes = set()
            with pytest.raises(WebSocketDisconnect) as e:
                for _ in range(400):
                    codes.add(recv(flood).get("code"))
            assert e.value.code == CloseCode.ABUSE
            assert {"rate_limited", "flood"} <= codes
            tick = recv(player, "frame")["header"]["tick"]
            assert recv(player, "frame")["header"]["tick"] > tick
        assert c.get("/api/health").json()["status"] == "ok"


def test_viewer_limits_message_size_and_starts(snapshot_dir, data_dir):
    # one start per 1,000 s: the bucket cannot refill during the test however slow the machine is
    with make_client(snapshot_dir, data_dir, max_message_bytes=256, start_rate_per_s=0.001) as c:
        with c.websocket_connect("/ws/viewer") as ws:
            start = {"type": "start", "task": "maze", "left": "maze/nope", "right": "maze/nope"}
            replies = []
            for _ in range(3):
                ws.send_json(start)
                replies.append(recv(ws, "error")["code"])
            assert replies == ["refused", "too_many_starts", "too_many_starts"]
            ws.send_text(json.dumps({"type": "speed", "fps": 1, "pad": "x" * 300}))
            err = recv(ws, "error")
            assert err["code"] == "too_big" and err["fatal"]
            assert closed_with(ws) == CloseCode.TOO_BIG


class _BrokenViewer(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """server.viewer failing on import with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "server.viewer" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise self.error


@pytest.mark.parametrize(
    "error, included",
    [
        (ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib"), False),  # the dbc extra
        (ModuleNotFoundError("No module named 'games.maze'", name="games.maze"), None),  # our own code
        (ModuleNotFoundError("No module named 'torchvision'", name="torchvision"), None),  # not optional
        (RuntimeError("a bug in the viewer"), None),
    ],
)
def test_only_a_missing_optional_dependency_leaves_the_viewer_out(monkeypatch, caplog, error, included):
    monkeypatch.delitem(sys.modules, "server.viewer", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenViewer(error), *sys.meta_path])
    if included is None:
        with pytest.raises(type(error)):
            create_app(Settings())
        return
    with caplog.at_level(logging.WARNING, logger="server.app"):
        app = create_app(Settings())
    assert "policy viewer not available" in caplog.text
    assert not any(getattr(r, "path", None) == "/ws/viewer" for r in app.routes)
