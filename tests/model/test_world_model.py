"""Shapes through the U-Net, denoiser, reward/end model, WorldModel.dream_step and Dreams, at batch 1
and 3; reward and end sampled from the heads, seeded replay; Dreams' input validation; presets, and
the paper preset's U-Net against DIAMOND's InnerModel."""

from __future__ import annotations

import pytest
import torch

from model.world_model import (
    DreamNoise,
    Dreams,
    WorldModel,
    WorldModelConfig,
    frames_to_tensor,
    preset_config,
    tensor_to_frames,
    transfer_to_game,
)
from model.world_model.core import sample_classes
from model.world_model.reward_end import RewardEndConfig, RewardEndModel, class_to_reward, reward_to_class
from model.world_model.sampler import SamplerConfig
from model.world_model.unet import UNet, UNetConfig

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


def test_reward_end_blank_hides_the_lives_counter() -> None:
    """With `blank` a box of the frame (Breakout's lives counter) does not reach the heads; the rest,
    the score beside it included, does."""
    torch.manual_seed(0)
    cfg = RewardEndConfig(num_actions=4, channels=(8, 8, 8, 8), lstm_dim=32)
    m = RewardEndModel(RewardEndConfig(**{**cfg.__dict__, "blank": (0, 5, 36, 50)})).eval()
    plain = RewardEndModel(cfg).eval()
    plain.load_state_dict(m.state_dict())
    obs, act = torch.rand(2, 3, 3, 64, 64) * 2 - 1, torch.zeros(2, 3, dtype=torch.long)
    lives, score = obs.clone(), obs.clone()
    lives[..., 1:5, 40:45] = 1.0
    score[..., 1:5, 14:32] = 1.0
    with torch.no_grad():
        r0, e0, _ = m(obs, obs, act)
        r_lives, e_lives, _ = m(lives, lives, act)
        r_score, _, _ = m(score, score, act)
        seen, _, _ = plain(lives, lives, act)
        before, _, _ = plain(obs, obs, act)
    assert torch.equal(r0, r_lives) and torch.equal(e0, e_lives)
    assert not torch.allclose(r0, r_score)
    assert not torch.allclose(seen, before)
    for bad in [(0, 70, 0, 5), (5, 0, 0, 5), (0, 5, 0)]:
        with pytest.raises(ValueError, match="blank"):
            RewardEndConfig(blank=bad)


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
    out = tiny_model.dream_step(obs_ctx, act_ctx, hidden, SamplerConfig(num_steps=1))
    assert out.next_obs.shape == (b, 3, 64, 64) and out.next_obs.dtype == torch.float32
    assert out.reward.shape == (b,) and set(out.reward.tolist()) <= {-1.0, 0.0, 1.0}
    assert out.end.shape == (b,) and out.end.dtype == torch.bool
    assert out.reward_probs.shape == (b, 3) and torch.allclose(out.reward_probs.sum(1), torch.ones(b))
    assert out.end_prob.shape == (b,) and ((out.end_prob >= 0) & (out.end_prob <= 1)).all()
    h, c = out.hidden
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


def _bias_heads(model: WorldModel, p_reward: tuple[float, float, float], p_end: float) -> None:
    """Make the reward/end heads ignore their input: P(-1, 0, +1) = p_reward, P(end) = p_end."""
    re = model.reward_end
    with torch.no_grad():
        re.head_reward.weight.zero_()
        re.head_reward.bias.copy_(torch.tensor(p_reward).log())
        re.head_end.weight.zero_()
        re.head_end.bias.copy_(torch.tensor([1 - p_end, p_end]).log())


