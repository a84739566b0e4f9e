"""EDM preconditioning and loss of the denoiser, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from model.world_model.denoiser import Denoiser, DenoiserConfig
from model.world_model.unet import UNetConfig

TINY_UNET = UNetConfig(channels=[16, 16, 16, 16], blocks_per_level=1, cond_channels=64)

# sigma -> (c_in, c_skip, c_out, c_noise) with s_off = 0.3, sigma_data = 0.5, s = sqrt(sigma^2 + 0.09),
# worked out by hand:
#   sigma = 0:          s = 0.3, s^2 + sd^2 = 0.34 -> 1/sqrt(.34), .25/.34, .15/sqrt(.34), ln(.3)/4
#   sigma = 0.4:        s = 0.5, s^2 + sd^2 = 0.5  -> sqrt(2), 0.5, 0.25*sqrt(2), ln(.5)/4
#   sigma = sqrt(0.91): s = 1,   s^2 + sd^2 = 1.25 -> 2/sqrt(5), 0.2, 1/sqrt(5), 0
#   sigma = 5:          s^2 = 25.09, s^2 + sd^2 = 25.34
HAND = {
    0.0: (1.714986, 0.735294, 0.257248, -0.300993),
    0.4: (1.414214, 0.500000, 0.353553, -0.173287),
    math.sqrt(0.91): (0.894427, 0.200000, 0.447214, 0.000000),
    5.0: (0.198654, 0.009866, 0.497527, 0.402809),
}


@pytest.fixture
def denoiser() -> Denoiser:
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(unet=TINY_UNET))
    torch.nn.init.normal_(den.net.conv_out.weight, std=0.05)  # zero-init would make F == 0
    return den.eval()


def test_preconditioning_matches_hand_computed_values(denoiser: Denoiser) -> None:
    sigmas = torch.tensor(list(HAND), dtype=torch.float64)
    c = denoiser.conditioners(sigmas)
    for i, (c_in, c_skip, c_out, c_noise) in enumerate(HAND.values()):
        assert c.c_in.flatten()[i].item() == pytest.approx(c_in, abs=1e-6)
        assert c.c_skip.flatten()[i].item() == pytest.approx(c_skip, abs=1e-6)
        assert c.c_out.flatten()[i].item() == pytest.approx(c_out, abs=1e-6)
        assert c.c_noise[i].item() == pytest.approx(c_noise, abs=1e-6)
    assert c.c_in.shape == (4, 1, 1, 1) and c.c_noise.shape == (4,)


def test_preconditioning_keeps_unit_variance(denoiser: Denoiser) -> None:
    """EDM's design rules: the network input and its training target both have unit variance."""
    sigma = torch.logspace(-3, 1.3, 9, dtype=torch.float64)
    c = denoiser.conditioners(sigma)
    s2 = sigma**2 + 0.3**2
    torch.testing.assert_close(c.c_in.flatten() ** 2 * (s2 + 0.25), torch.ones_like(sigma))
    # Effective training target (x - c_skip (x + n)) / c_out has unit variance.
    var_target = ((1 - c.c_skip.flatten()) ** 2 * 0.25 + c.c_skip.flatten() ** 2 * s2) / c.c_out.flatten() ** 2
    torch.testing.assert_close(var_target, torch.ones_like(sigma))


