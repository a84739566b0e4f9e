"""A real server (uvicorn on a free loopback port, tiny untrained world model and agent) for browser tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import uvicorn
from web_helpers import REPO

from server.app import create_app
from server.config import Settings
from server.dev_snapshot import make_agent_snapshot, make_snapshot

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    return out


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ckpt = tmp_path_factory.mktemp("checkpoints")
    make_snapshot(ckpt, "Breakout", "tiny")
    make_agent_snapshot(ckpt, "Breakout", "tiny")
    settings = Settings(checkpoint_dir=ckpt, data_dir=tmp_path_factory.mktemp("data"), port=0)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(60)
    if thread.is_alive():
        server.force_exit = True
        thread.join(30)
    assert not thread.is_alive(), "server did not stop"
