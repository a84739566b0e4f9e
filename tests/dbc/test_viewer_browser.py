"""The viewer page in real headless Chromium: pick policies, start, frames and ticks arrive, table drawn."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from server.app import create_app
from server.config import Settings
from server.viewer import ViewerSettings

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(maze_run: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("browser")
    shutil.copytree(maze_run / "maze", root / "maze")
    app = create_app(Settings(checkpoint_dir=root / "none", data_dir=root / "data"), ViewerSettings(policy_dir=root))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.mark.browser
def test_viewer_page_runs_two_policies(server_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server_url}/viewer")
        page.wait_for_function("document.querySelector('#left').options.length >= 2", timeout=120_000)
        assert page.input_value("#left") == "maze/bc_s0" and page.input_value("#right") == "maze/dbc_s0"
        page.wait_for_selector("#table tbody tr", timeout=120_000)  # evaluation table from the JSON
        assert "DBC" in page.inner_text("#table")
        page.wait_for_function("document.querySelector('#status').textContent === 'connected'", timeout=120_000)
        page.click("#start")
        page.wait_for_function("Number(document.body.dataset.frames || 0) >= 4", timeout=300_000)
        assert "expert-likeness" in page.inner_text("#side-1 .likeness")
        assert "a = (" in page.inner_text("#side-0 .action")
        assert "running maze" in page.inner_text("#status")
        page.click("#stop")
        page.wait_for_function("document.querySelector('#status').textContent === 'stopped'", timeout=120_000)
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
        browser.close()
    assert not errors, errors