@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0, 5.0])
def test_preconditioning_is_edm_with_offset_noise(denoiser: Denoiser, sigma: float) -> None:
    """EDM's coefficients (Karras et al. 2022, Table 1) at the total noise std s = sqrt(sigma^2 + s_off^2),
    written out here; then a property a wrong c_out fails: for x ~ N(0, sd^2), noised as in
    training (per-image offset noise + sigma noise), the loss target (x - c_skip x_noisy) / c_out
    has unit variance."""
    sd, s_off = 0.5, 0.3
    s = math.sqrt(sigma**2 + s_off**2)
    want = {
        "c_in": 1 / math.sqrt(s**2 + sd**2),
        "c_skip": sd**2 / (s**2 + sd**2),
        "c_out": s * sd / math.sqrt(s**2 + sd**2),
        "c_noise": math.log(s) / 4,
    }
    c = denoiser.conditioners(torch.tensor([sigma], dtype=torch.float64))
    for name, value in want.items():
        assert getattr(c, name).item() == pytest.approx(value, rel=1e-12), name

    g = torch.Generator().manual_seed(0)
    x = sd * torch.randn(4096, 3, 8, 8, generator=g, dtype=torch.float64)
    offset = s_off * torch.randn(4096, 3, 1, 1, generator=g, dtype=torch.float64)
    x_noisy = x + offset + sigma * torch.randn(4096, 3, 8, 8, generator=g, dtype=torch.float64)
    target = (x - c.c_skip * x_noisy) / c.c_out
    assert target.var().item() == pytest.approx(1.0, abs=0.04)
    # The same check catches a c_out without its square root (variance s^2 + sd^2 instead of 1).
    wrong = (x - c.c_skip * x_noisy) / (s * sd / (s**2 + sd**2))
    assert abs(wrong.var().item() - 1) > 0.2


def test_denoise_is_skip_plus_scaled_network_output(denoiser: Denoiser) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 64, 64, generator=g) * 0.3
    ctx = torch.rand(2, 4, 3, 64, 64, generator=g) * 2 - 1
    act = torch.tensor([[0, 1, 2, 3], [3, 3, 0, 1]])
    sigma = torch.tensor([0.05, 0.2])
    with torch.no_grad():
        c = denoiser.conditioners(sigma)
        f = denoiser.net(c.c_in * x, c.c_noise, ctx.flatten(1, 2) / 0.5, act)  # (B, L, C, H, W) -> (B, L*C, H, W)
        want = (c.c_skip * x + c.c_out * f).clamp(-1, 1)
        got = denoiser.denoise(x, sigma, ctx, act)
    assert f.abs().max() > 0.01  # the network really contributes
    torch.testing.assert_close(got, want)
    assert got.min() >= -1 and got.max() <= 1


def test_loss_is_mse_to_edm_target() -> None:
    """Re-draw the loss's own random numbers and recompute MSE(F, (x_next - c_skip x_noisy) / c_out)."""
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(unet=TINY_UNET))  # no context noise, no motion weight
    torch.nn.init.normal_(den.net.conv_out.weight, std=0.05)
    g = torch.Generator().manual_seed(2)
    ctx = torch.rand(2, 4, 3, 64, 64, generator=g) * 2 - 1
    nxt = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    act = torch.tensor([[0, 1, 2, 3], [1, 1, 1, 1]])

    torch.manual_seed(7)
    loss, metrics = den.loss(ctx, act, nxt)

    torch.manual_seed(7)  # same draws, in the same order: sigma, offset noise, noise
    sigma = (torch.randn(2) * 1.2 - 0.4).exp().clip(2e-3, 20)
    offset = 0.3 * torch.randn(2, 3, 1, 1)
    x_noisy = nxt + offset + sigma.view(-1, 1, 1, 1) * torch.randn_like(nxt)
    c = den.conditioners(sigma)
    f = den.net(c.c_in * x_noisy, c.c_noise, ctx.flatten(1, 2) / 0.5, act, torch.zeros(2, dtype=torch.long))
    want = ((f - (nxt - c.c_skip * x_noisy) / c.c_out) ** 2).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert metrics["mse"] == pytest.approx(want.item(), rel=1e-5)


