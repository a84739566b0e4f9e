"""Files over HTTP: a saved episode by the opaque id of its `saved` message (and nothing else),
one file for a double save, and the favicon."""

from __future__ import annotations

import io
import json

import numpy as np
from server_helpers import recv, recv_all, start

from server.config import WEB_DIR


def paused_real_game(ws) -> None:
    """Real play that has some steps to save and no more ticks: the episode cannot change."""
    start(ws, mode="real", fps=30)
    ws.send_json({"type": "input", "seq": 1, "action": 1})
    for _ in range(3):
        recv(ws, "frame")
    ws.send_json({"type": "pause", "paused": True})
    assert recv(ws, "state")["settings"]["paused"] is True


def test_a_saved_episode_downloads_by_its_id(client, data_dir):
    with client.websocket_connect("/ws") as ws:
        paused_real_game(ws)
        ws.send_json({"type": "save_episode"})
        saved = recv(ws, "saved")
    assert saved["download"].startswith("/api/episodes/")
    key = saved["download"].rsplit("/", 1)[1]
    assert len(key) >= 16 and saved["file"] not in key  # opaque: no file name, no path

    r = client.get(saved["download"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == f'attachment; filename="Breakout-{saved["file"]}"'
    assert r.content == (data_dir / "Breakout" / saved["file"]).read_bytes()
    with np.load(io.BytesIO(r.content), allow_pickle=False) as z:
        assert z["obs"].shape == (saved["length"] + 1, 64, 64, 3) and z["obs"].dtype == np.uint8
        assert len(z["actions"]) == saved["length"]
        assert json.loads(z["meta"].tobytes())["source"] == "browser"


def test_unknown_and_crafted_episode_ids_are_404(client, data_dir):
    with client.websocket_connect("/ws") as ws:
        paused_real_game(ws)
        ws.send_json({"type": "save_episode"})
        saved = recv(ws, "saved")
    for bad in ("nope", saved["file"], f"Breakout%2F{saved['file']}", "..%2F..%2Fpyproject.toml", "%2Fetc%2Fpasswd"):
        r = client.get(f"/api/episodes/{bad}")
        assert r.status_code == 404, bad
    assert "no saved episode with this id" in client.get("/api/episodes/nope").json()["detail"]
    assert client.get(saved["download"]).status_code == 200


def test_a_double_save_writes_one_episode(client, data_dir):
    folder = data_dir / "Breakout"
    before = set(folder.glob("ep_*.npz"))
    with client.websocket_connect("/ws") as ws:
        paused_real_game(ws)
        ws.send_json({"type": "save_episode"})
        ws.send_json({"type": "save_episode"})  # before the first is written
        got = recv_all(ws, "saved", "error")
        assert got["error"]["code"] == "busy"
        ws.send_json({"type": "save_episode"})  # written, and nothing played since: the same file
        again = recv(ws, "saved")
    assert (again["file"], again["download"]) == (got["saved"]["file"], got["saved"]["download"])
    assert set(folder.glob("ep_*.npz")) - before == {folder / again["file"]}


def test_favicon(client):
    for path in ("/favicon.ico", "/favicon.svg"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml"), path
        assert r.content == (WEB_DIR / "favicon.svg").read_bytes()
