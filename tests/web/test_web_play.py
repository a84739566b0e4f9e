"""The page a player would want, in headless Chromium: the serve prompt, taps shorter than a tick,
score and lives beside each screen, controls that show what the server accepted, reconnecting,
the pause state, where keys go, accessibility basics, and a layout that fits a small window and
a phone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from web_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RECORD_SENT,
    LiveServer,
    wait_action,
    wait_playing,
    wait_ticks,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIRE, RIGHT, LEFT = 1, 2, 3  # Breakout: NOOP FIRE RIGHT LEFT


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def page_at(browser: Browser, url: str, width: int = 1280, height: int = 860, touch: bool = False) -> Iterator[Page]:
    """A fresh page that records what it sends (window.sent) and fails the test on a script error."""
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=touch, is_mobile=touch)
    context.add_init_script(RECORD_SENT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors


def sent_inputs(page: Page) -> list[int]:
    return [m["action"] for m in page.evaluate("window.sent") if m["type"] == "input"]


def tap_key(page: Page, key: str, ms: int = 30) -> None:
    page.keyboard.down(key)
    page.wait_for_timeout(ms)
    page.keyboard.up(key)


# keydown, then keyup `ms` later, timed inside the page (Playwright's own key presses go through
# the browser process and can come seconds apart on a loaded machine).
TAP_IN_PAGE = """([code, ms]) => new Promise((done) => {
  const key = (type) => document.body.dispatchEvent(new KeyboardEvent(type, {code, key: code, bubbles: true}));
  key("keydown");
  setTimeout(() => { key("keyup"); done(); }, ms);
})"""


def test_serve_prompt_until_the_player_serves(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=side&fps=4") as page:
        wait_playing(page)
        prompt = page.locator("#serve-overlay")
        prompt.wait_for(state="visible")
        assert prompt.inner_text() == "Press Space (or tap) to serve"
        tap_key(page, "Space")
        prompt.wait_for(state="hidden", timeout=60_000)  # the real game has a ball in play
        assert FIRE in sent_inputs(page)
        page.keyboard.press("KeyR")  # a new game waits for the serve again
        prompt.wait_for(state="visible", timeout=60_000)


def test_a_tap_on_the_screen_serves_in_the_dream(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=dream&fps=2") as page:
        wait_playing(page)
        page.locator("#serve-overlay").wait_for(state="visible")
        page.click("#dream")  # press and release between two ticks
        wait_action(page, "FIRE")
        assert sent_inputs(page)[:2] == [FIRE, 0]


@pytest.mark.parametrize("mode", ["side", "dream", "real"])
def test_a_30_ms_tap_at_1_fps_is_played(browser: Browser, live_server: str, mode: str) -> None:
    with page_at(browser, live_server + f"?mode={mode}&fps=1") as page:
        wait_playing(page)
        wait_ticks(page, 1)
        page.evaluate(TAP_IN_PAGE, ["ArrowRight", 30])
        assert sent_inputs(page) == [RIGHT, 0]
        wait_action(page, "RIGHT", timeout_ms=30_000)  # the server played the press


def test_a_tap_while_paused_is_played_by_the_next_step(browser: Browser, live_server: str) -> None:
    """No tick can fall inside the tap here, however slow the machine: it must be latched."""
    with page_at(browser, live_server + "?mode=side&fps=10") as page:
        wait_playing(page)
        page.keyboard.press("KeyP")
        page.wait_for_function("document.getElementById('pause').textContent === 'Resume'")
        page.evaluate(TAP_IN_PAGE, ["Space", 30])
        page.keyboard.press("KeyN")  # one tick
        wait_action(page, "FIRE", timeout_ms=30_000)
        assert sent_inputs(page) == [FIRE, 0]


def test_score_and_lives_beside_each_screen(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=side&fps=15") as page:
        wait_playing(page)
        page.evaluate(
            """() => { window.invented = 0; new MutationObserver(() => {
                 if (document.getElementById('dream-score').classList.contains('invented')) window.invented++;
               }).observe(document.getElementById('dream-score'), {attributes: true}); }"""
        )
        wait_ticks(page, 2)
        assert page.inner_text("#score-real") == "0" and page.inner_text("#lives-real") == "5"
        size = page.evaluate("parseFloat(getComputedStyle(document.getElementById('score-dream')).fontSize)")
        assert size >= 24, size  # large type
        # The untrained dream invents points and lost lives: shown, and flagged as the dream's own.
        page.wait_for_function(
            "document.getElementById('score-dream').textContent !== '0'"
            " || document.getElementById('lives-dream').textContent !== '5'",
            timeout=60_000,
        )
        assert page.evaluate("window.invented") > 0
        assert page.inner_text("#score-real") == "0"
        page.click("#pause")
        page.wait_for_function("document.getElementById('pause').textContent === 'Resume'")
        page.wait_for_timeout(300)  # a frame in flight
        returned = float(page.inner_text("#ret-dream"))
        assert page.inner_text("#score-dream") == f"{returned:.0f}"


def test_refused_choices_revert_and_impossible_ones_say_why(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=side&fps=4") as page:
        wait_playing(page)
        assert page.locator("#mode option[value=dream]").is_enabled()
        page.select_option("#control", "expert")
        page.wait_for_function("document.querySelector('#mode option[value=dream]').disabled", timeout=30_000)
        assert "real emulator" in page.get_attribute("#mode option[value=dream]", "title")

        def force_dream() -> None:  # what a stale page could still send
            page.evaluate(
                """() => { const m = document.getElementById('mode');
                   m.querySelector('option[value=dream]').disabled = false;
                   m.value = 'dream'; m.dispatchEvent(new Event('change')); }"""
            )

        force_dream()
        page.wait_for_function("document.getElementById('status').textContent.startsWith('bad_control')")
        assert page.input_value("#mode") == "side"  # back to what the server kept
        assert page.locator("#mode option[value=dream]").is_disabled()
        page.select_option("#sampler", "heun")  # the next accepted action clears the error
        page.wait_for_function("document.getElementById('status').textContent === 'playing Breakout'")
        assert "error" not in page.get_attribute("#status", "class")

        force_dream()
        page.wait_for_function("document.getElementById('status').textContent.startsWith('bad_control')")
        page.wait_for_function(  # and an error fades after a few seconds
            "document.getElementById('status').textContent === 'playing Breakout'", timeout=8_000
        )

        page.select_option("#control", "human")
        page.wait_for_function("!document.querySelector('#mode option[value=dream]').disabled")
        page.select_option("#mode", "dream")
        page.wait_for_function("document.querySelector('#control option[value=expert]').disabled", timeout=30_000)
        assert "real emulator" in page.get_attribute("#control option[value=expert]", "title")


def test_reconnects_after_a_server_restart(browser: Browser, web_settings) -> None:
    server = LiveServer(web_settings)
    port = server.port
    try:
        with page_at(browser, server.url + "?mode=real&fps=10") as page:
            wait_playing(page)
            server.stop()  # as on SIGTERM: the socket closes with 1012
            page.wait_for_function("document.getElementById('status').textContent.includes('reconnecting in')")
            status = page.inner_text("#status")
            assert "server restarting" in status and "1012" in status
            assert re.search(r"reconnecting in \d+ s", status), status
            server = LiveServer(web_settings, port)
            wait_playing(page, timeout_ms=90_000)  # reconnected, and the game started again
            starts = sum(m["type"] == "start" for m in page.evaluate("window.sent"))
            wait_ticks(page, 2)
            page.click("#start")
            page.wait_for_function(
                f"window.sent.filter(m => m.type === 'start').length === {starts + 1}"
                " && document.getElementById('status').textContent.startsWith('playing')"
            )
            wait_ticks(page, 2)
    finally:
        server.stop()


# Every change of the Pause button's label and of the fps figure, in order: [source, text].
WATCH_PAUSE_AND_FPS = """() => {
  window.changes = [];
  for (const [id, name] of [["pause", "button"], ["hud-fps", "fps"]]) {
    const el = document.getElementById(id);
    new MutationObserver(() => window.changes.push([name, el.textContent]))
      .observe(el, {childList: true, characterData: true, subtree: true});
  }
}"""


def test_pause_is_shown_and_the_fps_figure_restarts(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=dream&fps=2") as page:
        wait_playing(page)
        wait_ticks(page, 3)
        page.evaluate(WATCH_PAUSE_AND_FPS)
        width = page.locator("#pause").bounding_box()["width"]
        page.click("#pause")
        page.locator("#pause-overlay").wait_for(state="visible")
        assert page.inner_text("#pause-overlay") == "Paused" and page.inner_text("#pause") == "Resume"
        assert page.locator("#pause").bounding_box()["width"] == width  # no layout shift
        page.wait_for_timeout(2000)
        page.click("#pause")
        page.wait_for_function("document.getElementById('pause').textContent === 'Pause'")
        assert page.locator("#pause-overlay").is_hidden()
        wait_ticks(page, 3)
        changes = page.evaluate("window.changes")
        resumed = changes.index(["button", "Pause"], changes.index(["button", "Resume"]))
        after = [text for source, text in changes[resumed:] if source == "fps"]
        assert after[0] == "–", changes  # the first frame after the resume: not an average over the pause
        assert float(after[-1]) > 0, changes  # then measured from the ticks since


def test_keys_go_to_the_game_only_from_the_game(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=real&fps=10") as page:
        wait_playing(page)
        page.focus("#pause")  # reached with Tab: Space presses the button, not FIRE
        page.keyboard.press("Space")
        page.wait_for_function("document.getElementById('pause').textContent === 'Resume'")
        page.focus("#sampler")  # arrows move a focused select, not the paddle
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowUp")
        assert sent_inputs(page) == []
        page.keyboard.press("Escape")  # gives the keys back to the game
        assert page.evaluate("document.activeElement === document.body")
        tap_key(page, "ArrowRight")
        assert sent_inputs(page) == [RIGHT, 0]

        page.click("#steps")  # a slider used with the mouse gives the keys back at once
        steps = page.input_value("#steps")
        tap_key(page, "ArrowLeft")
        assert sent_inputs(page) == [RIGHT, 0, LEFT, 0] and page.input_value("#steps") == steps

        page.click("#fps")  # ...and so does a control the first game key finds focused
        page.evaluate("document.getElementById('fps').focus()")
        tap_key(page, "ArrowLeft")
        assert sent_inputs(page)[-2:] == [LEFT, 0]


def test_status_chart_text_and_favicon(browser: Browser, live_server: str) -> None:
    bad: list[str] = []
    for path in ("?mode=side&fps=15", "viewer"):
        with page_at(browser, live_server + path) as page:
            page.on("response", lambda r: r.status >= 400 and bad.append(f"{r.status} {r.url}"))
            page.reload()
            icon = page.evaluate("document.querySelector('link[rel=icon]').href")
            answer = page.request.get(icon)
            assert answer.ok and answer.headers["content-type"].startswith("image/svg+xml"), icon
            if path != "viewer":
                assert page.get_attribute("#status", "aria-live") == "polite"
                wait_playing(page)
                page.wait_for_function("document.getElementById('chart-caption').textContent.includes('dB')")
                caption = page.inner_text("#chart-caption")
                assert re.search(r"Latest PSNR \d+\.\d dB", caption), caption
                labels = page.get_attribute("#chart", "aria-labelledby").split()
                assert "chart-caption" in labels and page.get_attribute("#chart", "role") == "img"
            page.wait_for_timeout(500)
    assert not bad, bad


def in_view(page: Page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    view = page.viewport_size
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= view["width"] + 0.5
        and (box["y"] + box["height"] <= view["height"] + 0.5)
    )


def test_layout_fits_800x600(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=side&fps=4", 800, 600) as page:
        wait_playing(page)
        for sel in ("#dream", "#real", "#dream-score", "#real-score", "#status", "#pause"):
            assert in_view(page, sel), sel
        assert page.evaluate("document.documentElement.scrollWidth") <= 800
        assert page.locator("#touchpad").is_hidden()


@pytest.mark.parametrize("mode", ["side", "dream"])
def test_layout_and_touch_buttons_on_a_phone(browser: Browser, live_server: str, mode: str) -> None:
    with page_at(browser, live_server + f"?mode={mode}&fps=1", 390, 844, touch=True) as page:
        wait_playing(page)
        assert in_view(page, "#dream") and in_view(page, "#dream-score")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        if mode == "dream":  # the one screen takes the width
            assert page.locator("#dream").bounding_box()["width"] > 300
        pad = page.locator("#touchpad button")
        assert pad.all_inner_texts() == ["◀", "FIRE", "▶"]  # Breakout has no UP or DOWN
        assert all(in_view(page, f"#touchpad .pad-{b}") for b in ("left", "fire", "right"))
        page.tap("#touchpad .pad-right")  # a tap shorter than a tick
        wait_action(page, "RIGHT", timeout_ms=30_000)
        assert sent_inputs(page) == [RIGHT, 0]


def test_no_touch_buttons_on_a_desktop(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=side&fps=4", 1280, 800) as page:
        wait_playing(page)
        assert page.locator("#touchpad").is_hidden()
        for sel in ("#dream", "#real", "#hud-fps", "#chart"):
            assert in_view(page, sel), sel
