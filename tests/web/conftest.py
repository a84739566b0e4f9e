"""A real server (uvicorn on a free loopback port, tiny untrained world model and agent) for browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from web_helpers import REPO, LiveServer

from server.config import Settings
from server.dev_snapshot import make_agent_snapshot, make_snapshot

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    return out


@pytest.fixture(scope="module")
def web_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    ckpt = tmp_path_factory.mktemp("checkpoints")
    make_snapshot(ckpt, "Breakout", "tiny")
    make_agent_snapshot(ckpt, "Breakout", "tiny")
    return Settings(checkpoint_dir=ckpt, data_dir=tmp_path_factory.mktemp("data"), port=0)


@pytest.fixture(scope="module")
def live_server(web_settings: Settings) -> Iterator[str]:
    server = LiveServer(web_settings)
    yield server.url
    server.stop()
