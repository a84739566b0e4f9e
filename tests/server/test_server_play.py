"""Playing through the websocket: modes, controls, batching, saving human play."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from server_helpers import make_client, recv, recv_all, start
from starlette.websockets import WebSocketDisconnect

from games.episode_store import EpisodeStore
from model.agent import ActorCritic, agent_preset
from server.dev_snapshot import make_agent_snapshot, make_snapshot
from server.protocol import CloseCode


def frames(ws, n: int) -> list[dict]:
    return [recv(ws, "frame") for _ in range(n)]


def test_side_by_side_same_start_and_inputs(client):
    with client.websocket_connect("/ws") as ws:
        ready = start(ws, mode="side", fps=30, seed=1)
        assert ready["settings"]["mode"] == "side" and ready["context_frames"] == 4
        first = recv(ws, "frame")
        assert first["header"]["frames"] == ["real", "dream"]
        # Both start from the same real frame.
        assert np.array_equal(first["frames"]["real"], first["frames"]["dream"])
        ws.send_json({"type": "input", "seq": 5, "action": 2})
        seen = frames(ws, 6)
        last = seen[-1]["header"]
        assert last["seq"] == 5 and last["action"] == 2
        assert last["real"] is not None and last["dream"] is not None
        assert 0.0 <= last["dream"]["end_prob"] <= 1.0
        assert seen[-1]["frames"]["dream"].shape == (64, 64, 3)
        ticks = [f["header"]["tick"] for f in seen]
        assert ticks == sorted(ticks) and ticks[-1] > ticks[0]


def test_pause_step_resync_reset_configure(client):
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="side", fps=30)
        recv(ws, "frame")
        ws.send_json({"type": "pause", "paused": True})
        assert recv(ws, "state")["settings"]["paused"] is True
        ws.send_json({"type": "ping", "t": 1})  # drain in-flight frames up to the pong
        recv(ws, "pong")
        ws.send_json({"type": "step"})
        tick = recv(ws, "frame")["header"]["tick"]
        ws.send_json({"type": "step"})
        assert recv(ws, "frame")["header"]["tick"] == tick + 1
        ws.send_json({"type": "resync"})
        got = recv_all(ws, "frame", "state")
        assert got["state"]["reason"] == "resync"
        synced = got["frame"]
        assert np.array_equal(synced["frames"]["real"], synced["frames"]["dream"])
        ws.send_json({"type": "configure", "steps": 2, "sampler": "heun", "fps": 20, "control": "expert"})
        s = recv(ws, "state")["settings"]
        assert (s["steps"], s["sampler"], s["fps"], s["control"]) == (2, "heun", 20, "expert")
        ws.send_json({"type": "step"})
        assert recv(ws, "frame")["header"]["frames"] == ["real", "dream"]
        ws.send_json({"type": "reset", "seed": 3})
        got = recv_all(ws, "frame", "state")
        assert got["state"]["reason"] == "reset" and got["frame"]["header"]["real"] is None


def test_modes(client):
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="dream", fps=30)
        assert recv(ws, "frame")["header"]["frames"] == ["dream"]
        ws.send_json({"type": "configure", "mode": "real"})
        assert recv(ws, "state")["settings"]["mode"] == "real"
        hdr = recv(ws, "frame")["header"]
        while hdr["mode"] != "real":
            hdr = recv(ws, "frame")["header"]
        assert hdr["frames"] == ["real"] and hdr["dream"] is None
        ws.send_json({"type": "configure", "control": "expert", "mode": "dream"})  # expert needs the emulator
        assert recv(ws, "error")["code"] == "bad_control"


def test_agent_control_random_in_dream(client):
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="dream", fps=30, control="random")
        actions = {f["header"]["action"] for f in frames(ws, 12)}
        assert len(actions) > 1


def test_save_real_play_as_episode(client, data_dir):
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="real", fps=30)
        ws.send_json({"type": "input", "seq": 1, "action": 1})
        frames(ws, 5)
        ws.send_json({"type": "save_episode"})
        saved = recv(ws, "saved")
    assert saved["length"] >= 4 + 3  # 4 ticks after the seed frame; the 3 seed steps are real play too
    store = EpisodeStore(data_dir / "Breakout")
    ep = store.load(saved["file"])
    assert ep.obs.shape[1:] == (64, 64, 3) and len(ep.obs) == len(ep.actions) + 1
    assert ep.meta["source"] == "browser" and ep.meta["policy"] == "human" and ep.meta["game"] == "Breakout"


def test_save_refused_in_dream_mode(client):
    with client.websocket_connect("/ws") as ws:
        start(ws, mode="dream")
        ws.send_json({"type": "save_episode"})
        assert recv(ws, "error")["code"] == "no_real_play"


class HeldModel:
    """The worker's world model (or its inference process), but its next dream call waits until the
    test lets it go: the worker is busy for as long as the test needs, as on a slow machine, and the
    sessions' next dreams queue."""

    def __init__(self, model) -> None:
        self.model = model
        self.holding = threading.Event()  # a dream call is being held
        self.go = threading.Event()
        self.held_batch = 0  # dreams in the held call

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def dream_step(self, obs_ctx, *args, **kwargs):
        if not self.holding.is_set():
            self.held_batch = obs_ctx.shape[0]
            self.holding.set()
            self.go.wait(HANG_GUARD_S)
        return self.model.dream_step(obs_ctx, *args, **kwargs)


