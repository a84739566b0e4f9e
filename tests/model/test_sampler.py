"""Karras schedule and Euler / Heun sampling."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from model.world_model.sampler import SamplerConfig, karras_sigmas, keep_still, sample_next_frame


def test_schedule_n3_matches_paper() -> None:
    sigmas = karras_sigmas(3, 2e-3, 5.0, 7.0)
    assert [round(s, 4) for s in sigmas] == [5.0, 0.2831, 0.002, 0.0]


def test_schedule_n1_is_sigma_max_then_zero() -> None:
    assert karras_sigmas(1, 2e-3, 5.0, 7.0) == (5.0, 0.0)


def test_schedule_is_decreasing_and_ends_at_zero() -> None:
    for n in (2, 5, 10):
        s = karras_sigmas(n, 2e-3, 5.0, 7.0)
        assert len(s) == n + 1 and s[-1] == 0.0
        assert s[0] == pytest.approx(5.0) and s[-2] == pytest.approx(2e-3)
        assert all(a > b for a, b in pairwise(s))


def test_schedule_is_cached_per_step_count() -> None:
    a = karras_sigmas(4, 2e-3, 5.0, 7.0)
    hits = karras_sigmas.cache_info().hits
    assert karras_sigmas(4, 2e-3, 5.0, 7.0) is a
    assert karras_sigmas.cache_info().hits == hits + 1
    assert karras_sigmas(5, 2e-3, 5.0, 7.0) != a  # each N has its own schedule


def _inputs(b: int = 2):
    g = torch.Generator().manual_seed(0)
    ctx = torch.rand(b, 4, 3, 64, 64, generator=g) * 2 - 1
    return ctx, torch.zeros(b, 4, dtype=torch.long)


# Karras sigmas for 5 steps: 5, 1.38, 0.28, 0.036, 0.002: Heun corrects only the step that ends at
# 1.38 (>= s_off = 0.3); for 3 steps (5, 0.28, 0.002) and 2 steps it is Euler.
@pytest.mark.parametrize(("steps", "order", "nfe"), [(1, 1, 1), (3, 1, 3), (5, 2, 6), (3, 2, 3), (2, 2, 2)])
def test_network_evaluations_per_frame(tiny_model, count_denoise_calls, steps: int, order: int, nfe: int) -> None:
    """Euler: N evaluations; Heun: one more per step that ends at sigma >= s_off (see sample_next_frame)."""
    calls = count_denoise_calls(tiny_model)
    ctx, act = _inputs()
    out = sample_next_frame(tiny_model.denoiser, ctx, act, SamplerConfig(num_steps=steps, order=order))
    assert calls[0] == nfe
    assert out.shape == (2, 3, 64, 64) and out.min() >= -1 and out.max() <= 1


def test_one_euler_step_returns_the_denoised_estimate(tiny_model) -> None:
    """With N = 1, x + (x - D(x)) / s_max * (0 - s_max) = D(x): the sampler returns D at sigma_max."""
    ctx, act = _inputs()
    out = sample_next_frame(tiny_model.denoiser, ctx, act, SamplerConfig(num_steps=1), torch.Generator().manual_seed(3))
    x0 = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 5.0
    with torch.no_grad():
        d = tiny_model.denoiser.denoise(x0, torch.full((2,), 5.0), ctx, act, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(out, d)


def test_fixed_generator_gives_identical_samples(tiny_model) -> None:
    ctx, act = _inputs()
    cfg = SamplerConfig(num_steps=2)
    a = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, torch.Generator().manual_seed(5))
    b = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, torch.Generator().manual_seed(5))
    c = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("order", [1, 2])
def test_given_initial_noise_replaces_the_generator(tiny_model, order: int) -> None:
    """Pre-drawn initial noise (per server session) gives what the generator would have: the
    Euler and Heun steps draw nothing more."""
    ctx, act = _inputs()
    cfg = SamplerConfig(num_steps=5, order=order)
    by_gen = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, torch.Generator().manual_seed(5))
    noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    a = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, noise=noise)
    torch.manual_seed(1)  # the global generator plays no part either
    b = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, noise=noise)
    assert torch.equal(a, by_gen) and torch.equal(a, b)
    with pytest.raises(ValueError, match="noise"):
        sample_next_frame(tiny_model.denoiser, ctx, act, cfg, noise=noise[:1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_steps": 0},
        {"num_steps": 51},
        {"order": 3},
        {"sigma_min": 0.0},
        {"sigma_min": 6.0, "sigma_max": 5.0},
        {"still_band": -1.0},
        {"still_band": 255.0},
    ],
)
def test_bad_sampler_config_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SamplerConfig(**kwargs)


def test_action_guidance_contrasts_the_action_with_noop(tiny_model, count_denoise_calls) -> None:
    """One Euler step returns the guided estimate D(a) + g (D(a) - D(NOOP)) for the dream whose
    action is not NOOP, and D(NOOP) unchanged for the one that is (no extra evaluation for it): one
    network call of 3 rows, the reference riding in the dreams' batch."""
    ctx, act = _inputs()
    act[0, -1] = 1  # dream 0 acts (FIRE), dream 1 does nothing
    cfg = SamplerConfig(num_steps=1, action_guidance=2.0)
    calls = count_denoise_calls(tiny_model)
    out = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, torch.Generator().manual_seed(3))
    assert calls == [1, 3]
    x0 = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 5.0
    s, lvl = torch.full((2,), 5.0), torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        d_act = tiny_model.denoiser.denoise(x0, s, ctx, act, lvl)
        d_noop = tiny_model.denoiser.denoise(x0, s, ctx, torch.zeros_like(act), lvl)
    assert not torch.allclose(d_act[0], d_noop[0])  # the contrast is not trivially zero
    torch.testing.assert_close(out[0], (d_act[0] + 2.0 * (d_act[0] - d_noop[0])).clamp(-1, 1))
    torch.testing.assert_close(out[1], d_noop[1].clamp(-1, 1))