def test_clean_contexts_are_level_zero_in_training_as_in_sampling(monkeypatch) -> None:
    """Without context-noise augmentation (scale 0), training conditions on context-noise level 0,
    the level the sampler always passes; level 0's embedding is learnt, not skipped."""
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(unet=TINY_UNET))
    assert den.cfg.context_noise_scale == 0
    torch.nn.init.normal_(den.net.conv_out.weight, std=0.05)
    torch.nn.init.normal_(den.net.ctx_noise_emb.weight)  # so that level 0 is not the same as no level
    g = torch.Generator().manual_seed(2)
    ctx = torch.rand(2, 4, 3, 64, 64, generator=g) * 2 - 1
    nxt = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    act = torch.tensor([[0, 1, 2, 3], [1, 1, 1, 1]])

    same, level = den.augment_context(ctx)
    assert same is ctx and level.dtype == torch.long and level.tolist() == [0, 0]

    torch.manual_seed(7)
    loss, _ = den.loss(ctx, act, nxt)
    loss.backward()
    grad = den.net.ctx_noise_emb.weight.grad
    assert grad is not None and grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0

    def recomputed(level: torch.Tensor | None) -> float:
        torch.manual_seed(7)  # the loss's draws: sigma, offset noise, noise
        sigma = (torch.randn(2) * 1.2 - 0.4).exp().clip(2e-3, 20)
        x_noisy = nxt + 0.3 * torch.randn(2, 3, 1, 1) + sigma.view(-1, 1, 1, 1) * torch.randn_like(nxt)
        c = den.conditioners(sigma)
        with torch.no_grad():
            f = den.net(c.c_in * x_noisy, c.c_noise, ctx.flatten(1, 2) / 0.5, act, level)
        return ((f - (nxt - c.c_skip * x_noisy) / c.c_out) ** 2).mean().item()

    assert loss.item() == pytest.approx(recomputed(torch.zeros(2, dtype=torch.long)), rel=1e-5)
    assert loss.item() != pytest.approx(recomputed(None), rel=1e-5)

    from model.world_model.sampler import SamplerConfig, sample_next_frame

    levels = []
    denoise = den.denoise
    monkeypatch.setattr(den, "denoise", lambda *a: levels.append(a[4]) or denoise(*a))
    sample_next_frame(den.eval(), ctx, act, SamplerConfig(num_steps=2))
    assert len(levels) == 2 and all(lv.tolist() == [0, 0] for lv in levels)


def test_training_sigma_distribution_is_clipped_lognormal(denoiser: Denoiser) -> None:
    torch.manual_seed(0)
    s = denoiser.sample_sigma(20000, torch.device("cpu"))
    assert s.min() >= 2e-3 and s.max() <= 20
    assert s.log().mean().item() == pytest.approx(-0.4, abs=0.05)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sigma_data": 0.0},
        {"sigma_offset_noise": -0.1},
        {"train_sigma_min": 5.0, "train_sigma_max": 1.0},
        {"context_noise_clean_prob": 1.5},
        {"motion_weight": -1.0},
        {"region_weight": -1.0},
        {"region_weight": 2.0, "region": (4, 0, 0, 64)},
        {"region": (0, 4, 0)},
    ],
)
def test_bad_denoiser_config_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DenoiserConfig(unet=TINY_UNET, **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"num_actions": 0}, {"channels": [12, 16]}, {"channels": []}, {"cond_channels": 66}]
)
def test_bad_unet_config_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        UNetConfig(**kwargs)


def test_frozen_unet_matches_eager_and_is_dropped_by_train(model_factory) -> None:
    """configure() traces and freezes the U-Net for fp32 CPU inference; dreams stay the same and
    training never sees the frozen copy (it would be stale after one optimiser step)."""
    from model.world_model.sampler import SamplerConfig, sample_next_frame

    model = model_factory(3)
    assert model.denoiser._frozen is not None
    g = torch.Generator().manual_seed(0)
    ctx, act = torch.rand(3, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (3, 4), generator=g)
    cfg = SamplerConfig(num_steps=3)
    frozen = sample_next_frame(model.denoiser, ctx, act, cfg, torch.Generator().manual_seed(1))
    model.denoiser.train()
    assert model.denoiser._frozen is None
    model.eval()
    eager = sample_next_frame(model.denoiser, ctx, act, cfg, torch.Generator().manual_seed(1))
    torch.testing.assert_close(frozen, eager, atol=1e-4, rtol=1e-3)
    assert "_frozen" not in "".join(model.state_dict())


