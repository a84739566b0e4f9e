"""`python -m server` starts and serves with training/ absent: what the Dockerfile copies is all
serving needs. The folders it copies go to a temporary directory; the server runs there, on
PYTHONPATH = that directory + the installed packages (`-S`: no site hooks, so the editable install
cannot hand it the repository's training/), and answers HTTP and a game over its websocket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

from server.protocol import decode_frame

REPO = Path(__file__).resolve().parents[2]
DATA = ("checkpoints", "policies")
"""Copied by the Dockerfile but not needed here: the test serves a tiny snapshot."""


def docker_copies() -> list[str]:
    """Sources of the Dockerfile's COPY lines, e.g. ['pyproject.toml', 'README.md', 'games', ...]."""
    out = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"]:
            out += [p for p in parts[1:-1] if not p.startswith("--")]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def test_dockerfile_copies_no_training_code() -> None:
    copies = docker_copies()
    assert {"games", "model", "server", "web"} <= set(copies)
    assert not {"training", ".", "tests", "data", "runs"} & set(copies), copies


def test_server_serves_without_training(tmp_path: Path, snapshot_dir: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for name in docker_copies():
        if name in DATA:
            continue
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, app / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, app / name)
    paths = sysconfig.get_paths()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(app), paths["purelib"], paths["platlib"]])}
    python = [sys.executable, "-S"]
    probe = "import importlib.util as u; print(u.find_spec('training'), u.find_spec('server').origin)"
    found = subprocess.run([*python, "-c", probe], cwd=app, env=env, capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["None", str(app / "server" / "__init__.py")]

    port = free_port()
    args = ["--port", str(port), "--checkpoint-dir", str(snapshot_dir), "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [*python, "-m", "server", *args, "--threads", "1", "--log-level", "warning"],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: nothing it starts outlives the test
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900  # a hang guard: loading (and the ONNX export) is slow on a busy machine
        while True:
            assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{proc.stdout.read()}"
            try:
                status, body = get(f"{base}/api/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer within 900 s"
                time.sleep(0.5)
        health = json.loads(body)
        assert status == 200 and health["games"] == ["Breakout"] and health["load_errors"] == []
        status, page = get(f"{base}/")
        assert status == 200 and b"<html" in page.lower()

        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=30) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
            ws.send(json.dumps({"type": "start", "game": "Breakout", "mode": "side", "fps": 30}))
            seen = set()  # message types, and the screens frames arrived for
            while not {"ready", "real", "dream"} <= seen:
                msg = ws.recv(timeout=60)
                if isinstance(msg, bytes):
                    header, frames = decode_frame(msg)
                    assert all(f.shape == (64, 64, 3) for f in frames.values())
                    seen |= set(frames)
                else:
                    seen.add(json.loads(msg)["type"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
