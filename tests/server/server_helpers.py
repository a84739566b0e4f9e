"""Helpers for the server tests (imported by the test modules and conftest)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from server.app import create_app
from server.config import Settings
from server.protocol import decode_frame


def make_client(snapshot_dir: Path, data_dir: Path, **overrides) -> TestClient:
    settings = Settings(checkpoint_dir=snapshot_dir, data_dir=data_dir, env_threads=2, **overrides)
    return TestClient(create_app(settings))


def recv(ws, want: str | None = None, limit: int = 200) -> dict:
    """Next message (JSON dict, or {'type': 'frame', 'header', 'frames'}); skips until `want` if given."""
    for _ in range(limit):
        msg = ws.receive()
        if msg["type"] == "websocket.close":
            raise WebSocketDisconnect(msg.get("code", 1000), msg.get("reason"))
        if msg.get("bytes") is not None:
            header, frames = decode_frame(msg["bytes"])
            out = {"type": "frame", "header": header, "frames": frames}
        elif msg.get("text") is not None:
            out = json.loads(msg["text"])
        else:
            raise AssertionError(f"unexpected message {msg}")
        if want is None or out["type"] == want:
            return out
    raise AssertionError(f"no {want!r} message within {limit} messages")


def start(ws, **fields) -> dict:
    assert recv(ws)["type"] == "hello"
    ws.send_json({"type": "start", "game": "Breakout", **fields})
    return recv(ws, "ready")


def recv_all(ws, *types: str, limit: int = 200) -> dict[str, dict]:
    """Read until one message of each type arrived (frames and JSON may interleave either way)."""
    got: dict[str, dict] = {}
    for _ in range(limit):
        msg = recv(ws)
        if msg["type"] in types and msg["type"] not in got:
            got[msg["type"]] = msg
            if len(got) == len(types):
                return got
    raise AssertionError(f"missing {set(types) - set(got)} within {limit} messages")