HANG_GUARD_S = 120.0
"""How long a wait may take before the test calls it a hang (a slow machine only takes longer)."""


def wait_until(ok, what: str) -> None:
    """Poll until ok(); the deadline only tells a hang from a slow machine."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not ok():
        assert time.monotonic() < deadline, f"no {what} within {HANG_GUARD_S} s"
        time.sleep(0.01)


def test_worker_batches_sessions(snapshot_dir, data_dir):
    """Several dream sessions share the inference worker: the dreams that queue while it is busy go
    into one call. The test holds one call until every session has a dream in it or queued behind
    it, so what it asserts follows from message counts, whatever the machine's speed."""
    with make_client(snapshot_dir, data_dir) as client:
        worker = client.app.state.engine.games["Breakout"].worker

        def stats() -> dict:
            return client.get("/api/metrics").json()["workers"]["Breakout"]

        with (
            client.websocket_connect("/ws") as a,
            client.websocket_connect("/ws") as b,
            client.websocket_connect("/ws") as c,
        ):
            for ws in (a, b, c):
                start(ws, mode="dream", fps=30, steps=3)
                recv(ws, "frame")  # its dream is seeded (burnt in): from now on it only dreams
            held = worker.runner = HeldModel(worker.runner)
            try:
                assert held.holding.wait(HANG_GUARD_S), "no dream call"
                # Every session's dream is in the held call or queued (a worker that took dreams to run
                # them one by one would hide some: this wait then fails, as the batching assert would).
                wait_until(lambda: held.held_batch + stats()["pending"] >= 3, "queued dream of every session")
                before = stats()["batch_sizes"]  # the held call is not counted yet
                held.go.set()
                wait_until(lambda: sum(stats()["batch_sizes"].values()) >= sum(before.values()) + 2, "calls")
            finally:
                held.go.set()
            m = client.get("/api/metrics").json()
            assert m["sessions"]["active"] == 3
    sizes = {int(k): v - before.get(k, 0) for k, v in m["workers"]["Breakout"]["batch_sizes"].items()}
    assert any(k > 1 and v > 0 for k, v in sizes.items()), sizes


def test_session_cap(snapshot_dir, data_dir):
    with make_client(snapshot_dir, data_dir, max_sessions=1) as c:
        with c.websocket_connect("/ws") as first:
            assert recv(first)["type"] == "hello"
            with c.websocket_connect("/ws") as second:
                err = recv(second)
                assert err["type"] == "error" and err["code"] == "server_full" and err["fatal"]
                with pytest.raises(WebSocketDisconnect) as e:
                    recv(second)
                assert e.value.code == CloseCode.SERVER_FULL
            first.send_json({"type": "ping"})
            assert recv(first, "pong")["type"] == "pong"


def test_origin_allow_list(snapshot_dir, data_dir):
    with make_client(snapshot_dir, data_dir, allowed_origins=["http://good.example"]) as c:
        with pytest.raises(WebSocketDisconnect) as e:
            with c.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
                recv(ws)
        assert e.value.code == CloseCode.ORIGIN_REJECTED
        with c.websocket_connect("/ws", headers={"origin": "http://good.example"}) as ws:
            assert recv(ws)["type"] == "hello"
        with c.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:  # same origin
            assert recv(ws)["type"] == "hello"