def _seeded_run(model: WorldModel, seed: int, steps: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(99)  # the same contexts and actions for every run
    frames = torch.randint(0, 256, (4, 4, 64, 64, 3), dtype=torch.uint8, generator=g)
    actions = torch.randint(0, 4, (steps, 4), generator=g)
    dreams = Dreams(model, SamplerConfig(num_steps=1), seed=seed)
    dreams.reset(frames, torch.randint(0, 4, (4, 3), generator=g))
    out = [dreams.step(a) for a in actions]
    return tuple(torch.stack(x) for x in zip(*out))  # (steps, B, ...) each


def test_dreamed_reward_and_end_are_sampled_from_the_heads(tiny_model: WorldModel) -> None:
    """P(+1) = 0.2 < P(0): an argmax would never give +1 (and imagined returns would be biased
    low); sampled, as DIAMOND imagines, +1 comes out in about a fifth of the steps."""
    _bias_heads(tiny_model, (0.1, 0.7, 0.2), 0.3)
    _, reward, end = _seeded_run(tiny_model, seed=0, steps=150)  # 600 draws: std of a share <= 0.02
    assert reward.shape == (150, 4) and end.dtype == torch.bool
    assert (reward == 1).float().mean().item() == pytest.approx(0.2, abs=0.06)
    assert (reward == -1).float().mean().item() == pytest.approx(0.1, abs=0.05)
    assert end.float().mean().item() == pytest.approx(0.3, abs=0.06)


def test_seeded_dreams_replay_exactly(tiny_model: WorldModel) -> None:
    _bias_heads(tiny_model, (0.3, 0.4, 0.3), 0.5)  # so that rewards and ends vary from step to step
    first, again, other = (_seeded_run(tiny_model, seed) for seed in (7, 7, 8))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[1], other[1]) or not torch.equal(first[2], other[2])


def test_dreams_from_tensors_with_a_shared_generator(tiny_model: WorldModel) -> None:
    """The options the agent's imagination uses: a context already in [-1, 1] (`reset_tensors`)
    dreams as the same uint8 frames do; a generator passed in is the one the steps draw from (it
    advances, as `seed` would); `advance` leaves the whole step on the device, `step` converts it."""
    _bias_heads(tiny_model, (0.3, 0.4, 0.3), 0.5)
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (3, 4, 64, 64, 3), dtype=torch.uint8, generator=g)
    act_prev, actions = torch.randint(0, 4, (3, 3), generator=g), torch.randint(0, 4, (5, 3), generator=g)
    by_seed = Dreams(tiny_model, SamplerConfig(num_steps=1), seed=11)
    by_seed.reset(frames, act_prev)
    shared = torch.Generator().manual_seed(11)
    by_gen = Dreams(tiny_model, SamplerConfig(num_steps=1), generator=shared)
    by_gen.reset_tensors(frames_to_tensor(frames), act_prev)
    assert by_gen.generator is shared
    for a in actions:
        frame, reward, end = by_seed.step(a)
        out = by_gen.advance(a)
        assert out is by_gen.last and torch.equal(by_gen.obs_ctx[:, -1], out.next_obs)
        assert torch.equal(tensor_to_frames(out.next_obs), frame)
        assert torch.equal(out.reward, reward) and torch.equal(out.end, end)
        assert all(torch.equal(x, y) for x, y in zip(by_seed.hidden, by_gen.hidden, strict=True))
    assert torch.equal(shared.get_state(), by_seed.generator.get_state())
    with pytest.raises(ValueError, match="not both"):
        Dreams(tiny_model, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="float"):
        by_gen.reset_tensors(frames, act_prev)  # uint8 (B, L, H, W, C): use reset
    with pytest.raises(ValueError, match="actions"):
        by_gen.reset_tensors(frames_to_tensor(frames), act_prev[:, :2])