def test_context_motion_weight_depends_only_on_the_context() -> None:
    """motion_source='context' weighs pixels by what the model is given, never by the target (a
    target-dependent weight biases the optimum towards drawing motion); 'target' does depend on it."""

    def fractions(source: str) -> tuple[float, float]:
        cfg = DenoiserConfig(
            unet=UNetConfig(channels=[8, 8], blocks_per_level=1, cond_channels=16, attn_middle=False),
            motion_weight=8.0,
            motion_source=source,
        )
        den = Denoiser(cfg)
        g = torch.Generator().manual_seed(0)
        ctx = torch.full((1, 4, 3, 64, 64), -1.0)
        ctx[:, -2, :, 10:12, 10:12] = 1.0  # a ball that moved between the last two context frames
        ctx[:, -1, :, 12:14, 12:14] = 1.0
        act = torch.zeros(1, 4, dtype=torch.long)
        empty, ball_far = torch.full((1, 3, 64, 64), -1.0), torch.full((1, 3, 64, 64), -1.0)
        ball_far[:, :, 50:52, 50:52] = 1.0
        out = []
        for target in (empty, ball_far):
            torch.manual_seed(int(torch.randint(0, 100, (1,), generator=g)))
            out.append(den.loss(ctx, act, target)[1]["motion_fraction"])
        return out[0], out[1]

    a, b = fractions("context")
    assert a == b > 0  # the same weight whatever the target
    a, b = fractions("target")
    assert a != b
    with pytest.raises(ValueError, match="motion_source"):
        DenoiserConfig(motion_source="prediction")


def test_context_motion_weight_also_covers_what_the_model_draws() -> None:
    """With motion_on_prediction, the 'context' weight also covers the pixels where the model's own
    estimate moves (a ball it considers serving), and still never the target's: the same estimate
    gives the same weight whatever the target holds."""
    cfg = DenoiserConfig(
        unet=UNetConfig(channels=[8, 8], blocks_per_level=1, cond_channels=16, attn_middle=False),
        motion_weight=8.0,
        motion_source="context",
        motion_on_prediction=True,
    )
    den = Denoiser(cfg)
    ctx = torch.full((1, 4, 3, 64, 64), -1.0)  # a still, empty field
    act = torch.zeros(1, 4, dtype=torch.long)

    def draws_a_ball(x_noisy, c, ctx_, act_, level, reward=None):  # estimate = last context frame + a ball
        f = (ctx_[:, -1] - c.c_skip * x_noisy) / c.c_out
        f[:, :, 40:42, 40:42] += 2.5 / c.c_out.view(-1, 1, 1)
        return f

    den._net = draws_a_ball
    empty, ball_far = torch.full((1, 3, 64, 64), -1.0), torch.full((1, 3, 64, 64), -1.0)
    ball_far[:, :, 10:12, 50:52] = 1.0
    metrics = [den.loss(ctx, act, target)[1] for target in (empty, ball_far)]
    assert metrics[0]["motion_predicted_only"] > 0  # the drawn ball is weighted
    assert metrics[0]["motion_fraction"] == metrics[1]["motion_fraction"] == metrics[0]["motion_predicted_only"]
    den.cfg.motion_on_prediction = False
    assert "motion_predicted_only" not in den.loss(ctx, act, empty)[1]


