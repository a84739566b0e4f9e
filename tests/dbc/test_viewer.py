"""The viewer in the app (create_app with the policies under test): REST routes and the websocket protocol.
Its origin check, session cap and rate limits: tests/server/test_viewer_checks.py.

Sessions here start paused and advance by `step` messages, so every test knows exactly which
messages come back, in which order: no test waits on the machine's speed."""

from __future__ import annotations

import io
import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from server.app import create_app
from server.config import Settings
from server.viewer import ViewerSettings


def tiny_world_model():
    from games.envs import action_meanings
    from model.world_model import WorldModel, preset_config

    torch.manual_seed(0)
    return WorldModel(preset_config("tiny", "Breakout", action_meanings("Breakout"))).configure(torch.device("cpu"))


def app_for(root: Path) -> TestClient:
    # No world models to serve; starts unlimited here (the start rate has its own test).
    settings = Settings(checkpoint_dir=root / "none", data_dir=root / "data", start_rate_per_s=1000)
    return TestClient(create_app(settings, ViewerSettings(policy_dir=root, world_model_factory=tiny_world_model)))


@pytest.fixture(scope="module")
def client(
    maze_run: Path, breakout_run: Path, fetch_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """Maze, Breakout and FetchPick policies; FetchPick's evaluation and generalisation JSONs from the
    real command lines (one episode each)."""
    from training.dbc import evaluate, generalise

    root = tmp_path_factory.mktemp("viewer")
    shutil.copytree(maze_run / "maze", root / "maze")
    shutil.copytree(breakout_run / "policies", root / "breakout")
    shutil.copytree(fetch_run / "fetch", root / "fetch")
    pols = [str(root / "fetch" / n) for n in ("bc_s0", "dbc_s0", "diffusion_policy_s0")]
    quick = ["--episodes", "1", "--bootstrap", "100", "--baselines"]
    out = root / "fetch"
    assert evaluate.main(["--task", "fetch", "--policies", *pols, *quick, "--out", str(out / "eval.json")]) == 0
    gen = ["--policies", *pols[:2], "--noise-levels", "0,0.02", *quick, "--out", str(out / "generalisation.json")]
    assert generalise.main([*gen, "--plot", str(root / "generalisation.png")]) == 0
    with app_for(root) as c:
        yield c


@pytest.fixture(scope="module")
def bare(maze_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    """Only the Maze trained: FetchPick has no policies, no phi and no results."""
    root = tmp_path_factory.mktemp("bare")
    shutil.copytree(maze_run / "maze", root / "maze")
    with app_for(root) as c:
        yield c, root


def frames_of(blob: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(blob):
        (n,) = struct.unpack(">I", blob[off : off + 4])
        out.append(blob[off + 4 : off + 4 + n])
        off += 4 + n
    return out


def start(ws, **msg) -> tuple[dict, list[bytes]]:
    ws.send_text(json.dumps({"type": "start", "seed": 0, "fps": 60, **msg}))
    started = json.loads(ws.receive_text())
    assert started["type"] == "started", started
    return started, frames_of(ws.receive_bytes())


def step(ws) -> tuple[dict, list[bytes]]:
    """One `step`: exactly one tick and its frames come back."""
    ws.send_text(json.dumps({"type": "step"}))
    tick = json.loads(ws.receive_text())
    assert tick["type"] == "tick", tick
    frames = frames_of(ws.receive_bytes())
    assert len(frames) == 2 and all(f[:8] == b"\x89PNG\r\n\x1a\n" for f in frames)
    return tick, frames


def stop(ws, ticks: int) -> None:
    """`stop` answers `stopped` with the number of ticks sent, and nothing follows it: the next
    message after a refused step is that step's error."""
    ws.send_text(json.dumps({"type": "stop"}))
    assert json.loads(ws.receive_text()) == {"type": "stopped", "ticks": ticks}
    ws.send_text(json.dumps({"type": "step"}))
    err = json.loads(ws.receive_text())
    assert err["type"] == "error" and "no running session" in err["message"], err


def test_rest_routes(client: TestClient) -> None:
    page = client.get("/viewer")
    assert page.status_code == 200 and "viewer.js" in page.text
    assert client.get("/viewer/static/viewer.js").status_code == 200
    assert client.get("/viewer/static/viewer.css").status_code == 200
    assert client.get("/viewer/static/secret.py").status_code == 404
    tasks = client.get("/api/viewer/tasks").json()["tasks"]
    assert list(tasks) == ["maze", "fetch", "breakout"]
    assert {p["name"] for p in tasks["maze"]["policies"]} == {"maze/bc_s0", "maze/dbc_s0", "maze/expert"}
    assert tasks["maze"]["diffusion"] == "maze/diffusion" and tasks["breakout"]["dream_available"]
    assert {p["name"] for p in tasks["breakout"]["policies"]} == {"breakout/bc_s0", "breakout/dbc_s0"}
    fetch = tasks["fetch"]
    names = {"fetch/bc_s0", "fetch/dbc_s0", "fetch/diffusion_policy_s0", "fetch/expert"}
    assert {p["name"] for p in fetch["policies"]} == names and fetch["title"] == "FetchPick"
    assert fetch["diffusion"] == "fetch/diffusion" and fetch["missing"] == [] and fetch["modes"] == ["real"]
    assert fetch["has_results"] and fetch["has_generalisation"]
    res = client.get("/api/viewer/results/maze")
    assert res.status_code == 200 and set(res.json()["summary"]) == {"bc", "dbc"}
    assert client.get("/api/viewer/plot/maze.png").content[:4] == b"\x89PNG"
    res = client.get("/api/viewer/results/fetch").json()
    assert set(res["summary"]) == {"bc", "dbc", "diffusion_policy", "expert"} and res["paper"]["DBC"]["mean"] == 97.5
    assert {(c["a"], c["b"]) for c in res["comparisons"]} >= {("dbc", "bc"), ("diffusion_policy", "bc")}
    gen = client.get("/api/viewer/generalisation/fetch").json()
    assert gen["noise_levels"] == [0.0, 0.02] and set(gen["levels"][1]["summary"]) == {"bc", "dbc", "expert"}
    assert client.get("/api/viewer/generalisation/maze").status_code == 404
    assert client.get("/api/viewer/results/breakout").status_code == 404
    assert client.get("/api/viewer/results/pong").status_code == 404


def test_maze_session_side_by_side(client: TestClient) -> None:
    with client.websocket_connect("/ws/viewer") as ws:
        started, first = start(ws, task="maze", left="maze/bc_s0", right="maze/dbc_s0", seed=3, paused=True)
        assert [s["algo"] for s in started["sides"]] == ["bc", "dbc"] and started["paused"]
        assert len(first) == 2 and first[0] == first[1]  # same seed -> same start
        for k in range(1, 4):
            tick, _ = step(ws)
            assert tick["step"] == k and tick["seed"] == 3
            for side in tick["sides"]:
                assert len(side["action"]) == 2 and isinstance(side["expert_likeness"], float)
                assert "success_rate" in side["stats"]
        stop(ws, ticks=3)


def test_a_running_session_stops_with_every_tick_whole(client: TestClient) -> None:
    """Ticking by itself (1 fps), then a step pauses it: each tick's JSON is followed by its frames,
    the steps count up without a gap, and `stopped` counts them all."""
    with client.websocket_connect("/ws/viewer") as ws:
        start(ws, task="maze", left="maze/expert", right="maze/bc_s0", fps=1)
        first = json.loads(ws.receive_text())  # the runner's first tick comes at once
        assert first["type"] == "tick" and first["step"] == 1
        assert len(frames_of(ws.receive_bytes())) == 2
        ws.send_text(json.dumps({"type": "step"}))
        ws.send_text(json.dumps({"type": "stop"}))
        last = 1
        # After the step no tick starts: at most the one the runner began (once a second) before it,
        # then the step's. The bound only stops a broken server from looping this test forever.
        for _ in range(120):
            msg = json.loads(ws.receive_text())
            if msg["type"] == "stopped":
                break
            assert msg["type"] == "tick" and msg["step"] == last + 1, msg
            assert len(frames_of(ws.receive_bytes())) == 2
            last = msg["step"]
        else:
            raise AssertionError("no 'stopped' after 120 ticks: step did not pause the session or stop did not end it")
        assert msg == {"type": "stopped", "ticks": last} and last >= 2  # the step's tick came


def test_fetch_without_trained_policies(bare: tuple[TestClient, Path]) -> None:
    """Nothing trained for FetchPick: the scripted expert can be watched, the missing policies are
    named with the commands that train them, and the missing results with the one that makes them."""
    client, root = bare
    fetch = client.get("/api/viewer/tasks").json()["tasks"]["fetch"]
    assert [p["name"] for p in fetch["policies"]] == ["fetch/expert"] and fetch["diffusion"] is None
    assert fetch["missing"] == ["bc", "dbc", "diffusion_policy"] and not fetch["has_results"]
    out = (root / "fetch").as_posix()
    train = fetch["commands"]["train"]
    assert train[0].startswith("python -m training.dbc.train --task fetch --algo diffusion ")
    assert all(c.endswith(f"--out {out}") for c in train) and "--algo bc,dbc " in train[1]
    assert f"--out {out}/eval.json" in fetch["commands"]["evaluate"][0]
    assert f"--out {out}/generalisation.json" in fetch["commands"]["generalise"][0]
    for route in ("results", "generalisation"):
        assert client.get(f"/api/viewer/{route}/fetch").status_code == 404
    with client.websocket_connect("/ws/viewer") as ws:
        started, first = start(ws, task="fetch", left="fetch/expert", right="fetch/expert", seed=2, paused=True)
        assert [s["algo"] for s in started["sides"]] == ["expert", "expert"] and not started["likeness"]
        top = Image.open(io.BytesIO(first[0]))
        assert top.size == (256, 256) and top.getpixel((2, 2)) == (236, 232, 220)  # drawn, not a blank
        frames = first
        for k in range(1, 51):  # one whole episode: 50 steps
            tick, frames = step(ws)
            for side in tick["sides"]:
                assert len(side["action"]) == 4 and max(abs(v) for v in side["action"]) <= 1
                assert side["expert_likeness"] is None and side["t"] == k and side["done"] == (k == 50)
            assert tick["sides"][0] == tick["sides"][1] and frames[0] == frames[1]  # same expert, same seed
        assert frames[0] != first[0]  # the gripper and the cube moved
        for side in tick["sides"]:
            assert side["stats"]["episodes"] == 1 and side["stats"]["successes"] == 1  # the expert places it
            assert side["cube_to_goal"] < 0.05
        stop(ws, ticks=50)


def test_fetch_with_trained_policies(client: TestClient, fetch_run: Path) -> None:
    """BC beside the Diffusion Policy; the Diffusion Policy draws its reverse-chain noise from the
    episode seed, as training/dbc/evaluate.py does, so a session replays the same actions."""
    from games.fetch import FetchTask
    from model.dbc.diffusion_policy import load_diffusion_policy

    def session() -> list[dict]:
        with client.websocket_connect("/ws/viewer") as ws:
            start(ws, task="fetch", left="fetch/bc_s0", right="fetch/diffusion_policy_s0", seed=5, paused=True)
            ticks = [step(ws)[0] for _ in range(3)]
            stop(ws, ticks=3)
        return ticks

    ticks = session()
    for tick in ticks:
        for side in tick["sides"]:
            assert len(side["action"]) == 4 and max(abs(v) for v in side["action"]) <= 1
            assert isinstance(side["expert_likeness"], float) and isinstance(side["cube_to_goal"], float)
    assert [t["sides"] for t in session()] == [t["sides"] for t in ticks]
    dp, _ = load_diffusion_policy(fetch_run / "fetch" / "diffusion_policy_s0", task="fetch")
    task = FetchTask()
    obs = torch.from_numpy(task.reset(5)).float()[None]
    task.close()
    noise = torch.randn((1, dp.cfg.num_steps, dp.cfg.action_dim), generator=torch.Generator().manual_seed(5))
    expected = dp.sample(obs, noise)[0].numpy()
    assert np.allclose(ticks[0]["sides"][1]["action"], expected, atol=1e-3)


def test_bad_requests_get_one_error_message(client: TestClient) -> None:
    with client.websocket_connect("/ws/viewer") as ws:
        for msg, expected in [
            ({"type": "step"}, "no running session"),
            ({"type": "start", "task": "maze", "left": "maze/nope", "right": "maze/bc_s0"}, "unknown policy"),
            ({"type": "start", "task": "pong", "left": "a", "right": "b"}, "unknown task"),
            (
                {"type": "start", "task": "maze", "left": "maze/bc_s0", "right": "maze/bc_s0", "mode": "dream"},
                "no dream mode",
            ),
            (
                {"type": "start", "task": "fetch", "left": "fetch/expert", "right": "fetch/bc_s0", "mode": "dream"},
                "no dream mode",
            ),
            ({"type": "start", "task": "maze", "left": "breakout/bc_s0", "right": "maze/bc_s0"}, "unknown policy"),
            ({"type": "start", "task": "fetch", "left": "maze/bc_s0", "right": "fetch/bc_s0"}, "unknown policy"),
            ({"type": "start", "task": "breakout", "left": "breakout/expert", "right": "breakout/bc_s0"}, "unknown"),
            ({"type": "warp"}, "unknown message type"),
            ({"type": "start", "task": "maze"}, "bad message"),
        ]:
            ws.send_text(json.dumps(msg))
            reply = json.loads(ws.receive_text())
            assert reply["type"] == "error" and expected in reply["message"], (msg, reply)


@pytest.mark.parametrize("mode", ["real", "dream"])
def test_breakout_real_and_dream(client: TestClient, mode: str) -> None:
    with client.websocket_connect("/ws/viewer") as ws:
        start(ws, task="breakout", left="breakout/bc_s0", right="breakout/dbc_s0", mode=mode, paused=True)
        tick, frames = step(ws)
        for side in tick["sides"]:
            assert len(side["probs"]) == 4 and side["action_name"] in ("NOOP", "FIRE", "RIGHT", "LEFT")
            assert isinstance(side["expert_likeness"], float)
            assert side["reference_action"] in ("NOOP", "FIRE", "RIGHT", "LEFT")
        stop(ws, ticks=1)
