"""Constants and helpers shared by the browser tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn
from browser_helpers import CHROMIUM as CHROMIUM  # re-exported: the web tests import it from here
from browser_helpers import CHROMIUM_ARGS as CHROMIUM_ARGS
from playwright.sync_api import Page

from server.app import create_app
from server.config import Settings

REPO = Path(__file__).resolve().parents[2]

# Installed before the page's scripts: every message the page sends, as parsed JSON.
RECORD_SENT = """
window.sent = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (typeof data === "string") window.sent.push(JSON.parse(data));
  return send.call(this, data);
};
"""


class LiveServer:
    """uvicorn serving the app in a thread on a loopback port (0: a free one), until stop()."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        # Start-up loads the models and, with the 'auto' backend, exports and times the ONNX graph:
        # over 120 s on a 2-core machine busy with training. The deadline only guards against a hang.
        deadline = time.monotonic() + 900
        while not self.server.started:
            assert self.thread.is_alive(), "the server thread died during start-up"
            assert time.monotonic() < deadline, "server did not start within 15 minutes"
            time.sleep(0.1)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        """As on SIGTERM: uvicorn closes the websockets (1012), then the app shuts down."""
        self.server.should_exit = True
        self.thread.join(60)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(30)
        assert not self.thread.is_alive(), "server did not stop"


def wait_playing(page: Page, timeout_ms: float = 120_000) -> None:
    page.wait_for_function("document.getElementById('status').textContent.startsWith('playing')", timeout=timeout_ms)


def tick(page: Page) -> int:
    text = page.inner_text("#hud-tick")
    return int(text.split("·")[0]) if "·" in text else -1


def wait_ticks(page: Page, n: int, timeout: float = 120) -> None:
    start, deadline = tick(page), time.monotonic() + timeout
    while tick(page) < start + n:
        assert time.monotonic() < deadline, f"fewer than {n} ticks in {timeout} s"
        time.sleep(0.1)


def wait_action(page: Page, name: str, timeout_ms: float = 60_000) -> None:
    """Until the HUD shows a tick that played the action `name`."""
    page.wait_for_function(
        f"document.getElementById('hud-tick').textContent.endsWith('· {name}')", timeout=timeout_ms, polling=20
    )