def test_guidance_reference_contrasts_every_other_action_with_it(tiny_model, count_denoise_calls) -> None:
    """guidance_reference r (here FIRE, 1): every dream is guided, the one acting r against NOOP and
    the others, NOOP included, against r: D(a) + g (D(a) - D(r)); an extra row for every dream."""
    ctx, act = _inputs(3)
    act[0, -1], act[1, -1], act[2, -1] = 1, 0, 2  # FIRE, NOOP, RIGHT
    cfg = SamplerConfig(num_steps=1, action_guidance=2.0, guidance_reference=1)
    calls = count_denoise_calls(tiny_model)
    out = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, torch.Generator().manual_seed(3))
    assert calls == [1, 6]
    x0 = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 5.0
    s, lvl = torch.full((3,), 5.0), torch.zeros(3, dtype=torch.long)

    def d(last: int) -> torch.Tensor:
        a = act.clone()
        a[:, -1] = last
        with torch.no_grad():
            return tiny_model.denoiser.denoise(x0, s, ctx, a, lvl)

    d_noop, d_fire, d_right = d(0), d(1), d(2)
    assert not torch.allclose(d_noop[1], d_fire[1])  # the contrast is not trivially zero
    torch.testing.assert_close(out[0], (d_fire[0] + 2.0 * (d_fire[0] - d_noop[0])).clamp(-1, 1))
    torch.testing.assert_close(out[1], (d_noop[1] + 2.0 * (d_noop[1] - d_fire[1])).clamp(-1, 1))
    torch.testing.assert_close(out[2], (d_right[2] + 2.0 * (d_right[2] - d_fire[2])).clamp(-1, 1))


def test_guidance_reference_names_an_action_of_the_game(tiny_model) -> None:
    """Given to `WorldModel.sampler_config` by name or index; one the game does not have is refused
    with the game's actions named; a negative index by the config itself."""
    assert tiny_model.sampler_config(guidance_reference="FIRE").guidance_reference == 1
    assert tiny_model.sampler_config(guidance_reference="fire").guidance_reference == 1
    assert tiny_model.sampler_config(guidance_reference="3").guidance_reference == 3
    with pytest.raises(ValueError, match="'JUMP' is not an action of Breakout: NOOP, FIRE, RIGHT, LEFT"):
        tiny_model.sampler_config(guidance_reference="JUMP")
    with pytest.raises(ValueError, match="4 is not an action of Breakout"):
        tiny_model.sampler_config(guidance_reference=4)
    with pytest.raises(ValueError, match="action index >= 0"):
        SamplerConfig(guidance_reference=-1)