def test_region_weight_is_a_fixed_box_whatever_the_target() -> None:
    """region_weight adds a weight on a fixed box (a game's score): the same for every target and
    context (so the optimum stays the conditional mean), 1 elsewhere, and the weighted mean of a
    uniform error is that error."""
    cfg = DenoiserConfig(unet=TINY_UNET, region_weight=9.0, region=(0, 4, 8, 64))
    den = Denoiser(cfg)
    g = torch.Generator().manual_seed(0)
    weights = []
    for _ in range(2):
        ctx, target = torch.rand(2, 4, 3, 64, 64, generator=g) * 2 - 1, torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
        weights.append(den.loss_weight(ctx, target, target, {}))
    w = weights[0]
    assert w.shape == (2, 1, 64, 64) and torch.equal(weights[0], weights[1])
    assert (w[:, :, :4, 8:] == 10).all() and (w[:, :, 4:] == 1).all() and (w[:, :, :, :8] == 1).all()
    loss, _ = den.weighted(torch.full((2, 3, 64, 64), 0.25), ctx, target, target)
    assert loss.item() == pytest.approx(0.25)
    assert Denoiser(DenoiserConfig(unet=TINY_UNET)).loss_weight(ctx, target, target, {}) is None


def test_fp32_output_layer_keeps_the_frame_out_of_bf16_rounding() -> None:
    """Under bf16 autocast the output layer rounds a frame-sized output by up to a quarter of a grey
    level; with `fp32_output` the same weights give the fp32 output layer's result on the same
    (bf16) features, so the output is not on bf16's grid and is nearer the fp32 network's."""
    from dataclasses import replace

    from model.world_model.unet import UNet

    torch.manual_seed(0)
    net = UNet(TINY_UNET).eval()
    torch.nn.init.normal_(net.conv_out.weight, std=0.5)  # outputs of magnitude ~1, as a whole frame
    exact = UNet(replace(TINY_UNET, fp32_output=True)).eval()
    exact.load_state_dict(net.state_dict())
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 3, 64, 64, generator=g), torch.rand(2, 12, 64, 64, generator=g) * 2 - 1
    args = (x, torch.full((2,), 0.4), ctx, torch.randint(0, 4, (2, 4), generator=g))
    with torch.no_grad():
        ref = net(*args)  # fp32 throughout
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded, kept = net(*args), exact(*args)
    assert rounded.dtype == torch.bfloat16 and kept.dtype == torch.float32
    on_grid = (kept.to(torch.bfloat16).float() == kept).float().mean()
    assert on_grid < 0.05, on_grid  # bf16 output would be on the grid everywhere
    assert ((kept - ref) ** 2).mean() < ((rounded.float() - ref) ** 2).mean()


def _bf16_model(fp32_output: bool = False):
    from dataclasses import replace

    from model.world_model.core import WorldModel, preset_config

    torch.manual_seed(0)
    cfg = preset_config("tiny", "Breakout", ["NOOP", "FIRE", "RIGHT", "LEFT"])
    cfg.denoiser.unet = replace(cfg.denoiser.unet, fp32_output=fp32_output)
    model = WorldModel(cfg)
    for m in model.denoiser.net.modules():  # weights as a trained model has them: nothing zero
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.normal_(m.weight, std=1.5 / m.weight[0].numel() ** 0.5)
            torch.nn.init.normal_(m.bias, std=0.1)
    return model


