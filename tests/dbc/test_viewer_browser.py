"""The viewer page in real headless Chromium: pick policies, start, frames and ticks arrive, tables drawn;
FetchPick with nothing trained (the scripted expert, the commands for the rest) and with its results."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from browser_helpers import CHROMIUM, CHROMIUM_ARGS

from server.app import create_app
from server.config import Settings
from server.viewer import ViewerSettings

SLOW = 300_000  # ms: generous, a shared 2-core machine; every wait is on a condition, never a sleep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(root: Path) -> Iterator[str]:
    app = create_app(Settings(checkpoint_dir=root / "none", data_dir=root / "data"), ViewerSettings(policy_dir=root))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SLOW / 1000
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=60)


@pytest.fixture(scope="module")
def server_url(maze_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Only the Maze trained (FetchPick: nothing)."""
    root = tmp_path_factory.mktemp("browser")
    shutil.copytree(maze_run / "maze", root / "maze")
    with serving(root) as url:
        yield url


@pytest.fixture(scope="module")
def fetch_url(fetch_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """FetchPick trained, evaluated and generalised through the real command lines (one episode each)."""
    from training.dbc import evaluate, generalise

    root = tmp_path_factory.mktemp("browser_fetch")
    out = root / "fetch"
    shutil.copytree(fetch_run / "fetch", out)
    pols = [str(out / n) for n in ("bc_s0", "dbc_s0", "diffusion_policy_s0")]
    quick = ["--episodes", "1", "--bootstrap", "100", "--baselines"]
    assert evaluate.main(["--task", "fetch", "--policies", *pols, *quick, "--out", str(out / "eval.json")]) == 0
    gen = ["--policies", *pols, "--noise-levels", "0,0.04", *quick, "--out", str(out / "generalisation.json")]
    assert generalise.main([*gen, "--plot", str(root / "generalisation.png")]) == 0
    with serving(root) as url:
        yield url


@contextmanager
def viewer_page(url: str):
    """The viewer in Chromium, connected; no page error may happen while it is open."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/viewer")
        page.wait_for_function("document.querySelector('#status').textContent === 'connected'", timeout=SLOW)
        yield page
        browser.close()
    assert not errors, errors


def options(page, sel: str) -> list[str]:
    return page.eval_on_selector_all(f"{sel} option", "(os) => os.map((o) => o.value)")


def run_and_stop(page, task: str) -> None:
    page.click("#start")
    page.wait_for_function("Number(document.body.dataset.frames || 0) >= 4", timeout=SLOW)
    assert f"running {task}" in page.inner_text("#status")
    frames = int(page.evaluate("document.body.dataset.frames"))
    page.click("#step")  # pauses, then one more tick
    page.wait_for_function(f"Number(document.body.dataset.frames) > {frames}", timeout=SLOW)
    assert page.inner_text("#pause") == "Resume"
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').textContent === 'stopped'", timeout=SLOW)


@pytest.mark.browser
def test_viewer_page_runs_two_policies(server_url: str, tmp_path: Path) -> None:
    with viewer_page(server_url) as page:
        page.wait_for_function("document.querySelector('#left').options.length >= 2", timeout=SLOW)
        assert page.input_value("#left") == "maze/bc_s0" and page.input_value("#right") == "maze/dbc_s0"
        assert "maze/expert" in options(page, "#left")
        page.wait_for_selector("#table tbody tr", timeout=SLOW)  # evaluation table from the JSON
        assert "DBC" in page.inner_text("#table")
        assert page.is_hidden("#generalisation")  # FetchPick's alone
        run_and_stop(page, "maze")
        assert "expert-likeness" in page.inner_text("#side-1 .likeness")
        assert "a = (" in page.inner_text("#side-0 .action")
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)


@pytest.mark.browser
def test_fetch_without_trained_policies(server_url: str) -> None:
    """FetchPick is offered with the scripted expert; the page names what is missing and the commands."""
    with viewer_page(server_url) as page:
        page.wait_for_selector("#task option[value=fetch]", state="attached", timeout=SLOW)
        assert page.inner_text("#task option[value=fetch]") == "FetchPick"
        page.select_option("#task", "fetch")
        assert options(page, "#left") == ["fetch/expert"] and options(page, "#right") == ["fetch/expert"]
        note = page.inner_text("#availability")
        assert "fetch/expert (scripted expert)" in note and "Not trained yet: BC, DBC, Diffusion Policy" in note
        assert "python -m training.dbc.train --task fetch --algo diffusion " in note
        assert "--task fetch --algo bc,dbc" in note and "--algo diffusion_policy" in note
        page.wait_for_function("document.querySelector('#results-note').textContent.includes('No evaluation')")
        results = page.inner_text("#results-note")
        assert "No evaluation results for FetchPick yet" in results
        assert "python -m training.dbc.evaluate --task fetch --episodes 500 --baselines" in results
        page.wait_for_function("document.querySelector('#gen-note').textContent.includes('training.dbc.generalise')")
        assert page.is_visible("#generalisation") and "No generalisation results" in page.inner_text("#gen-note")
        assert "top view" in page.inner_text("#view-caption")
        run_and_stop(page, "fetch")
        action = page.inner_text("#side-0 .action")
        assert action.count(",") >= 3 and "fingers" in action  # 4 numbers: x, y, z and the fingers
        assert "scripted expert" in page.inner_text("#side-0 .name")
        assert "cube to goal" in page.inner_text("#side-1 .stats")
        corner = "[...document.querySelector('#side-0 .screen').getContext('2d').getImageData(2, 2, 1, 1).data]"
        assert page.evaluate(corner)[:3] == [236, 232, 220]  # the drawn view, not a blank canvas


@pytest.mark.browser
def test_fetch_tables_and_trained_policies(fetch_url: str) -> None:
    with viewer_page(fetch_url) as page:
        page.wait_for_selector("#task option[value=fetch]", state="attached", timeout=SLOW)
        page.select_option("#task", "fetch")
        assert page.input_value("#left") == "fetch/bc_s0" and page.input_value("#right") == "fetch/dbc_s0"
        trained = {f"fetch/{n}" for n in ("bc_s0", "dbc_s0", "diffusion_policy_s0")}
        assert set(options(page, "#left")) == {*trained, "fetch/expert"}
        assert "Not trained yet" not in page.inner_text("#availability")
        page.wait_for_selector("#table tbody tr", timeout=SLOW)
        head = page.inner_text("#table thead")
        assert "success % (ours)" in head and "difference to BC, 95 % CI" in head
        rows = page.eval_on_selector_all("#table tbody tr", "(rs) => rs.map((r) => r.cells[0].textContent)")
        assert rows == ["BC", "DBC", "Diffusion Policy", "EXPERT (scripted expert)"]
        dbc = page.inner_text("#table tbody tr:nth-child(2)")
        assert "97.5 ± 1.9" in dbc and "[" in dbc  # the paper's figure and our CI
        assert "DBC ours" in page.get_attribute("#plot", "aria-label")
        page.wait_for_selector("#gen-table tbody tr", timeout=SLOW)
        head = page.eval_on_selector_all("#gen-table th", "(hs) => hs.map((h) => h.textContent)")
        assert head == ["method", "noise 0 m", "noise 0.04 m"]
        gen_rows = page.eval_on_selector_all("#gen-table tbody tr", "(rs) => rs.map((r) => r.cells[0].textContent)")
        assert gen_rows == ["BC", "DBC", "Diffusion Policy", "scripted expert"]
        run_and_stop(page, "fetch")
        assert "expert-likeness L_agent − L_expert" in page.inner_text("#side-1 .likeness")
        assert "DBC" in page.inner_text("#side-1 .name")
