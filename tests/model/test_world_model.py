"""Shapes through the U-Net, denoiser, reward/end model, WorldModel.dream_step and Dreams, at batch 1
and 3; Dreams' input validation; presets."""

from __future__ import annotations

import pytest
import torch

from model.reward_end import RewardEndConfig, RewardEndModel, class_to_reward, reward_to_class
from model.sampler import SamplerConfig
from model.unet import UNet
from model.world_model import (
    Dreams,
    WorldModel,
    WorldModelConfig,
    frames_to_tensor,
    preset_config,
    tensor_to_frames,
)

ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT"]


@pytest.mark.parametrize("b", [1, 3])
def test_unet_and_denoiser_shapes(tiny_model: WorldModel, b: int) -> None:
    net: UNet = tiny_model.denoiser.net
    x = torch.randn(b, 3, 64, 64)
    ctx = torch.rand(b, 4, 3, 64, 64) * 2 - 1
    act = torch.randint(0, 4, (b, 4))
    with torch.no_grad():
        f = net(x, torch.zeros(b), ctx.flatten(1, 2), act, torch.zeros(b, dtype=torch.long))
        d = tiny_model.denoiser.denoise(x, torch.full((b,), 0.5), ctx, act)
    assert f.shape == (b, 3, 64, 64) and d.shape == (b, 3, 64, 64)
    assert torch.isfinite(f).all() and d.abs().max() <= 1


