"""Fixtures for the server tests: a tiny untrained Breakout snapshot and apps built on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from server_helpers import make_client

from server.dev_snapshot import make_snapshot

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    make_snapshot(folder, "Breakout", "tiny")
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def client(snapshot_dir: Path, data_dir: Path) -> Iterator[TestClient]:
    with make_client(snapshot_dir, data_dir) as c:
        yield c