@pytest.mark.parametrize("fp32_output,batch", [(False, 3), (True, 3), (False, 1)])
def test_bf16_inference_copy_matches_the_network_under_autocast(fp32_output: bool, batch: int) -> None:
    """The torch-fused backend dreams with `inference_copy` (bf16 weights, the adaptive norms' linears
    fused with the 1 of 1 + scale in their bias; at batch 1 the (1 + scale, shift) passed to group_norm
    as its affine; batch 1 through a frozen trace of the copy): the same function as the eager network
    under autocast, up to where bf16 rounds (both as near the fp32 network), and `train()` drops it.
    It is opt-in: configure() in bf16 alone keeps the eager network."""
    from model.world_model.sampler import SamplerConfig, sample_next_frame
    from model.world_model.unet import AdaGroupNorm, BatchOneTrace, UNet

    assert _bf16_model(fp32_output).configure(torch.device("cpu"), "bf16").denoiser._frozen is None
    model = _bf16_model(fp32_output).configure(torch.device("cpu"), "bf16", backend="torch-fused")
    assert model.backend == "torch-fused"
    den = model.denoiser
    assert isinstance(den._frozen, BatchOneTrace) and den._frozen.under_autocast
    fast = den._frozen.fast
    assert isinstance(fast, UNet) and isinstance(den._frozen.one, torch.jit.ScriptModule)
    assert all(not hasattr(m, "linear") for m in fast.modules() if isinstance(m, AdaGroupNorm))
    layers = [m for m in fast.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m is not fast.conv_out]
    assert {p.dtype for m in layers for p in m.parameters()} == {torch.bfloat16}
    assert fast.conv_out.weight.dtype == (torch.float32 if fp32_output else torch.bfloat16)

    g = torch.Generator().manual_seed(0)
    ctx, act = torch.rand(batch, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (batch, 4), generator=g)
    cfg = SamplerConfig(num_steps=1)  # one call: the frame is c_out F, so F's errors show whole
    with torch.no_grad():
        ref = sample_next_frame(den, ctx, act, cfg, torch.Generator().manual_seed(1))  # fp32, eager
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast_frame = sample_next_frame(den, ctx, act, cfg, torch.Generator().manual_seed(1))
            den.use_inference_net(None)
            eager_frame = sample_next_frame(den, ctx, act, cfg, torch.Generator().manual_seed(1))
    err_fast, err_eager = ((f - ref).pow(2).mean().sqrt().item() for f in (fast_frame, eager_frame))
    assert err_eager > 0  # bf16 rounds somewhere
    assert err_fast < 2 * err_eager, (err_fast, err_eager)  # dropping the fused 1 + scale: 100x off
    den.freeze_bf16()
    assert den._frozen is not None
    den.train()
    assert den._frozen is None
    assert not any("cond_table" in k for k in model.state_dict())


def test_bf16_inference_copy_is_not_used_outside_autocast_and_keeps_its_weights() -> None:
    """The copy runs only under autocast (an fp32 call takes the eager network, whose weights are
    fp32), and a later change to the network does not reach it (it is a copy, dropped by train())."""
    from model.world_model.sampler import SamplerConfig, sample_next_frame

    model = _bf16_model().configure(torch.device("cpu"), "bf16", backend="torch-fused")
    den = model.denoiser
    g = torch.Generator().manual_seed(0)
    ctx, act = torch.rand(2, 4, 3, 64, 64, generator=g) * 2 - 1, torch.randint(0, 4, (2, 4), generator=g)
    cfg = SamplerConfig(num_steps=2)
    with torch.no_grad():
        fp32 = sample_next_frame(den, ctx, act, cfg, torch.Generator().manual_seed(1))
        den.use_inference_net(None)
        eager = sample_next_frame(den, ctx, act, cfg, torch.Generator().manual_seed(1))
        assert torch.equal(fp32, eager)  # outside autocast the copy was not called
        den.freeze_bf16()
        before = den._frozen.fast.conv_in.weight.clone()
        den.net.conv_in.weight.add_(1.0)
        assert torch.equal(den._frozen.fast.conv_in.weight, before)


