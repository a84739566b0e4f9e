"""The actor-critic: built from presets, saved, loaded, giving identical actions; imagination shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from games.episode_store import Episode
from model.agent import ActorCritic, ActorCriticConfig, AgentPolicy, agent_preset
from model.agent.actor_critic import ActorCriticLossConfig
from model.checkpoint import CheckpointError
from model.world_model import WorldModel, preset_config
from model.world_model.sampler import SamplerConfig
from server.controls import Observation, TrainedAgent, load_agent
from training.agent.loop import agent_update, imagine, replay
from training.world_model.data import WindowSampler

NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]


def frames(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=g)


def test_presets_and_validation() -> None:
    assert agent_preset("paper", "Breakout", NAMES).lstm_dim == 512
    assert agent_preset("cpu", "Breakout", NAMES).lstm_dim < 512
    with pytest.raises(ValueError, match="unknown agent preset"):
        agent_preset("huge", "Breakout", NAMES)
    with pytest.raises(ValueError):
        ActorCriticConfig(num_actions=3)  # 4 default action meanings
    with pytest.raises(ValueError):
        ActorCriticConfig(lstm_dim=0)


@pytest.mark.parametrize("frame_diff", [False, True])
def test_save_load_identical_actions(tmp_path: Path, frame_diff: bool) -> None:
    torch.manual_seed(0)
    model = ActorCritic(
        ActorCriticConfig(**{**agent_preset("tiny", "Breakout", NAMES).to_dict(), "frame_diff": frame_diff})
    )
    torch.nn.init.normal_(model.actor.weight, std=0.5)  # not the uniform initial policy
    model.save_snapshot(tmp_path / "agent", {"epoch": 3})
    loaded = ActorCritic.from_snapshot(tmp_path / "agent")
    assert loaded.meta["epoch"] == 3 and loaded.cfg == model.cfg
    obs = frames(12)
    for greedy in (False, True):
        p1, p2 = AgentPolicy(model, greedy=greedy, seed=5), AgentPolicy(loaded, greedy=greedy, seed=5)
        out1 = [p1.act(obs[:4])] + [p1.act(obs[i - 3 : i + 1]) for i in range(4, 12)]
        out2 = [p2.act(obs[:4])] + [p2.act(obs[i - 3 : i + 1]) for i in range(4, 12)]
        assert out1 == out2
        action, probs, value = out1[0]
        assert 0 <= action < 4 and len(probs) == 4 and sum(probs) == pytest.approx(1, abs=1e-5)
        assert isinstance(value, float)
    # reset() forgets the episode: the same frames give the same answers again.
    p = AgentPolicy(loaded, greedy=True, seed=1)
    first = p.act(obs[:4])
    p.act(obs[4])
    p.reset()
    assert p.act(obs[:4]) == first


def test_frame_difference_input() -> None:
    """With frame_diff the agent reads x_t - x_{t-1}: the same frame after different predecessors
    gives different outputs; the first frame after a reset has difference 0. Older configs (no
    field) build the plain agent."""
    torch.manual_seed(0)
    cfg = ActorCriticConfig(**{**agent_preset("tiny", "Breakout", NAMES).to_dict(), "frame_diff": True})
    model = ActorCritic(cfg)
    assert model.encoder[0].in_channels == 6
    x = frames(3).movedim(-1, -3).float()[:, None] / 127.5 - 1  # (3, 1, C, H, W)
    h, c = model.initial_state(1)
    _, v_a, _ = model(x[2], (h, c, x[0]))  # the same LSTM state, different previous frames
    _, v_b, _ = model(x[2], (h, c, x[1]))
    _, v_same, _ = model(x[2], (h, c, x[2]))
    assert not torch.allclose(v_a, v_b)
    assert torch.allclose(v_same, model(x[2])[1])  # no predecessor = a still frame
    _, _, state = model(x[2])
    assert len(state) == 3 and torch.equal(state[2], x[2])
    old = {k: v for k, v in agent_preset("tiny", "Breakout", NAMES).to_dict().items() if k != "frame_diff"}
    assert ActorCritic(ActorCriticConfig(**old)).encoder[0].in_channels == 3


def test_policy_rejects_bad_frames() -> None:
    p = AgentPolicy(ActorCritic(agent_preset("tiny", "Breakout", NAMES)))
    with pytest.raises(ValueError, match="uint8"):
        p.act(torch.zeros(64, 64, 3))
    with pytest.raises(ValueError, match="uint8"):
        p.act(torch.zeros(32, 32, 3, dtype=torch.uint8))


def test_bad_snapshot_paths(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        ActorCritic.from_snapshot(tmp_path / "nope")
    wm = WorldModel(preset_config("tiny", "Breakout", NAMES))
    wm.save_snapshot(tmp_path / "wm")
    with pytest.raises(CheckpointError, match="not an agent snapshot"):
        ActorCritic.from_snapshot(tmp_path / "wm")


def test_imagination_and_one_update() -> None:
    torch.manual_seed(0)
    wm = WorldModel(preset_config("tiny", "Breakout", NAMES)).configure(torch.device("cpu"), "fp32")
    agent = ActorCritic(agent_preset("tiny", "Breakout", NAMES))
    obs = torch.rand(3, 4, 3, 64, 64) * 2 - 1
    roll = imagine(wm, agent, obs, torch.randint(0, 4, (3, 3)), 4, SamplerConfig(num_steps=1))
    assert roll.logits.shape == (3, 4, 4) and roll.values.shape == (3, 5)
    assert roll.rewards.shape == roll.ends.shape == roll.actions.shape == (3, 4)
    assert roll.frames.shape == (3, 3 + 5, 3, 64, 64)
    assert not roll.logits.requires_grad  # the update replays the agent over roll.frames
    logits, values = replay(agent, roll.frames, 4)
    assert logits.requires_grad and values.requires_grad
    torch.testing.assert_close(logits, roll.logits)
    torch.testing.assert_close(values, roll.values)

    ep = Episode(
        frames(21).numpy(),
        torch.randint(0, 4, (20,)).numpy(),
        torch.zeros(20).numpy(),
        torch.zeros(20, dtype=torch.bool).numpy(),
        torch.zeros(20, dtype=torch.bool).numpy(),
    )
    opt = torch.optim.AdamW(agent.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in agent.parameters()]
    m = agent_update(
        wm, agent, opt, WindowSampler([ep]), 2, ActorCriticLossConfig(horizon=3), SamplerConfig(num_steps=1), 100.0
    )
    assert {"loss", "loss_policy", "loss_value", "entropy", "return", "clip_frac"} <= set(m)
    assert any((a != b).any() for a, b in zip(agent.parameters(), before, strict=True))
    m = agent_update(
        wm,
        agent,
        opt,
        WindowSampler([ep]),
        2,
        ActorCriticLossConfig(horizon=3),
        SamplerConfig(num_steps=1),
        100.0,
        passes=3,
    )
    assert 0 <= m["clip_frac"] <= 1


def test_server_agent_adapter(tmp_path: Path) -> None:
    ActorCritic(agent_preset("tiny", "Breakout", NAMES)).save_snapshot(tmp_path / "Breakout-agent")
    p = TrainedAgent(load_agent(str(tmp_path / "Breakout-agent"), "Breakout", NAMES))
    p.reset()
    assert p.insight() is None
    assert 0 <= p.act(Observation(frames(4).numpy(), None, NAMES)) < 4
    probs, value = p.insight()
    assert len(probs) == 4 and abs(sum(probs) - 1) < 1e-5 and isinstance(value, float)
    with pytest.raises(ValueError, match="not Pong"):
        load_agent(str(tmp_path / "Breakout-agent"), "Pong", ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"])
    with pytest.raises(CheckpointError, match="missing"):
        load_agent(str(tmp_path / "Pong-agent"), "Pong", NAMES)