def test_dream_step_with_drawn_noise_equals_the_generator(tiny_model: WorldModel) -> None:
    """Passing DreamNoise drawn from a generator is the same as passing that generator, and each
    row uses only its own noise (the server draws it per session)."""
    _bias_heads(tiny_model, (0.3, 0.4, 0.3), 0.5)
    g = torch.Generator().manual_seed(0)
    obs, act = torch.rand(3, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (3, 4), generator=g)
    hidden, cfg = tiny_model.burn_in(obs, act[:, :3]), SamplerConfig(num_steps=2)
    by_gen = tiny_model.dream_step(obs, act, hidden, cfg, torch.Generator().manual_seed(5))
    noise = DreamNoise.draw(3, (3, 64, 64), torch.Generator().manual_seed(5))
    by_noise = tiny_model.dream_step(obs, act, hidden, cfg, noise=noise)
    for a, b in zip(by_gen, by_noise, strict=True):
        if isinstance(a, tuple):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        else:
            assert torch.equal(a, b)
    row = (hidden[0][:, 1:2], hidden[1][:, 1:2])
    alone = tiny_model.dream_step(obs[1:2], act[1:2], row, cfg, noise=DreamNoise(noise.frame[1:2], noise.uniform[1:2]))
    torch.testing.assert_close(alone.next_obs, by_noise.next_obs[1:2], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="noise"):
        tiny_model.dream_step(obs, act, hidden, cfg, noise=DreamNoise(noise.frame[:2], noise.uniform[:2]))


def test_sample_classes_follows_the_probabilities() -> None:
    probs = torch.tensor([[0.1, 0.7, 0.2]]).expand(20000, 3)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    share = torch.bincount(sample_classes(probs, u), minlength=3).float() / 20000
    torch.testing.assert_close(share, torch.tensor([0.1, 0.7, 0.2]), atol=0.01, rtol=0)
    edges = torch.tensor([0.0, 0.0999, 0.1001, 0.7999, 0.8001, 0.99999])
    assert sample_classes(torch.tensor([[0.1, 0.7, 0.2]]).expand(6, 3), edges).tolist() == [0, 0, 1, 1, 2, 2]


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


# DIAMOND's InnerModel for Atari (config/agent/default.yaml: channels [64, 64, 64, 64], depths
# [2, 2, 2, 2], attn_depths all 0, cond_channels 256, num_steps_conditioning 4), counted by
# instantiating DIAMOND's own classes: 4,405,955 parameters with 4 actions; each action adds 64.
DIAMOND_PARAMS = {4: 4_405_955, 6: 4_406_083, 18: 4_406_851}