def test_idle_timeout(snapshot_dir, data_dir):
    with make_client(snapshot_dir, data_dir, idle_timeout_s=0.5) as c:
        with c.websocket_connect("/ws") as ws:
            assert recv(ws)["type"] == "hello"
            assert recv(ws, "error")["code"] == "idle_timeout"
            with pytest.raises(WebSocketDisconnect) as e:
                recv(ws)
            assert e.value.code == CloseCode.IDLE


@pytest.fixture(scope="module")
def agent_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("agent-checkpoints")


@pytest.fixture(scope="module")
def agent_client(agent_folder, data_dir):
    """A tiny world model with a tiny agent beside it that prefers RIGHT (and sees its frames), and
    an agent for a game without a world model."""
    folder = agent_folder
    make_snapshot(folder, "Breakout", "tiny")
    torch.manual_seed(0)
    agent = ActorCritic(agent_preset("tiny", "Breakout", ["NOOP", "FIRE", "RIGHT", "LEFT"]))
    with torch.no_grad():
        agent.actor.weight.normal_(0, 0.5)
        agent.actor.bias.copy_(torch.tensor([0.0, 0.0, 3.0, 0.0]))
    agent.save_snapshot(folder / "Breakout-agent")
    make_agent_snapshot(folder, "Pong")
    with make_client(folder, data_dir) as c:
        yield c


def test_trained_agent_control_with_probs_and_value(agent_client, agent_folder):
    health = agent_client.get("/api/health").json()
    assert any("Pong-agent" in e and "no world model" in e for e in health["load_errors"])
    games = agent_client.get("/api/games").json()["games"]
    assert games[0]["agent"] == "Breakout-agent" and "agent" in games[0]["policies"]
    for mode in ("dream", "real"):
        with agent_client.websocket_connect("/ws") as ws:
            start(ws, mode=mode, fps=30, control="agent")
            heads = [f["header"] for f in frames(ws, 10)][1:]  # the reset frame has no action yet
        assert all(h["agent"] is not None for h in heads)
        probs = np.array([h["agent"]["probs"] for h in heads])
        assert probs.shape == (9, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
        assert (probs[:, 2] > 0.5).all() and np.ptp(probs[:, 2]) > 0  # the agent's head, reading frames
        assert sum(h["action"] == 2 for h in heads) >= 5
        assert all(np.isfinite(h["agent"]["value"]) for h in heads)
    with agent_client.websocket_connect("/ws") as ws:  # back to the keyboard: no agent info
        start(ws, mode="dream", fps=30, control="agent")
        ws.send_json({"type": "configure", "control": "human"})
        assert recv(ws, "state")["settings"]["control"] == "human"
        ws.send_json({"type": "input", "seq": 1, "action": 3})
        head = recv(ws, "frame")["header"]
        while head["seq"] != 1:
            head = recv(ws, "frame")["header"]
        assert head["agent"] is None and head["action"] == 3
    (agent_folder / "Breakout-agent.safetensors").unlink()  # gone after the server started
    with agent_client.websocket_connect("/ws") as ws:
        start(ws, mode="dream", fps=30)
        ws.send_json({"type": "configure", "control": "agent"})
        err = recv(ws, "error")
        assert err["code"] == "bad_control" and "Breakout-agent" in err["message"]
        ws.send_json({"type": "configure", "fps": 20})  # the session is alive and still human
        assert recv(ws, "state")["settings"]["control"] == "human"


def test_a_session_dreams_with_its_models_own_step_count(tmp_path):
    """A start without `steps` takes the model's own sampler's (3 for DIAMOND's, 1 for a distilled
    model: train.py --distill-from); a start or configure that names one overrides it."""
    from dataclasses import replace

    from model.world_model import WorldModel

    make_snapshot(tmp_path, "Breakout", "tiny")
    student = WorldModel.from_snapshot(make_snapshot(tmp_path, "Pong", "tiny"), freeze=False)
    student.cfg = replace(student.cfg, sampler=replace(student.cfg.sampler, num_steps=1))
    student.save_snapshot(tmp_path / "Pong")
    with make_client(tmp_path, tmp_path / "data") as c:
        for game, fields, steps in (("Breakout", {}, 3), ("Pong", {}, 1), ("Pong", {"steps": 2}, 2)):
            with c.websocket_connect("/ws") as ws:
                assert recv(ws)["type"] == "hello"
                ws.send_json({"type": "start", "game": game, "mode": "dream", **fields})
                assert recv(ws, "ready")["settings"]["steps"] == steps, (game, fields)
                recv(ws, "frame")
