"""The page a player would want, in headless Chromium: the serve prompt, taps shorter than a tick,
score and lives beside each screen, controls that show what the server accepted, reconnecting,
the pause state, where keys go, accessibility basics, a layout that fits a small window and
a phone, a divergence chart that keeps its history, help, the link to the policy viewer (and its
look), a recording players can seek in, and saved episodes to download."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
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


# A gamepad as the Gamepad API shows it; headless Chromium has none, so the page's
# navigator.getGamepads returns this one (window.pad), and the test presses its buttons.
FAKE_PAD = """() => {
  const button = () => ({ pressed: false, value: 0 });
  window.pad = { connected: true, mapping: "standard", index: 0, id: "test pad",
                 buttons: Array.from({ length: 17 }, button), axes: [0, 0, 0, 0] };
  navigator.getGamepads = () => [window.pad];
  window.dispatchEvent(new Event("gamepadconnected"));
}"""


def test_a_gamepad_plays(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=side&fps=4") as page:
        wait_playing(page)
        page.evaluate(FAKE_PAD)
        page.evaluate("window.pad.buttons[0].pressed = true")  # A: serve
        page.wait_for_function(f"window.sent.some(m => m.type === 'input' && m.action === {FIRE})")
        page.evaluate("window.pad.buttons[0].pressed = false")
        page.wait_for_function("window.sent.filter(m => m.type === 'input').at(-1).action === 0")
        page.evaluate("window.pad.axes[0] = 0.9")  # the stick to the right
        page.wait_for_function(f"window.sent.filter(m => m.type === 'input').at(-1).action === {RIGHT}")
        page.evaluate("window.pad.axes[0] = 0.2")  # inside the dead zone: released
        page.wait_for_function("window.sent.filter(m => m.type === 'input').at(-1).action === 0")
        page.evaluate("window.pad.buttons[14].pressed = true")  # d-pad left
        page.wait_for_function(f"window.sent.filter(m => m.type === 'input').at(-1).action === {LEFT}")
        assert sent_inputs(page) == [FIRE, 0, RIGHT, 0, LEFT]
        wait_action(page, "LEFT", timeout_ms=60_000)  # the server played it


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
            # the status as it was when it said so (the countdown moves on while a slow machine reads it)
            status = page.wait_for_function(
                "() => { const t = document.getElementById('status').textContent;"
                " return t.includes('reconnecting in') && t; }"
            ).json_value()
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
            for url in (icon, live_server + "favicon.ico"):  # what browsers ask for without a link
                answer = page.request.get(url)
                assert answer.ok and answer.headers["content-type"].startswith("image/svg+xml"), url
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


VALUES = "window.arcade.chart.points.filter((p) => !p.mark).map((p) => p.v)"
MARKS = "window.arcade.chart.points.filter((p) => p.mark).map((p) => p.mark)"

# The colour of the pixels down the column of the first marker of a kind, read in the same task
# as the chart's geometry (so no redraw comes between).
MARKER_COLUMN = """(kind) => {
  const chart = window.arcade.chart;
  const x = Math.round(chart.x(chart.points.findIndex((p) => p.mark === kind)));
  const d = chart.ctx.getImageData(x, 0, 1, chart.canvas.height - 40).data;
  const column = [];
  for (let i = 0; i < d.length; i += 4) column.push([d[i], d[i + 1], d[i + 2]]);
  return column;
}"""


def more_points(page: Page, n: int) -> None:
    """Until the chart has n more PSNR points than now."""
    have = page.evaluate(f"{VALUES}.length")
    page.wait_for_function(f"{VALUES}.length >= {have + n}", timeout=120_000)


def test_the_chart_keeps_its_history_with_markers(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=side&fps=10") as page:
        wait_playing(page)
        more_points(page, 4)
        page.click("#resync")
        page.wait_for_function(f"{MARKS}.includes('resync')", timeout=60_000)
        before = page.evaluate(f"{VALUES}.slice(0, window.arcade.chart.points.findIndex((p) => p.mark))")
        more_points(page, 2)
        page.select_option("#sampler", "heun")
        page.wait_for_function(f"{MARKS}.includes('settings')", timeout=60_000)
        more_points(page, 2)
        page.click("#reset")
        page.wait_for_function(f"{MARKS}.includes('reset')", timeout=60_000)
        more_points(page, 2)

        points = page.evaluate("window.arcade.chart.points")
        values = [p["v"] for p in points if "mark" not in p]
        assert len(before) >= 4 and values[: len(before)] == before  # nothing forgotten
        marks = [(p["mark"], p["label"]) for p in points if "mark" in p]
        assert marks == [("resync", "resync"), ("settings", "Heun"), ("reset", "reset")], marks
        # ...and every stretch between the markers has its points
        stretches = "".join("|" if "mark" in p else "." for p in points).split("|")
        assert [len(s) > 0 for s in stretches] == [True] * 4, stretches
        # the resync line is drawn down its column (its label at the bottom)
        column = page.evaluate(MARKER_COLUMN, "resync")
        green = sum(rgb == [0x77, 0xDD, 0x77] for rgb in column)
        assert green >= 0.8 * len(column), column


def test_help_says_what_the_modes_psnr_and_resync_mean(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=side&fps=4") as page:
        wait_playing(page)
        mode_help = {v: page.get_attribute(f"#mode option[value={v}]", "title") for v in ("side", "dream", "real")}
        assert "same" in mode_help["side"] and "dream" in mode_help["side"], mode_help
        assert "world model" in mode_help["dream"] and "emulator" in mode_help["real"], mode_help
        assert page.get_attribute("#mode", "title") == mode_help["side"]
        assert "last four real frames" in page.get_attribute("#resync", "title")
        assert "signal-to-noise" in page.get_attribute("#chart-title", "title")
        assert "emulator" in page.get_attribute("#reset", "title")

        panel = page.locator("#help dl")
        assert panel.is_hidden()
        page.click("#help summary")
        panel.wait_for(state="visible")
        assert in_view(page, "#help dl")
        terms = page.locator("#help dt").all_inner_texts()
        assert {"Side by side", "Dream", "PSNR", "Resync"} <= set(terms), terms
        assert all(len(text) > 60 for text in page.locator("#help dd").all_inner_texts())
        tap_key(page, "ArrowRight")  # the help clicked open does not keep the keys
        assert sent_inputs(page) == [RIGHT, 0]
        page.click("#help summary")
        panel.wait_for(state="hidden")


def test_links_between_the_arcade_and_the_viewer(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=real&fps=4") as page:
        wait_playing(page)
        assert in_view(page, "#viewer-link")
        page.click("#viewer-link")
        page.wait_for_url(live_server + "viewer")
        assert page.inner_text("h1") == "DBC policy viewer"
        assert in_view(page, "#arcade-link")
        page.click("#arcade-link")
        page.wait_for_url(live_server)
        wait_playing(page)


COLOURS = """() => [document.body, document.querySelector('header')].map((el) => {
  const style = getComputedStyle(el);
  return [style.backgroundColor, style.color];
})"""
PIXEL = "([x, y]) => [...document.getElementById('plot').getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)]"


def test_the_viewer_looks_like_the_arcade_names_whole_and_a_log_plot(browser: Browser, live_server: str) -> None:
    with page_at(browser, live_server + "?mode=real&fps=4") as page:
        arcade = page.evaluate(COLOURS)
    with page_at(browser, live_server + "viewer", 1280, 900) as page:
        assert page.evaluate(COLOURS) == arcade  # the arcade's dark theme
        page.wait_for_selector("#task option[value=breakout]", state="attached", timeout=120_000)
        page.select_option("#task", "breakout")
        page.wait_for_function("(document.getElementById('plot').dataset.bars || '').includes('EXPERT')")
        label = page.get_attribute("#plot", "aria-label")
        assert "log scale" in label and "EXPERT ours 97.2" in label, label
        bars = {b["label"]: b for b in json.loads(page.get_attribute("#plot", "data-bars"))}
        expert = bars["EXPERT ours"]["bottom"] - bars["EXPERT ours"]["top"]
        for name, colour in (("BC ours", [0x7F, 0x8F, 0xA6]), ("DBC ours", [0xE1, 0x81, 0x2C])):
            b = bars[name]
            assert b["bottom"] - b["top"] >= 0.2 * expert, bars  # a return of 3 beside the expert's 97
            assert page.evaluate(PIXEL, [b["x"] + 3, (b["top"] + b["bottom"]) // 2]) == colour, name
        assert sum(page.evaluate(PIXEL, [2, 2])) < 60  # a dark plot

        page.wait_for_function("document.getElementById('status').textContent === 'connected'", timeout=120_000)
        page.click("#start")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('running')", timeout=300_000)
        for side in ("#side-0", "#side-1"):
            name = page.locator(f"{side} .name")
            assert "seed 0)" in name.inner_text()
            whole = name.evaluate("(el) => el.scrollWidth <= el.clientWidth && el.scrollHeight <= el.clientHeight")
            box, panel = name.bounding_box(), page.locator(side).bounding_box()
            assert whole and box["x"] + box["width"] <= panel["x"] + panel["width"], side
        assert page.evaluate("getComputedStyle(document.querySelector('.side')).backgroundColor") == "rgb(27, 30, 38)"
        page.click("#stop")
        page.wait_for_function("document.getElementById('status').textContent === 'stopped'", timeout=120_000)


def _vint(data: bytes, pos: int, marker: bool = False) -> tuple[int | None, int]:
    """An EBML variable-length number at pos: (value, next pos); None for an unknown size."""
    length = 1
    while not data[pos] & (0x80 >> (length - 1)):
        length += 1
    value = data[pos] if marker else data[pos] & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = value << 8 | b
    return (None if not marker and value == 2 ** (7 * length) - 1 else value), pos + length


def webm_duration_s(data: bytes) -> float:
    """The Duration in a WebM's Segment Info, in seconds; inf when it has none (a live recording)."""
    _, pos = _vint(data, 0, True)  # the EBML header
    size, pos = _vint(data, pos)
    segment, pos = _vint(data, pos + size, True)
    assert segment == 0x18538067
    _, pos = _vint(data, pos)  # the Segment's size, unknown in a live recording
    while True:
        eid, pos = _vint(data, pos, True)
        size, pos = _vint(data, pos)
        if eid == 0x1549A966:  # Info
            break
        assert size is not None, "an element of unknown size before Info"
        pos += size
    scale, duration, end = 1_000_000, math.inf, pos + size
    while pos < end:
        eid, pos = _vint(data, pos, True)
        size, pos = _vint(data, pos)
        if eid == 0x2AD7B1:  # TimestampScale, ns per tick
            scale = int.from_bytes(data[pos : pos + size], "big")
        if eid == 0x4489:  # Duration, a float in ticks
            duration = struct.unpack(">d" if size == 8 else ">f", data[pos : pos + size])[0]
        pos += size
    return duration * scale / 1e9


