"""End to end in headless Chromium: load the page, play Side by side with the keyboard, check
that both screens change, that the keys reach the server, record a video, take a screenshot."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from web_helpers import CHROMIUM, CHROMIUM_ARGS, wait_ticks

CANVASES = (
    "() => ({real: document.getElementById('real').toDataURL(), dream: document.getElementById('dream').toDataURL()})"
)


@pytest.mark.browser
@pytest.mark.slow
def test_side_by_side_in_chromium(live_server: str, artifacts: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            downloads = []
            page.on("download", lambda d: downloads.append(d))
            page.goto(live_server + "?mode=side")
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('playing')", timeout=120_000
            )
            assert page.input_value("#mode") == "side"
            assert page.locator("#legend tr").count() == 4  # Breakout: NOOP FIRE RIGHT LEFT
            wait_ticks(page, 2)
            before = page.evaluate(CANVASES)

            page.click("#record")
            page.keyboard.down("Space")  # FIRE serves the ball
            page.wait_for_function("document.getElementById('hud-tick').textContent.includes('FIRE')", timeout=60_000)
            page.keyboard.up("Space")
            page.keyboard.down("ArrowRight")
            page.wait_for_function("document.getElementById('hud-tick').textContent.includes('RIGHT')", timeout=60_000)
            wait_ticks(page, 3)
            page.keyboard.up("ArrowRight")
            page.keyboard.down("KeyA")  # WASD works too
            page.wait_for_function("document.getElementById('hud-tick').textContent.includes('LEFT')", timeout=60_000)
            page.keyboard.up("KeyA")
            wait_ticks(page, 2)

            after = page.evaluate(CANVASES)
            assert after["real"] != before["real"], "the real screen did not change"
            assert after["dream"] != before["dream"], "the dream screen did not change"
            assert "ms" in page.inner_text("#hud-lat")  # input-to-display latency measured
            assert float(page.inner_text("#hud-fps")) > 0
            psnr_points = page.evaluate(
                "() => { const c = document.getElementById('chart').getContext('2d');"
                " const d = c.getImageData(0, 0, 360, 120).data; let n = 0;"
                " for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 200 && d[i] < 150) n++; return n; }"
            )
            assert psnr_points > 0, "divergence chart is empty"

            # the encoder hands over video every 500 ms once it has frames: stop after the first, not after a time
            encoded = "Number(document.getElementById('rec-canvas').dataset.recordedBytes) > 0"
            page.wait_for_function(encoded, timeout=60_000)
            page.click("#record")  # stop: downloads the webm and the actions JSON
            deadline = time.monotonic() + 30
            while len(downloads) < 2 and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            names = sorted(d.suggested_filename for d in downloads)
            assert len(names) == 2 and names[0].endswith(".actions.json") and names[1].endswith(".webm"), names
            video = artifacts / names[1]
            downloads[[d.suggested_filename for d in downloads].index(names[1])].save_as(video)
            assert video.stat().st_size > 0

            page.screenshot(path=str(artifacts / "web_side_by_side.png"))
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.slow
def test_agent_control_in_chromium(live_server: str, artifacts: Path) -> None:
    """?control=agent hands the keys to the trained agent; its probabilities and value are shown;
    T gives control back to the keyboard and takes it again."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live_server + "?mode=side&control=agent")
            page.wait_for_selector("#agent-panel", state="visible", timeout=120_000)
            assert page.input_value("#control") == "agent"
            assert page.locator("#agent-probs tr").count() == 4
            percents = [int(t.rstrip("%")) for t in page.locator("#agent-probs td:last-child").all_inner_texts()]
            assert 98 <= sum(percents) <= 102, percents  # the untrained agent: 25 % each, rounded
            float(page.inner_text("#agent-value"))
            page.screenshot(path=str(artifacts / "web_agent.png"))

            page.keyboard.press("KeyT")  # back to the keyboard
            page.wait_for_selector("#agent-panel", state="hidden", timeout=60_000)
            assert page.input_value("#control") == "human"
            page.keyboard.press("KeyT")
            page.wait_for_selector("#agent-panel", state="visible", timeout=60_000)
            assert page.input_value("#control") == "agent"
            assert not errors, errors
        finally:
            browser.close()