def test_unet_output_depends_on_actions(tiny_model: WorldModel) -> None:
    net = tiny_model.denoiser.net
    x, ctx = torch.randn(1, 3, 64, 64), torch.rand(1, 12, 64, 64)
    with torch.no_grad():
        a = net(x, torch.zeros(1), ctx, torch.tensor([[0, 0, 0, 0]]))
        b = net(x, torch.zeros(1), ctx, torch.tensor([[0, 0, 0, 2]]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("b", [1, 3])
def test_reward_end_shapes(b: int) -> None:
    torch.manual_seed(0)
    m = RewardEndModel(RewardEndConfig(num_actions=4, channels=(8, 8, 8, 8), lstm_dim=32))
    obs, nxt = torch.rand(b, 5, 3, 64, 64), torch.rand(b, 5, 3, 64, 64)
    act = torch.randint(0, 4, (b, 5))
    r, e, (h, c) = m(obs, nxt, act)
    assert r.shape == (b, 5, 3) and e.shape == (b, 5, 2)
    assert h.shape == (1, b, 32) and c.shape == (1, b, 32)
    loss, metrics = m.loss(obs, nxt, act, torch.tensor([[-2.0, 0, 1, 0, 5]] * b), torch.zeros(b, 5))
    assert loss.ndim == 0 and torch.isfinite(loss) and 0 <= metrics["acc_reward"] <= 1


def test_reward_classes_round_trip() -> None:
    r = torch.tensor([-3.0, -1.0, 0.0, 0.5, 7.0])
    assert reward_to_class(r).tolist() == [0, 0, 1, 2, 2]
    assert class_to_reward(reward_to_class(r)).tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]


def test_frame_conversion_round_trips() -> None:
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    x = frames_to_tensor(frames)
    assert x.shape == (2, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(tensor_to_frames(x), frames)


@pytest.mark.parametrize("b", [1, 3])
def test_dream_step_shapes(tiny_model: WorldModel, b: int) -> None:
    obs_ctx = torch.rand(b, 4, 3, 64, 64) * 2 - 1
    act_ctx = torch.randint(0, 4, (b, 4))
    hidden = tiny_model.burn_in(obs_ctx, act_ctx[:, :3])
    nxt, reward, end, (h, c) = tiny_model.dream_step(obs_ctx, act_ctx, hidden, SamplerConfig(num_steps=1))
    assert nxt.shape == (b, 3, 64, 64) and nxt.dtype == torch.float32
    assert reward.shape == (b,) and set(reward.tolist()) <= {-1.0, 0.0, 1.0}
    assert end.shape == (b,) and ((end >= 0) & (end <= 1)).all()
    assert h.shape == (1, b, 32) and c.shape == (1, b, 32)


@pytest.mark.parametrize("b", [1, 3])
def test_dreams_step_shapes(tiny_model: WorldModel, b: int) -> None:
    dreams = Dreams(tiny_model, SamplerConfig(num_steps=1), seed=0)
    dreams.reset(torch.randint(0, 256, (b, 4, 64, 64, 3), dtype=torch.uint8), torch.randint(0, 4, (b, 3)))
    assert dreams.batch_size == b
    for _ in range(2):
        frames, reward, end = dreams.step(torch.randint(0, 4, (b,)))
        assert frames.shape == (b, 64, 64, 3) and frames.dtype == torch.uint8
        assert reward.shape == (b,) and end.shape == (b,)
    assert dreams.obs_ctx.shape == (b, 4, 3, 64, 64)
    # The context window slid: its last frame is the dream just returned.
    assert torch.equal(tensor_to_frames(dreams.obs_ctx[:, -1]), frames)


def test_dreams_are_independent_of_batch_neighbours(model_factory) -> None:
    """Dream 0 must not change when dream 1 gets other frames and actions (same noise per row)."""
    model = model_factory(0)
    torch.manual_seed(1)
    frames = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8)
    acts = torch.randint(0, 4, (2, 3))
    outs = []
    for other in (0, 255):
        f = frames.clone()
        f[1] = other
        d = Dreams(model, SamplerConfig(num_steps=1), seed=0)
        d.reset(f, acts)
        outs.append(d.step(torch.tensor([1, 2]))[0])
    assert torch.equal(outs[0][0], outs[1][0])
    assert not torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize(
    ("frames", "actions"),
    [
        (torch.zeros(4, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 3)),  # no batch dim
        (torch.zeros(1, 3, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 3)),  # 3 frames, not 4
        (torch.zeros(1, 4, 64, 64, 3), torch.zeros(1, 3)),  # float frames
        (torch.zeros(1, 4, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 4)),  # 4 actions, not 3
        (torch.zeros(2, 4, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 3)),  # batch mismatch
        (torch.zeros(1, 4, 64, 64, 3, dtype=torch.uint8), torch.tensor([[0, 1, 4]])),  # action 4 of 4
        (torch.zeros(1, 4, 64, 64, 3, dtype=torch.uint8), torch.tensor([[0, -1, 0]])),
    ],
)
def test_dreams_reset_rejects_bad_input(tiny_model: WorldModel, frames, actions) -> None:
    with pytest.raises(ValueError):
        Dreams(tiny_model).reset(frames, actions)


def test_dreams_step_rejects_bad_actions(tiny_model: WorldModel) -> None:
    dreams = Dreams(tiny_model, SamplerConfig(num_steps=1))
    with pytest.raises(RuntimeError):
        dreams.step(torch.tensor([0]))  # before reset
    dreams.reset(torch.zeros(2, 4, 64, 64, 3, dtype=torch.uint8), torch.zeros(2, 3))
    for bad in (torch.tensor([0]), torch.tensor([0, 1, 2]), torch.tensor([0, 4]), torch.tensor([-1, 0])):
        with pytest.raises(ValueError):
            dreams.step(bad)
    assert dreams.step(torch.tensor([3, 0]))[0].shape == (2, 64, 64, 3)  # still usable afterwards


def test_presets() -> None:
    for name in ("cpu", "paper", "tiny"):
        cfg = preset_config(name, "Pong", ACTIONS + ["RIGHTFIRE", "LEFTFIRE"])
        assert cfg.preset == name and cfg.denoiser.unet.num_actions == 6 and cfg.reward_end.num_actions == 6
    assert preset_config("paper", "Breakout", ACTIONS).denoiser.unet.channels == [64, 64, 64, 64]
    assert preset_config("cpu", "Breakout", ACTIONS).denoiser.unet.channels == [32, 32, 64, 64]
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge", "Breakout", ACTIONS)


def test_config_rejects_action_count_mismatch() -> None:
    cfg = preset_config("tiny", "Breakout", ACTIONS)
    with pytest.raises(ValueError, match="action count mismatch"):
        WorldModelConfig("Breakout", ACTIONS[:3], cfg.denoiser, cfg.reward_end)


def test_config_round_trips_through_dict() -> None:
    cfg = preset_config("tiny", "Breakout", ACTIONS)
    assert WorldModelConfig(**cfg.to_dict()) == cfg