def test_batch_one_trace_runs_batch_one_only_and_computes_the_copy() -> None:
    """`BatchOneTrace`: batch-1 calls go to the frozen trace, which computes what the copy does (to
    bf16 rounding); other batches go to the copy itself, whose batch-1 path the trace cannot run
    (it fails loudly there instead of returning a wrong frame); a batch-2 example is refused."""
    from model.world_model.unet import BatchOneTrace

    den = _bf16_model().configure(torch.device("cpu"), "bf16", backend="torch-fused").denoiser
    wrapper, u = den._frozen, den.cfg.unet
    g = torch.Generator().manual_seed(3)

    def inputs(b: int) -> tuple[torch.Tensor, ...]:
        return (
            torch.randn(b, 3, 64, 64, generator=g).contiguous(memory_format=torch.channels_last),
            torch.randn(b, generator=g),
            torch.randn(b, u.context_frames * 3, 64, 64, generator=g).contiguous(memory_format=torch.channels_last),
            torch.randint(0, u.num_actions, (b, u.context_frames), generator=g),
            torch.zeros(b, dtype=torch.long),
        )

    one, three = inputs(1), inputs(3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        traced, copy_out = wrapper(*one).float(), wrapper.fast(*one).float()
        assert torch.equal(wrapper(*three), wrapper.fast(*three))  # batch 3: the copy itself
        with pytest.raises(RuntimeError):
            wrapper.one(*three)
    rel = ((traced - copy_out).pow(2).mean().sqrt() / copy_out.pow(2).mean().sqrt()).item()
    assert rel < 0.02, rel  # bf16 rounding apart; a wrong graph is off by its whole output
    with pytest.raises(ValueError, match="batch-1 example"):
        BatchOneTrace(wrapper.fast, inputs(2))


@pytest.mark.parametrize("batch", [1, 3])
def test_fused_conditioning_at_batch_one_is_cast_once_to_the_same_numbers(batch: int) -> None:
    """At batch 1 the copy's conditioning table is cast to fp32 once (`FusedConditioning`): the norms
    pass it to group_norm as its affine, which autocast casts to fp32 anyway, so the copy computes
    exactly what it did with the bf16 product cast per norm. Larger batches keep the bf16 product."""
    from model.world_model.unet import inference_copy

    den = _bf16_model().denoiser
    fast = inference_copy(den.net)
    table = fast.cond_table
    args = den._example_inputs(batch, 5)
    g = torch.Generator().manual_seed(5)

    def bf16_product(cond: torch.Tensor) -> dict:  # the product as the linear gives it under autocast
        parts = table.linear(cond)[:, :, None, None].split(table.sizes, dim=1)
        return {n: p.chunk(2, dim=1) for n, p in zip(table.norms, parts, strict=True)}

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cond = torch.randn(batch, table.linear.in_features, generator=g)
        want = torch.float32 if batch == 1 else torch.bfloat16
        assert {p.dtype for pair in table(cond).values() for p in pair} == {want}
        once = fast(*args)
        table.forward = bf16_product  # the instance's forward: the product in bf16, as before
        per_norm = fast(*args)
    assert torch.equal(once, per_norm)


def test_arithmetic_names_the_revision_of_a_backend_whose_rounding_changed() -> None:
    """Figures measured on torch-fused before its batch-1 trace rounded elsewhere: the path's
    revision is part of the arithmetic a result records, so a card from before is not reused for it;
    the torch path, unchanged, records none (its cards still match)."""
    from model.device import arithmetic_info
    from model.world_model.onnx_backend import BACKEND_REVISIONS

    fused = _bf16_model().configure(torch.device("cpu"), "bf16", backend="torch-fused")
    assert fused.backend == "torch-fused"
    assert arithmetic_info(fused)["backend_revision"] == BACKEND_REVISIONS["torch-fused"] >= 2
    assert "backend_revision" not in arithmetic_info(_bf16_model().configure(torch.device("cpu"), "bf16"))


def test_torch_fused_on_an_fp32_model_stays_with_torch() -> None:
    """An fp32 model (no fast bf16 here, or --precision fp32) keeps its frozen graph: torch-fused
    says it runs torch rather than running a bf16 copy outside autocast."""
    model = _bf16_model().configure(torch.device("cpu"), "fp32", backend="torch-fused")
    assert model.backend == "torch" and not getattr(model.denoiser._frozen, "under_autocast", False)
