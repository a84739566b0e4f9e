"""The viewer in the app (create_app with the policies under test): REST routes and the websocket protocol.
Its origin check, session cap and rate limits: tests/server/test_viewer_checks.py."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from server.app import create_app
from server.config import Settings
from server.viewer import ViewerSettings


def tiny_world_model():
    from games.envs import action_meanings
    from model.world_model import WorldModel, preset_config

    torch.manual_seed(0)
    return WorldModel(preset_config("tiny", "Breakout", action_meanings("Breakout"))).configure(torch.device("cpu"))


@pytest.fixture(scope="module")
def client(maze_run: Path, breakout_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("viewer")
    shutil.copytree(maze_run / "maze", root / "maze")
    shutil.copytree(breakout_run / "policies", root / "breakout")
    # No world models to serve; starts unlimited here (the start rate has its own test).
    settings = Settings(checkpoint_dir=root / "none", data_dir=root / "data", start_rate_per_s=1000)
    app = create_app(settings, ViewerSettings(policy_dir=root, world_model_factory=tiny_world_model))
    with TestClient(app) as c:
        yield c


def frames_of(blob: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(blob):
        (n,) = struct.unpack(">I", blob[off : off + 4])
        out.append(blob[off + 4 : off + 4 + n])
        off += 4 + n
    return out


def test_rest_routes(client: TestClient) -> None:
    page = client.get("/viewer")
    assert page.status_code == 200 and "viewer.js" in page.text
    assert client.get("/viewer/static/viewer.js").status_code == 200
    assert client.get("/viewer/static/viewer.css").status_code == 200
    assert client.get("/viewer/static/secret.py").status_code == 404
    tasks = client.get("/api/viewer/tasks").json()["tasks"]
    assert {p["name"] for p in tasks["maze"]["policies"]} == {"maze/bc_s0", "maze/dbc_s0"}
    assert tasks["maze"]["diffusion"] == "maze/diffusion" and tasks["breakout"]["dream_available"]
    res = client.get("/api/viewer/results/maze")
    assert res.status_code == 200 and set(res.json()["summary"]) == {"bc", "dbc"}
    assert client.get("/api/viewer/plot/maze.png").content[:4] == b"\x89PNG"
    assert client.get("/api/viewer/results/breakout").status_code == 404
    assert client.get("/api/viewer/results/pong").status_code == 404


def test_maze_session_side_by_side(client: TestClient) -> None:
    with client.websocket_connect("/ws/viewer") as ws:
        ws.send_text(
            json.dumps(
                {"type": "start", "task": "maze", "left": "maze/bc_s0", "right": "maze/dbc_s0", "seed": 3, "fps": 60}
            )
        )
        started = json.loads(ws.receive_text())
        assert started["type"] == "started" and [s["algo"] for s in started["sides"]] == ["bc", "dbc"]
        first = frames_of(ws.receive_bytes())
        assert len(first) == 2 and first[0] == first[1]  # same seed -> same start
        for _ in range(3):
            tick = json.loads(ws.receive_text())
            frames = frames_of(ws.receive_bytes())
            assert tick["type"] == "tick" and len(frames) == 2 and all(f[:4] == b"\x89PNG" for f in frames)
            for side in tick["sides"]:
                assert len(side["action"]) == 2 and isinstance(side["expert_likeness"], float)
                assert "success_rate" in side["stats"]
        ws.send_text(json.dumps({"type": "stop"}))
        while (msg := ws.receive()) and msg.get("text") is None or json.loads(msg["text"])["type"] != "stopped":
            pass


def test_bad_requests_get_one_error_message(client: TestClient) -> None:
    with client.websocket_connect("/ws/viewer") as ws:
        for msg, expected in [
            ({"type": "start", "task": "maze", "left": "maze/nope", "right": "maze/bc_s0"}, "unknown policy"),
            ({"type": "start", "task": "pong", "left": "a", "right": "b"}, "unknown task"),
            (
                {"type": "start", "task": "maze", "left": "maze/bc_s0", "right": "maze/bc_s0", "mode": "dream"},
                "no dream mode",
            ),
            ({"type": "start", "task": "maze", "left": "breakout/bc_s0", "right": "maze/bc_s0"}, "unknown policy"),
            ({"type": "warp"}, "unknown message type"),
            ({"type": "start", "task": "maze"}, "bad message"),
        ]:
            ws.send_text(json.dumps(msg))
            reply = json.loads(ws.receive_text())
            assert reply["type"] == "error" and expected in reply["message"], (msg, reply)


@pytest.mark.parametrize("mode", ["real", "dream"])
def test_breakout_real_and_dream(client: TestClient, mode: str) -> None:
    with client.websocket_connect("/ws/viewer") as ws:
        ws.send_text(
            json.dumps(
                {
                    "type": "start",
                    "task": "breakout",
                    "left": "breakout/bc_s0",
                    "right": "breakout/dbc_s0",
                    "mode": mode,
                    "fps": 60,
                }
            )
        )
        assert json.loads(ws.receive_text())["type"] == "started"
        ws.receive_bytes()
        tick = json.loads(ws.receive_text())
        frames = frames_of(ws.receive_bytes())
        assert len(frames) == 2
        for side in tick["sides"]:
            assert len(side["probs"]) == 4 and side["action_name"] in ("NOOP", "FIRE", "RIGHT", "LEFT")
            assert isinstance(side["expert_likeness"], float)
            assert side["reference_action"] in ("NOOP", "FIRE", "RIGHT", "LEFT")