@pytest.mark.parametrize("num_actions", sorted(DIAMOND_PARAMS))
def test_paper_preset_is_diamonds_denoiser(num_actions: int) -> None:
    actions = (ACTIONS + [f"A{i}" for i in range(20)])[:num_actions]
    cfg = preset_config("paper", "Breakout", actions)
    torch.manual_seed(0)
    net = UNet(cfg.denoiser.unet)
    assert sum(p.numel() for p in net.parameters()) == DIAMOND_PARAMS[num_actions]
    assert net.ctx_noise_emb is None  # DIAMOND has no context-noise augmentation
    assert net.act_emb.weight.shape == (num_actions, 64) and net.cond_mlp[0].weight.shape == (256, 256)
    assert net.conv_in.weight.shape == (64, 15, 3, 3)  # 4 context frames + the noisy frame, RGB
    # Down: 2 blocks per level, a stride-2 conv before every level but the first.
    assert [len(blocks) for blocks in net.down] == [2, 2, 2, 2]
    assert isinstance(net.downsample[0], torch.nn.Identity)
    assert all(d.stride == (2, 2) and d.weight.shape == (64, 64, 3, 3) for d in net.downsample[1:])
    # Up: depth + 1 = 3 blocks per level, all taking a 64-channel skip (block outputs, then the
    # level's input); upsampling before every level but the deepest.
    assert [len(blocks) for blocks in net.up] == [3, 3, 3, 3]
    assert all(b.conv1.weight.shape == (64, 128, 3, 3) and b.proj.weight.shape == (64, 128, 1, 1) for b in net.up[0])
    assert isinstance(net.upsample[0], torch.nn.Identity) and len(net.upsample) == 4
    # Attention in both middle blocks only: 8 heads of 8 channels after a plain group norm.
    assert [b.attn is not None for b in net.mid] == [True, True]
    assert all(b.attn is None for level in (*net.down, *net.up) for b in level)
    attn = net.mid[0].attn
    assert attn.heads == 8 and isinstance(attn.norm, torch.nn.GroupNorm) and attn.norm.num_groups == 2
    # Group norms of 32 channels per group; every block's second conv and the output conv start at 0.
    blocks = [b for level in (*net.down, net.mid, *net.up) for b in level]
    assert len(blocks) == 8 + 2 + 12
    assert all(b.norm1.num_groups == b.conv1.in_channels // 32 for b in blocks) and net.norm_out.num_groups == 2
    assert all(b.conv2.weight.abs().max() == 0 for b in blocks) and net.conv_out.weight.abs().max() == 0
    with torch.no_grad():
        f = net(torch.randn(1, 3, 64, 64), torch.zeros(1), torch.randn(1, 12, 64, 64), torch.zeros(1, 4).long())
    assert f.shape == (1, 3, 64, 64)


def test_compact_layout_is_the_default() -> None:
    """Snapshots written before the layout option existed (the shipped cpu model) are compact."""
    assert (
        UNetConfig().layout == "compact" and preset_config("cpu", "Breakout", ACTIONS).denoiser.unet.layout == "compact"
    )
    assert sum(p.numel() for p in UNet(UNetConfig()).parameters()) == 3_553_859
    with pytest.raises(ValueError, match="layout"):
        UNetConfig(layout="diamonds")
    with pytest.raises(ValueError, match="context_noise_levels"):
        UNetConfig(context_noise_levels=0)


def test_config_rejects_action_count_mismatch() -> None:
    cfg = preset_config("tiny", "Breakout", ACTIONS)
    with pytest.raises(ValueError, match="action count mismatch"):
        WorldModelConfig("Breakout", ACTIONS[:3], cfg.denoiser, cfg.reward_end)


def test_config_round_trips_through_dict() -> None:
    cfg = preset_config("tiny", "Breakout", ACTIONS)
    assert WorldModelConfig(**cfg.to_dict()) == cfg


def test_grown_context_computes_the_same_function_until_trained() -> None:
    """grow_context: a 4-frame U-Net grown to 7 frames gives the same output whatever the 3 older
    frames and their actions hold; once its new input channels are trained, the older frames
    count; the older actions never do (the grown model embeds the last 4)."""
    from model.world_model.unet import grow_context

    torch.manual_seed(0)
    cfg = UNetConfig(channels=[8, 8], blocks_per_level=1, cond_channels=16, attn_middle=False)
    net = UNet(cfg)
    for p in net.parameters():  # conv_out starts at zero: give every weight a value
        p.data.normal_(0, 0.1)
    new_cfg, state = grow_context(cfg, net.state_dict(), 7)
    assert (new_cfg.context_frames, new_cfg.action_frames) == (7, 4)
    grown = UNet(new_cfg)
    grown.load_state_dict(state)
    x, ctx, act = torch.randn(2, 3, 64, 64), torch.rand(2, 4, 3, 64, 64) * 2 - 1, torch.randint(0, 4, (2, 4))
    old_ctx, old_act = torch.rand(2, 3, 3, 64, 64) * 2 - 1, torch.randint(0, 4, (2, 3))
    level = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        before = net(x, torch.zeros(2), ctx.flatten(1, 2), act, level)
        after = grown(
            x, torch.zeros(2), torch.cat([old_ctx, ctx], 1).flatten(1, 2), torch.cat([old_act, act], 1), level
        )
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
        grown.conv_in.weight[:, 3:12].normal_(0, 0.1)  # as if trained: the older frames now count
        moved = grown(
            x, torch.zeros(2), torch.cat([old_ctx, ctx], 1).flatten(1, 2), torch.cat([old_act, act], 1), level
        )
        other_actions = grown(
            x, torch.zeros(2), torch.cat([old_ctx, ctx], 1).flatten(1, 2), torch.cat([(old_act + 1) % 4, act], 1), level
        )
    assert not torch.allclose(moved, before, atol=1e-3)
    torch.testing.assert_close(other_actions, moved)
    with pytest.raises(ValueError, match="shrink"):
        grow_context(cfg, net.state_dict(), 3)
    with pytest.raises(ValueError, match="action_frames"):
        UNetConfig(context_frames=4, action_frames=5)


def test_another_games_model_starts_a_new_game() -> None:
    """transfer_to_game: a Breakout model becomes the start of a Pong one. Every weight but the
    action embeddings is kept; embedding rows whose action name both games have are copied, the
    others are new; Breakout's sampler settings and blanked box go; the weights load into the new
    game's model and it dreams with Pong's actions."""
    pong = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    cfg = preset_config("tiny", "Breakout", ACTIONS)
    cfg = WorldModelConfig(**{**cfg.to_dict(), "sampler": {"action_guidance": 2.0}})
    cfg.reward_end = RewardEndConfig(**{**cfg.to_dict()["reward_end"], "blank": (0, 5, 36, 50)})
    torch.manual_seed(0)
    src = WorldModel(cfg)
    state = src.state_dict()
    new_cfg, new_state = transfer_to_game(cfg, state, "Pong", pong, seed=1)
    assert (new_cfg.game, new_cfg.action_meanings) == ("Pong", pong)
    assert new_cfg.sampler == SamplerConfig() and new_cfg.reward_end.blank == (0, 0, 0, 0)
    assert new_cfg.denoiser.unet.channels == cfg.denoiser.unet.channels
    for key in state:
        if "act_emb" not in key:
            assert torch.equal(new_state[key], state[key]), key
    for key in ("denoiser.net.act_emb.weight", "reward_end.act_emb.weight"):
        old, new = state[key], new_state[key]
        assert new.shape == (6, old.shape[1])
        torch.testing.assert_close(new[:4], old)  # NOOP, FIRE, RIGHT, LEFT by name
        assert not torch.allclose(new[4], new[5]) and new[4:].abs().sum() > 0
    model = WorldModel(new_cfg)
    model.load_state_dict(new_state)  # strict: every key and shape fits
    dreams = Dreams(model, SamplerConfig(num_steps=1), seed=0)
    dreams.reset(torch.zeros(1, 4, 64, 64, 3, dtype=torch.uint8), torch.tensor([[5, 4, 5]]))
    assert dreams.step(torch.tensor([5]))[0].shape == (1, 64, 64, 3)
    same_cfg, same_state = transfer_to_game(cfg, state, "Breakout", ACTIONS)
    assert same_cfg == cfg and all(torch.equal(same_state[k], state[k]) for k in state)


def test_a_snapshot_carries_its_sampler_settings(tiny_model: WorldModel, tmp_path) -> None:
    """cfg.sampler travels with the snapshot; Dreams and sampler_config start from it; a snapshot
    written before the setting existed loads with DIAMOND's sampler."""
    import dataclasses

    from model.world_model.sampler import SamplerConfig

    model = WorldModel(dataclasses.replace(tiny_model.cfg, sampler=SamplerConfig(action_guidance=2.0)))
    model.load_state_dict(tiny_model.state_dict())
    model.save_snapshot(tmp_path / "guided")
    loaded = WorldModel.from_snapshot(tmp_path / "guided", precision="fp32")
    assert loaded.sampler_config() == SamplerConfig(action_guidance=2.0)
    assert loaded.sampler_config(num_steps=5) == SamplerConfig(num_steps=5, action_guidance=2.0)
    assert loaded.sampler_config(num_steps=None) == SamplerConfig(action_guidance=2.0)  # unset: its own
    assert Dreams(loaded).sampler.action_guidance == 2.0
    with pytest.raises(ValueError, match="num_steps"):
        loaded.sampler_config(num_steps=0)
    old = tiny_model.cfg.to_dict()
    del old["sampler"]
    assert WorldModelConfig(**old).sampler == SamplerConfig()
