"""The DBC objective: zero at the expert, clamp behaviour, the discrete expectation's exact gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.dbc.core import (
    DiffusionConfig,
    JointDiffusion,
    MLPPolicy,
    PolicyConfig,
    dbc_loss_continuous,
    dbc_loss_discrete,
    sigmoid_beta_schedule,
)
from model.dbc.ensemble import EnsembleMLPPolicy


def make_phi(discrete: bool = False, state_dim: int = 6, action_dim: int = 2) -> JointDiffusion:
    torch.manual_seed(0)
    phi = JointDiffusion(
        DiffusionConfig(state_dim=state_dim, action_dim=action_dim, discrete=discrete, hidden=32, layers=2)
    )
    return phi.requires_grad_(False)


def test_schedule_is_the_papers() -> None:
    betas = sigmoid_beta_schedule(1000, 1e-4, 0.02)
    assert betas.shape == (1000,)
    assert 1e-4 < betas[0] < 2e-4 and 0.0199 < betas[-1] < 0.02  # sigmoid(+-6) ends
    assert torch.all(betas[1:] > betas[:-1])


def test_continuous_loss_is_zero_at_the_expert_action() -> None:
    phi = make_phi()
    s, a = torch.randn(16, 6), torch.rand(16, 2) * 2 - 1
    for clamp in ("batch", "sample"):
        loss = dbc_loss_continuous(a.clone().requires_grad_(True), a, s, phi, 30.0, clamp)
        assert loss.bc.item() == 0 and loss.dm.item() == 0 and loss.total.item() == 0
        assert torch.allclose(loss.agent, loss.expert)


def test_clamp_batch_and_sample() -> None:
    phi = make_phi()
    g = torch.Generator().manual_seed(1)
    s, a_exp = torch.randn(32, 6, generator=g), torch.rand(32, 2, generator=g) * 2 - 1
    a_pi = (a_exp + torch.randn(32, 2, generator=g)).requires_grad_(True)
    n, eps = phi.sample_noise(32, torch.device("cpu"), g)
    l_agent = phi.eps_loss(phi.joint(s, phi.encode_action(a_pi)), n, eps)
    l_expert = phi.eps_loss(phi.joint(s, phi.encode_action(a_exp)), n, eps)
    batch = dbc_loss_continuous(a_pi, a_exp, s, phi, 1.0, "batch", noise=(n, eps))
    sample = dbc_loss_continuous(a_pi, a_exp, s, phi, 1.0, "sample", noise=(n, eps))
    assert torch.allclose(batch.dm, torch.relu(l_agent.mean() - l_expert.mean()))
    assert torch.allclose(sample.dm, torch.relu(l_agent - l_expert).mean())
    assert sample.dm >= batch.dm - 1e-7  # mean relu >= relu mean
    assert torch.allclose(batch.total, F.mse_loss(a_pi, a_exp) + batch.dm)
    # Swap the roles so the margin is negative: the clamp gives zero loss and zero gradient.
    diff = (l_agent - l_expert).mean()
    worse, better = (a_pi, a_exp) if diff > 0 else (a_exp, a_pi)
    x = better.detach().clone().requires_grad_(True)
    clamped = dbc_loss_continuous(x, worse.detach(), s, phi, 1.0, "batch", noise=(n, eps))
    assert clamped.dm.item() == 0
    clamped.dm.backward()
    assert x.grad is None or torch.all(x.grad == 0)


def test_bc_is_lambda_zero() -> None:
    a_pi, a = torch.randn(8, 2), torch.randn(8, 2)
    loss = dbc_loss_continuous(a_pi, a, torch.randn(8, 6), make_phi(), 0.0)
    assert torch.allclose(loss.total, F.mse_loss(a_pi, a)) and loss.dm.item() == 0


def brute_force_dm(logits: torch.Tensor, a_exp: torch.Tensor, s: torch.Tensor, phi: JointDiffusion, n, eps):
    """sum_k pi_k l_k - l_E with one phi call per (sample, action): the definition, written out."""
    probs = logits.softmax(-1)
    terms = []
    for b in range(s.shape[0]):
        lk = []
        for k in range(logits.shape[-1]):
            x0 = phi.joint(s[b : b + 1], phi.encode_action(torch.tensor([k])))
            lk.append(phi.eps_loss(x0, n[b : b + 1], eps[b : b + 1])[0])
        lk = torch.stack(lk)
        terms.append(torch.relu((probs[b] * lk).sum() - lk[a_exp[b]]))
    return torch.stack(terms).mean()


def test_discrete_expectation_gradient_matches_brute_force_and_finite_differences() -> None:
    phi = make_phi(discrete=True, state_dim=5, action_dim=4).double()
    g = torch.Generator().manual_seed(3)
    B = 6
    s = torch.randn(B, 5, generator=g, dtype=torch.float64)
    a_exp = torch.randint(0, 4, (B,), generator=g)
    n, eps = phi.sample_noise(B, torch.device("cpu"), g)
    eps = eps.double()
    logits = torch.randn(B, 4, generator=g, dtype=torch.float64, requires_grad=True)
    fast = dbc_loss_discrete(logits, a_exp, s, phi, 1.0, noise=(n, eps))
    (grad_fast,) = torch.autograd.grad(fast.dm, logits)
    slow = brute_force_dm(logits, a_exp, s, phi, n, eps)
    (grad_slow,) = torch.autograd.grad(slow, logits)
    assert torch.allclose(fast.dm, slow, atol=1e-10)
    assert torch.allclose(grad_fast, grad_slow, atol=1e-10)
    # Central finite differences on every logit.
    h, fd = 1e-6, torch.zeros_like(logits)
    with torch.no_grad():
        for i in range(B):
            for k in range(4):
                lp, lm = logits.clone(), logits.clone()
                lp[i, k] += h
                lm[i, k] -= h
                fp = dbc_loss_discrete(lp, a_exp, s, phi, 1.0, noise=(n, eps)).dm
                fm = dbc_loss_discrete(lm, a_exp, s, phi, 1.0, noise=(n, eps)).dm
                fd[i, k] = (fp - fm) / (2 * h)
    assert torch.allclose(grad_fast, fd, atol=1e-6)
    assert grad_fast.abs().sum() > 0  # some margins are positive: the check is not vacuous


def test_discrete_loss_is_zero_when_the_policy_picks_the_expert_action() -> None:
    phi = make_phi(discrete=True, state_dim=5, action_dim=4)
    s, a = torch.randn(10, 5), torch.randint(0, 4, (10,))
    logits = F.one_hot(a, 4).float() * 100
    loss = dbc_loss_discrete(logits, a, s, phi, 5.0)
    assert loss.dm.item() < 1e-6 and loss.bc.item() < 1e-6


def test_ensemble_members_are_independent_mlp_policies() -> None:
    cfg = PolicyConfig(obs_dim=6, action_dim=2, hidden=16, layers=2)
    ens = EnsembleMLPPolicy(cfg, [0, 1, 7])
    torch.manual_seed(7)
    single = MLPPolicy(cfg)
    obs = torch.randn(3, 5, 6)
    out = ens(obs)
    assert torch.allclose(out[2], single(obs[2]), atol=1e-6)
    assert torch.allclose(out[1], ens.member(1)(obs[1]), atol=1e-6)
    # Per-member clipping: scaling member 0's loss does not change member 1's gradient.
    out.pow(2).sum().backward()
    g1 = [p.grad[1].clone() for p in ens.parameters() if p.requires_grad and p.grad is not None]
    ens.zero_grad()
    (ens(obs) * torch.tensor([100.0, 1.0, 1.0])[:, None, None]).pow(2).sum().backward()
    ens.clip_grad_norm_(1e9)
    g1b = [p.grad[1] for p in ens.parameters() if p.requires_grad and p.grad is not None]
    assert all(torch.allclose(a, b) for a, b in zip(g1, g1b, strict=True))
