"""The Diffusion Policy baseline: schedule, loss, a reverse chain that is reproducible per episode and
independent of its batch, save -> load -> identical actions, and a fit that keeps two modes apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import CheckpointError
from model.dbc.core import act
from model.dbc.diffusion_policy import (
    DiffusionPolicy,
    DiffusionPolicyConfig,
    cosine_beta_schedule,
    load_diffusion_policy,
    save_diffusion_policy,
)


def test_cosine_schedule() -> None:
    betas = cosine_beta_schedule(100)
    assert betas.shape == (100,) and torch.all(betas > 0) and torch.all(betas <= 0.999)
    assert torch.all(betas[1:] >= betas[:-1])  # noise grows along the chain
    abar = torch.cumprod(1 - betas, 0)
    assert abar[0] > 0.999 and abar[-1] < 1e-3  # from (almost) clean to (almost) pure noise


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        DiffusionPolicyConfig(num_steps=1)
    with pytest.raises(ValueError):
        DiffusionPolicyConfig(time_dim=7)


def test_loss_and_sampling_contract(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = DiffusionPolicyConfig(obs_dim=5, action_dim=3, hidden=32, layers=2, num_steps=10)
    pol = DiffusionPolicy(cfg).eval()
    obs, a = torch.randn(8, 5), torch.rand(8, 3) * 2 - 1
    loss = pol.loss(obs, a, torch.Generator().manual_seed(0))
    assert loss.shape == (8,) and torch.all(loss >= 0)
    noise = torch.randn(8, 10, 3, generator=torch.Generator().manual_seed(1))
    actions = pol.sample(obs, noise)
    assert actions.shape == (8, 3) and float(actions.abs().max()) <= 1.0 + 1e-6
    assert torch.equal(pol.sample(obs, noise), actions)  # the noise is the only randomness
    assert torch.allclose(pol.sample(obs[2:5], noise[2:5]), actions[2:5], atol=1e-6)  # batch-independent
    assert act(pol, obs)[0].shape == (8, 3)  # model.dbc.core.act treats it as a continuous policy
    save_diffusion_policy(tmp_path / "dp", pol, {"task": "maze", "algo": "diffusion_policy", "seed": 0})
    loaded, meta = load_diffusion_policy(tmp_path / "dp", task="maze")
    assert meta["algo"] == "diffusion_policy" and torch.equal(loaded.sample(obs, noise), actions)
    with pytest.raises(CheckpointError):
        load_diffusion_policy(tmp_path / "dp", task="fetch")


def test_fit_keeps_two_modes_apart() -> None:
    """State 0: the expert goes -0.8 or +0.8 (half each); state 1: always +0.5. A regression to the mean
    (BC's MSE) would answer 0 in state 0; the diffusion policy samples near the two modes."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pol = DiffusionPolicy(DiffusionPolicyConfig(obs_dim=1, action_dim=1, hidden=64, layers=2, num_steps=20))
    s = torch.cat([torch.zeros(512, 1), torch.ones(512, 1)])
    a = torch.cat([0.8 * (torch.randint(0, 2, (512, 1), generator=g) * 2 - 1), torch.full((512, 1), 0.5)])
    pol.obs_norm.fit(s)
    opt = torch.optim.Adam(pol.parameters(), lr=3e-3)
    for _ in range(600):
        idx = torch.randint(0, len(s), (256,), generator=g)
        loss = pol.loss(s[idx], a[idx], g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pol.eval()
    draws = pol.sample(torch.zeros(400, 1), torch.randn(400, 20, 1, generator=g))[:, 0]
    assert (draws.abs() < 0.3).float().mean() < 0.1  # hardly any draw at the mean
    assert 0.25 < (draws > 0).float().mean() < 0.75  # both modes
    assert (draws.abs() - 0.8).abs().median() < 0.15
    ones = pol.sample(torch.ones(100, 1), torch.randn(100, 20, 1, generator=g))[:, 0]
    assert (ones - 0.5).abs().median() < 0.1
