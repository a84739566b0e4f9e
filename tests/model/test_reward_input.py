"""A denoiser told the step's reward (UNetConfig.reward_input): it starts as the model it was made
from, a dream's scoring rows are dreamed again told their reward, training tells half of each batch,
and the paths that cannot take the input say so."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch

from model.world_model import DreamNoise, WorldModel, WorldModelConfig, preset_config
from model.world_model.onnx_backend import BackendError, use_backend
from model.world_model.sampler import SamplerConfig, sample_next_frame
from model.world_model.unet import REWARD_INPUTS, UNet, UNetConfig, add_reward_input, reward_input_index

ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT"]


def _net_args(b: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, 3, 64, 64, generator=g),
        torch.randn(b, generator=g),
        torch.rand(b, 12, 64, 64, generator=g) * 2 - 1,
        torch.randint(0, 4, (b, 4), generator=g),
        torch.zeros(b, dtype=torch.long),
    )


def test_reward_input_starts_as_the_model_it_was_made_from() -> None:
    """add_reward_input: whatever the reward, the new net computes what the old one did (the
    embedding starts at zero); once the embedding is trained, what it is told changes the frame. A
    net without the input refuses a reward instead of ignoring it."""
    torch.manual_seed(0)
    cfg = UNetConfig(channels=[8, 8], blocks_per_level=1, cond_channels=16, attn_middle=False)
    net = UNet(cfg)
    for p in net.parameters():  # conv_out starts at zero: give every weight a value
        p.data.normal_(0, 0.1)
    new_cfg, state = add_reward_input(cfg, net.state_dict())
    assert new_cfg.reward_input and not cfg.reward_input
    told = UNet(new_cfg)
    told.load_state_dict(state)
    args = _net_args(4)
    with torch.no_grad():
        before = net(*args)
        for r in range(len(REWARD_INPUTS)):
            torch.testing.assert_close(told(*args, torch.full((4,), r)), before)
        torch.testing.assert_close(told(*args), before)  # None: unknown
        told.reward_emb.weight.normal_(0, 0.5)  # as if trained
        unknown, positive = told(*args), told(*args, torch.full((4,), REWARD_INPUTS.index("positive")))
    assert not torch.allclose(positive, unknown, atol=1e-3)
    with pytest.raises(ValueError, match="no reward input"):
        net(*args, torch.zeros(4, dtype=torch.long))
    assert reward_input_index(torch.tensor([-2.0, 0.0, 1.0, 2.0])).tolist() == [1, 2, 3, 3]


def _reward_model(p_point: float) -> WorldModel:
    """A tiny reward-input model whose reward embedding has been 'trained' (drawn) and whose reward
    head says +1 with probability p_point whatever it sees."""
    base = preset_config("tiny", "Breakout", ACTIONS)
    d = base.to_dict()
    d["denoiser"]["unet"] = asdict(replace(base.denoiser.unet, reward_input=True))
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(**d))
    with torch.no_grad():
        model.denoiser.net.conv_out.weight.normal_(0, 0.05)
        model.denoiser.net.reward_emb.weight.normal_(0, 1.0)
        re = model.reward_end
        re.head_reward.weight.zero_()
        re.head_reward.bias.copy_(torch.tensor([1e-6, 1 - p_point, p_point]).clamp_min(1e-6).log())
    return model.configure(torch.device("cpu"), "fp32")


def test_scoring_dreams_are_dreamed_again_told_their_reward() -> None:
    """dream_step on a reward-input model: the dreams whose sampled reward is 0 are the "unknown"
    dream; those that scored are the dream from the same noise told "positive" (not the unknown
    one: the score the reward head sampled is drawn); the reward/end state steps on the frames
    kept; a dream alone gives what it gives in the batch."""
    model = _reward_model(0.5)
    sampler = SamplerConfig(num_steps=2)
    g = torch.Generator().manual_seed(1)
    obs, act = torch.rand(6, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (6, 4), generator=g)
    hidden = model.burn_in(obs, act[:, :3])
    noise = DreamNoise.draw(6, (3, 64, 64), torch.Generator().manual_seed(2))
    out = model.dream_step(obs, act, hidden, sampler, noise=noise)
    scored = out.reward != 0
    assert 0 < int(scored.sum()) < 6  # both kinds of rows in the batch
    with torch.no_grad():
        unknown = sample_next_frame(model.denoiser, obs, act, sampler, noise=noise.frame)
        positive = sample_next_frame(
            model.denoiser,
            obs,
            act,
            sampler,
            noise=noise.frame,
            reward=torch.full((6,), REWARD_INPUTS.index("positive")),
        )
        _, _, stepped = model.reward_end(obs[:, -1:], out.next_obs[:, None], act[:, -1:], hidden)
    torch.testing.assert_close(out.next_obs[~scored], unknown[~scored])
    torch.testing.assert_close(out.next_obs[scored], positive[scored])
    assert not torch.allclose(positive[scored], unknown[scored], atol=1e-3)
    for a, b in zip(out.hidden, stepped, strict=True):
        torch.testing.assert_close(a, b)
    i = int(scored.nonzero()[0])
    row = (hidden[0][:, i : i + 1], hidden[1][:, i : i + 1])
    alone = model.dream_step(
        obs[i : i + 1], act[i : i + 1], row, sampler, noise=DreamNoise(noise.frame[i : i + 1], noise.uniform[i : i + 1])
    )
    assert alone.reward.item() == out.reward[i].item()
    torch.testing.assert_close(alone.next_obs, out.next_obs[i : i + 1], atol=1e-5, rtol=0)


def test_a_dream_without_points_is_one_pass() -> None:
    """No scoring dream, no second pass: the frames are the "unknown" dream."""
    model = _reward_model(0.0)
    sampler = SamplerConfig(num_steps=1)
    g = torch.Generator().manual_seed(3)
    obs, act = torch.rand(3, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (3, 4), generator=g)
    noise = DreamNoise.draw(3, (3, 64, 64), torch.Generator().manual_seed(4))
    out = model.dream_step(obs, act, model.burn_in(obs, act[:, :3]), sampler, noise=noise)
    assert (out.reward == 0).all()
    with torch.no_grad():
        torch.testing.assert_close(
            out.next_obs, sample_next_frame(model.denoiser, obs, act, sampler, noise=noise.frame)
        )


def test_training_tells_a_share_of_the_batch_its_reward() -> None:
    """Denoiser.reward_inputs: with reward_known_prob q about q of the samples are told their
    reward's sign, the rest "unknown"; a window drawn w times as often is told with probability
    1 - (1 - q) / w, so the unknown samples keep the data's share of points; a net without the input
    is told nothing. The loss trains the embedding of the rewards it was told."""
    model = _reward_model(0.0)
    den = model.denoiser
    q = den.cfg.reward_known_prob
    torch.manual_seed(0)
    reward = torch.tensor([-1.0, 0.0, 2.0, 1.0]).repeat(1000)
    told = den.reward_inputs(reward)
    known = told != 0
    assert known.float().mean().item() == pytest.approx(q, abs=0.03)
    torch.testing.assert_close(told[known], reward_input_index(reward)[known])
    weight = torch.where(reward != 0, 4.0, 1.0)  # points drawn 4 times as often (--reward-weight 4)
    unknown = den.reward_inputs(reward, weight) == 0
    assert unknown[reward == 0].float().mean().item() == pytest.approx(1 - q, abs=0.04)
    assert unknown[reward != 0].float().mean().item() == pytest.approx((1 - q) / 4, abs=0.03)
    plain = WorldModel(preset_config("tiny", "Breakout", ACTIONS)).denoiser
    assert plain.reward_inputs(reward) is None

    den.train()
    g = torch.Generator().manual_seed(5)
    obs, act = torch.rand(8, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (8, 4), generator=g)
    nxt = torch.rand(8, 3, 64, 64, generator=g) * 2 - 1
    den.cfg.reward_known_prob = 1.0
    loss, _ = den.loss(obs, act, nxt, None, den.reward_inputs(torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])))
    loss.backward()
    grad = den.net.reward_emb.weight.grad
    assert grad[REWARD_INPUTS.index("positive")].abs().sum() > 0 and grad[REWARD_INPUTS.index("zero")].abs().sum() > 0
    assert grad[REWARD_INPUTS.index("negative")].abs().sum() == 0  # no sample was told a negative reward
    with pytest.raises(ValueError, match="reward_known_prob"):
        type(den.cfg)(reward_known_prob=1.5)


def test_onnx_has_no_reward_input() -> None:
    """The exported graph takes no reward: an ONNX backend is refused with the reason, before
    anything changes; `auto` keeps torch."""
    model = _reward_model(0.5)
    before = model.denoiser._frozen
    with pytest.raises(BackendError, match="no reward input"):
        use_backend(model, "onnx-fp32")
    assert model.denoiser._frozen is before
    assert use_backend(model, "auto") == "torch"


def test_the_frozen_graph_takes_the_reward() -> None:
    """fp32's traced graph (Denoiser.freeze) of a reward-input net is given what it is told (unknown
    when nothing): the same estimates as the eager net, and told "positive" is not "unknown"."""
    model = _reward_model(0.5)
    den = model.denoiser
    assert den._frozen is not None  # configure froze it
    g = torch.Generator().manual_seed(6)
    x, s = torch.randn(2, 3, 64, 64, generator=g), torch.full((2,), 1.0)
    obs, act = torch.rand(2, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (2, 4), generator=g)
    level, positive = torch.zeros(2, dtype=torch.long), torch.full((2,), REWARD_INPUTS.index("positive"))
    with torch.no_grad():
        frozen = den.denoise(x, s, obs, act, level), den.denoise(x, s, obs, act, level, positive)
        den.use_inference_net(None)
        eager = den.denoise(x, s, obs, act, level), den.denoise(x, s, obs, act, level, positive)
    for f, e in zip(frozen, eager, strict=True):
        torch.testing.assert_close(f, e, atol=1e-4, rtol=1e-3)
    assert not torch.allclose(frozen[0], frozen[1], atol=1e-3)


def test_windows_carry_the_weight_they_were_drawn_with() -> None:
    """WindowSampler's batches give each window's sampling weight (what reward_inputs corrects for);
    unweighted batches give none."""
    import numpy as np

    from tests.conftest import synthetic_episode
    from training.world_model.data import WindowSampler, reward_weights

    rng = np.random.default_rng(0)
    eps = [synthetic_episode(rng, 40) for _ in range(3)]
    for e in eps:
        e.rewards[:] = 0
        e.rewards[::7] = 1
    weights = [reward_weights(e, 5.0, after=0) for e in eps]
    batch = WindowSampler(eps, seed=1, weights=weights).sample(64, 3)
    torch.testing.assert_close(batch.weights, torch.where(batch.rewards[:, -1] != 0, 5.0, 1.0))
    assert WindowSampler(eps, seed=1).sample(4, 3).weights is None


def test_the_reward_embedding_learns_at_its_own_rate() -> None:
    """WorldModelSteps gives a reward-input net's embedding its own group at --reward-input-lr,
    warmed up like the rest; a net without the input has one group at the model's rate."""
    from types import SimpleNamespace

    from training.loop import WorldModelSteps

    opts = SimpleNamespace(lr=1e-4, warmup=4, grad_clip=1.0, ema_decay=0.99, weight_decay=0.01, reward_input_lr=1e-2)
    told = WorldModelSteps(_reward_model(0.0).cfg, torch.device("cpu"), False, opts)
    rest, emb = told.opt_den.param_groups
    assert emb["params"] == [told.model.denoiser.net.reward_emb.weight]
    assert len(rest["params"]) == len(list(told.model.denoiser.parameters())) - 1
    told.set_lr(1)  # half-way through the warm-up
    assert rest["lr"] == pytest.approx(5e-5) and emb["lr"] == pytest.approx(5e-3)
    plain = WorldModelSteps(preset_config("tiny", "Breakout", ACTIONS), torch.device("cpu"), False, opts)
    assert len(plain.opt_den.param_groups) == 1
    plain.set_lr(10)
    assert plain.opt_den.param_groups[0]["lr"] == pytest.approx(1e-4)
