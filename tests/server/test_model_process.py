"""The world model in its own process (server/model_process.py): the same dreams as in this
process, a clear error for a snapshot it cannot load, and a new process after one is killed."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from server_helpers import make_client

from model.world_model import DreamNoise, WorldModel, open_action_slot
from server.engine import rss_bytes
from server.model_process import InferenceProcessError, ModelProcess, ModelSpec, more_threads_pay


def _inputs(b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(b, 4, 3, 64, 64, generator=g) * 2 - 1  # (B, L, C, H, W) in [-1, 1]
    act = open_action_slot(torch.randint(0, 4, (b, 3), generator=g))
    act[:, -1] = torch.randint(0, 4, (b,), generator=g)
    noise = DreamNoise.draw(b, (3, 64, 64), g)
    return obs, act, noise


def test_process_dreams_what_the_model_dreams_here(snapshot_dir) -> None:
    """Same snapshot, same inputs, same noise, one thread each: the child's frames, rewards, end
    probabilities and LSTM state are this process's, and its burn-in too."""
    path = snapshot_dir / "Breakout"
    here = WorldModel.from_snapshot(path, precision="fp32")
    proc = ModelProcess(ModelSpec(str(path), precision="fp32", threads=1), name="test")
    try:
        obs, act, noise = _inputs()
        h_here, h_there = here.burn_in(obs, act[:, :-1]), proc.burn_in(obs, act[:, :-1])
        for a, b in zip(h_here, h_there):
            torch.testing.assert_close(b, a.float(), rtol=0, atol=1e-6)
        sampler = here.sampler_config(num_steps=3)
        want = here.dream_step(obs, act, h_here, sampler, noise=noise)
        got = proc.dream_step(obs, act, h_there, sampler, noise)
        torch.testing.assert_close(got.next_obs, want.next_obs.float(), rtol=0, atol=1e-5)
        torch.testing.assert_close(got.reward, want.reward.float())
        torch.testing.assert_close(got.end_prob, want.end_prob.float(), rtol=0, atol=1e-6)
        torch.testing.assert_close(got.hidden[0], want.hidden[0].float(), rtol=0, atol=1e-6)
        # and the noise matters: other noise, another frame
        other = proc.dream_step(obs, act, h_there, sampler, DreamNoise.draw(3, (3, 64, 64), torch.Generator()))
        assert not torch.equal(other.next_obs, got.next_obs)
    finally:
        proc.close()
    assert not proc.alive()


def test_a_snapshot_the_process_cannot_load_is_named(tmp_path) -> None:
    bad = tmp_path / "Broken"
    bad.with_suffix(".json").write_text("{not json")
    bad.with_suffix(".safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(InferenceProcessError, match="could not load .*Broken"):
        ModelProcess(ModelSpec(str(bad), threads=1), name="bad")


def test_a_killed_process_fails_one_call_and_the_next_starts_another(snapshot_dir) -> None:
    path = snapshot_dir / "Breakout"
    proc = ModelProcess(ModelSpec(str(path), precision="fp32", threads=1), name="test")
    try:
        obs, act, noise = _inputs(b=1)
        sampler = WorldModel.from_snapshot(path, freeze=False).sampler_config(num_steps=1)
        hidden = proc.burn_in(obs, act[:, :-1])
        first = proc.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(InferenceProcessError, match="died during a dream call"):
            proc.dream_step(obs, act, hidden, sampler, noise)
        out = proc.dream_step(obs, act, hidden, sampler, noise)  # a new process answers
        assert out.next_obs.shape == (1, 3, 64, 64)
        assert proc.pid != first and proc.restarts == 1 and proc.alive()
    finally:
        proc.close()


def test_the_server_dreams_in_its_own_process_on_the_cpu(snapshot_dir, data_dir) -> None:
    """`inference = auto` on the CPU: the worker's calls go to a child process, which the server
    stops with itself."""
    with make_client(snapshot_dir, data_dir) as client:
        worker = client.app.state.engine.games["Breakout"].worker
        proc = worker.runner
        assert isinstance(proc, ModelProcess) and proc.alive() and proc.pid != os.getpid()
        m = client.get("/api/metrics").json()
        where = m["workers"]["Breakout"]
        assert where["inference"] == "process" and where["threads"] == proc.threads
        # memory counts the model's process too (a torch process holds 100+ MB)
        assert rss_bytes(proc.pid) > 50e6 and m["rss_bytes"] >= rss_bytes() + rss_bytes(proc.pid) // 2
    assert not proc.alive()
    with make_client(snapshot_dir, data_dir, inference="thread") as client:
        worker = client.app.state.engine.games["Breakout"].worker
        assert worker.runner is worker.model
        assert client.get("/api/metrics").json()["workers"]["Breakout"]["inference"] == "thread"


def test_a_process_that_stops_answering_is_replaced(snapshot_dir) -> None:
    """A child that hangs (stopped here with SIGSTOP, so it never answers) fails the call after the
    call timeout, is killed, and the next call gets a new process."""
    path = snapshot_dir / "Breakout"
    proc = ModelProcess(ModelSpec(str(path), precision="fp32", threads=1), name="test", call_timeout_s=2.0)
    try:
        obs, act, _ = _inputs(b=1)
        first = proc.pid
        os.kill(first, signal.SIGSTOP)
        with pytest.raises(InferenceProcessError, match="did not answer a burn_in call"):
            proc.burn_in(obs, act[:, :-1])
        proc.call_timeout_s = 300.0
        assert proc.burn_in(obs, act[:, :-1]) is not None
        assert proc.pid != first and proc.restarts == 1
    finally:
        proc.close()


def test_two_threads_only_where_they_pay_at_every_batch_size() -> None:
    """The child's rule (seconds per U-Net call and frame by threads): the quiet AMX Xeon's figures
    take 2 threads; the same machine beside a training run (OpenMP barriers waiting for a parked
    thread) and a gain at one batch size only keep 1."""
    quiet = {1: {1: 0.050, 2: 0.042}, 8: {1: 0.0244, 2: 0.0156}}
    busy = {1: {1: 0.0225, 2: 1.65}, 8: {1: 0.0076, 2: 0.273}}
    assert more_threads_pay(quiet, 2) and not more_threads_pay(busy, 2)
    assert not more_threads_pay({1: {1: 0.050, 2: 0.030}, 8: {1: 0.020, 2: 0.0195}}, 2)