def test_guidance_of_many_dreams_takes_two_calls_and_gives_the_same_frames(tiny_model, count_denoise_calls) -> None:
    """Above ONE_CALL_ROWS rows (dreams + references) the guided step is two network calls; the
    frames are those the same dreams get a few at a time, in one call each."""
    from model.world_model.sampler import ONE_CALL_ROWS

    b = ONE_CALL_ROWS // 2 + 1
    ctx, act = _inputs(b)
    act[:, -1] = torch.arange(b) % 4
    cfg = SamplerConfig(num_steps=1, action_guidance=2.0, guidance_reference=1)
    noise = torch.randn(b, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    calls = count_denoise_calls(tiny_model)
    many = sample_next_frame(tiny_model.denoiser, ctx, act, cfg, noise=noise)
    assert calls == [2, 2 * b]
    few = torch.cat(
        [
            sample_next_frame(tiny_model.denoiser, ctx[i : i + 2], act[i : i + 2], cfg, noise=noise[i : i + 2])
            for i in range(0, b, 2)
        ]
    )
    assert calls[0] == 2 + (b + 1) // 2  # one call for each pair
    torch.testing.assert_close(many, few, atol=1e-5, rtol=1e-5)


def test_action_guidance_only_at_high_noise(tiny_model, count_denoise_calls) -> None:
    """guidance_sigma 1.0 with 3 Euler steps (5, 0.28, 0.002): only the first step is guided."""
    ctx, act = _inputs()
    act[:, -1] = 2
    calls = count_denoise_calls(tiny_model)
    sample_next_frame(tiny_model.denoiser, ctx, act, SamplerConfig(action_guidance=1.0, guidance_sigma=1.0))
    assert calls == [3, 2 * 2 + 2 + 2]  # the first step evaluates each dream and its reference
    off = sample_next_frame(tiny_model.denoiser, ctx, act, SamplerConfig(), torch.Generator().manual_seed(1))
    zero = sample_next_frame(
        tiny_model.denoiser, ctx, act, SamplerConfig(action_guidance=0.0), torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(off, zero)


@pytest.mark.parametrize("bad", [{"action_guidance": -1.0}, {"guidance_sigma": -0.5}])
def test_sampler_rejects_negative_guidance(bad: dict) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        SamplerConfig(**bad)


def test_still_band_keeps_a_pixel_only_where_every_channel_moved_less() -> None:
    """One grey level is 2/255 in [-1, 1]. Band 2: a pixel moved by 1 level in every channel goes
    back to the last frame's value; one moved by 3 levels in a single channel keeps the dream's."""
    last = torch.zeros(1, 3, 2, 2)
    dream = last.clone()
    level = 2 / 255
    dream[0, :, 0, 0] = level  # 1 level in every channel: kept still
    dream[0, 1, 0, 1] = 3 * level  # 3 levels in one channel: drawn
    dream[0, :, 1, 0] = torch.tensor([level, level, -3 * level])  # one channel over the band: drawn
    out = keep_still(dream, last, 2.0)
    assert torch.equal(out[0, :, 0, 0], last[0, :, 0, 0])
    assert torch.equal(out[0, :, 0, 1], dream[0, :, 0, 1]) and torch.equal(out[0, :, 1, 0], dream[0, :, 1, 0])
    assert torch.equal(out[0, :, 1, 1], last[0, :, 1, 1])  # unchanged either way


def test_still_band_in_the_sampler(tiny_model) -> None:
    """Band 0 is the sampler as it was; a band sets back to the last context frame exactly the
    pixels the unbanded dream moved by less than it, from the same noise, and no others."""
    ctx, act = _inputs()
    noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    plain = sample_next_frame(tiny_model.denoiser, ctx, act, SamplerConfig(num_steps=2), noise=noise)
    off = sample_next_frame(tiny_model.denoiser, ctx, act, SamplerConfig(num_steps=2, still_band=0.0), noise=noise)
    assert torch.equal(plain, off)
    band = 40.0  # the untrained tiny model's frames are far from its random context: some pixels fall in it
    banded = sample_next_frame(tiny_model.denoiser, ctx, act, SamplerConfig(num_steps=2, still_band=band), noise=noise)
    still = ((plain - ctx[:, -1]).abs() * 127.5 < band).all(1, keepdim=True).expand_as(plain)
    assert 0 < still.float().mean() < 1
    assert torch.equal(banded[still], ctx[:, -1][still]) and torch.equal(banded[~still], plain[~still])