LOAD_VIDEO = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "metadata";
  video.src = URL.createObjectURL(new Blob([bytes], { type: "video/webm" }));
  await new Promise((loaded, failed) => {
    video.onloadedmetadata = loaded;
    video.onerror = () => failed(new Error(`video error ${video.error && video.error.code}`));
  });
  return { duration: video.duration, seekable: video.seekable.length ? video.seekable.end(0) : null };
}"""


def test_the_recording_has_a_duration(browser: Browser, live_server: str, tmp_path: Path) -> None:
    with page_at(browser, live_server + "?mode=side&fps=10") as page:
        wait_playing(page)
        page.click("#record")
        wait_ticks(page, 8)
        webm = {"predicate": lambda d: d.suggested_filename.endswith(".webm"), "timeout": 120_000}
        with page.expect_event("download", **webm) as info:
            page.click("#record")  # stop: the webm and the actions JSON
        data = Path(info.value.path()).read_bytes()
        duration = webm_duration_s(data)
        assert 0 < duration < 3600, duration  # finite: a player can show it and seek
        shown = page.evaluate(LOAD_VIDEO, base64.b64encode(data).decode())
        assert math.isfinite(shown["duration"]) and abs(shown["duration"] - duration) < 0.1, (shown, duration)
        assert shown["seekable"] is not None and math.isfinite(shown["seekable"]), shown


def test_save_episode_once_and_offer_it_to_download(browser: Browser, live_server: str, web_settings) -> None:
    folder = web_settings.data_dir / "Breakout"
    before = set(folder.glob("ep_*.npz"))
    with page_at(browser, live_server + "?mode=real&fps=10") as page:
        wait_playing(page)
        wait_ticks(page, 3)
        page.click("#pause")  # nothing more is played: every save is of the same episode
        page.wait_for_function("document.getElementById('pause').textContent === 'Resume'")
        page.dblclick("#save")
        link = page.locator("#episode-link")
        link.wait_for(state="visible", timeout=60_000)
        assert [m["type"] for m in page.evaluate("window.sent")].count("save_episode") == 1
        assert str(web_settings.data_dir) not in page.inner_text("#status")  # no server path
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert re.fullmatch(r"Breakout-ep_\d{6}\.npz", download.suggested_filename), download.suggested_filename
        with np.load(download.path(), allow_pickle=False) as z:
            obs, actions = z["obs"], z["actions"]
            meta = json.loads(z["meta"].tobytes())
        assert obs.shape[1:] == (64, 64, 3) and len(obs) == len(actions) + 1 and len(actions) >= 3
        assert meta["game"] == "Breakout" and meta["source"] == "browser"

        href = link.get_attribute("href")
        page.click("#save")  # nothing played since: the server answers with the same file
        page.wait_for_function("!document.getElementById('save').disabled", timeout=60_000)
        assert link.get_attribute("href") == href
        assert [m["type"] for m in page.evaluate("window.sent")].count("save_episode") == 2
    assert len(set(folder.glob("ep_*.npz")) - before) == 1
