"""Lambda-returns and the actor-critic loss against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from model.agent.actor_critic import (
    ActorCriticLossConfig,
    actor_critic_loss,
    alive_mask,
    lambda_returns,
    rollout_targets,
)


def test_lambda_returns_hand_computed_with_termination_in_the_middle() -> None:
    gamma, lam = 0.5, 0.5
    rewards = torch.tensor([[1.0, 0.0, 2.0, 1.0]])
    ends = torch.tensor([[False, True, False, False]])  # the dream ends after step 1
    values = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0]])  # V(x_0) .. V(x_4)
    # R_4 = V(x_4) = 50
    # R_3 = r_3 + g (0.5 V(x_4) + 0.5 R_4) = 1 + 0.5 * (25 + 25)      = 26
    # R_2 = r_2 + g (0.5 V(x_3) + 0.5 R_3) = 2 + 0.5 * (20 + 13)      = 18.5
    # R_1 = r_1 + g (1 - d_1) (...)       = 0 + 0                      = 0
    # R_0 = r_0 + g (0.5 V(x_1) + 0.5 R_1) = 1 + 0.5 * (10 + 0)       = 6
    expected = torch.tensor([[6.0, 0.0, 18.5, 26.0]])
    torch.testing.assert_close(lambda_returns(rewards, ends, values, gamma, lam), expected)


def test_lambda_returns_limits() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    ends = torch.zeros(1, 3, dtype=torch.bool)
    values = torch.tensor([[5.0, 6.0, 7.0, 8.0]])
    # lambda = 0: one-step TD targets r_t + gamma V(x_{t+1})
    torch.testing.assert_close(lambda_returns(rewards, ends, values, 0.9, 0.0), rewards + 0.9 * values[:, 1:])
    # lambda = 1: discounted Monte-Carlo return bootstrapped with V(x_H)
    mc0 = 1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 8
    assert lambda_returns(rewards, ends, values, 0.9, 1.0)[0, 0].item() == pytest.approx(mc0)


def test_lambda_returns_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="shapes"):
        lambda_returns(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), 0.9, 0.9)


def test_alive_mask_stops_after_the_end() -> None:
    ends = torch.tensor([[False, True, False, True], [False, False, False, False]])
    torch.testing.assert_close(alive_mask(ends), torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))


def test_loss_hand_computed_and_gradients() -> None:
    cfg = ActorCriticLossConfig(horizon=2, gamma=0.5, lam=0.5, entropy_weight=0.001)
    logits = torch.zeros(1, 2, 2, requires_grad=True)  # uniform policy over 2 actions
    values = torch.tensor([[1.0, 2.0, 4.0]], requires_grad=True)
    actions = torch.tensor([[0, 1]])
    rewards = torch.tensor([[1.0, 1.0]])
    ends = torch.tensor([[False, False]])
    loss, m = actor_critic_loss(logits, values, actions, rewards, ends, cfg)
    # R_1 = 1 + 0.5 * 4 = 3; R_0 = 1 + 0.5 * (0.5 * 2 + 0.5 * 3) = 2.25; advantages 1.25, 1
    log_half = torch.log(torch.tensor(0.5)).item()
    # The policy term is the surrogate -rho * A with rho = pi / pi_old = 1 here: its value is -A, its
    # gradient that of -log pi * A (checked below and in test_first_pass_gradient_is_reinforce).
    loss_policy = -(1.25 + 1.0) / 2
    loss_value = ((1 - 2.25) ** 2 + (2 - 3) ** 2) / 2
    loss_entropy = -0.001 * -log_half
    assert loss.item() == pytest.approx(loss_policy + loss_value + loss_entropy, rel=1e-6)
    assert m["return"] == pytest.approx((2.25 + 3) / 2)
    loss.backward()
    # The returns are stop-gradient: only V(x_0), V(x_1) get value gradients, V(x_H) none.
    torch.testing.assert_close(values.grad, torch.tensor([[1 - 2.25, 2 - 3.0, 0.0]]))
    # Positive advantage raises the log-probability of the action taken.
    assert logits.grad[0, 0, 0] < 0 < logits.grad[0, 0, 1]


def test_loss_masks_steps_after_the_end() -> None:
    cfg = ActorCriticLossConfig(horizon=3)
    logits = torch.randn(2, 3, 4, requires_grad=True)
    values = torch.randn(2, 4, requires_grad=True)
    ends = torch.tensor([[True, False, False], [False, False, False]])
    loss, _ = actor_critic_loss(logits, values, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), ends, cfg)
    loss.backward()
    assert logits.grad[0, 1:].abs().sum() == 0 and values.grad[0, 1:].abs().sum() == 0
    assert logits.grad[1].abs().sum() > 0


def test_later_passes_clip_the_ratio() -> None:
    """With targets fixed from the dream, a policy that moved past 1 + eps on a positive advantage
    (or below 1 - eps on a negative one) gets no policy gradient; inside the band it gets rho * A."""
    cfg = ActorCriticLossConfig(horizon=2, gamma=0.5, lam=0.5, entropy_weight=0.0, clip=0.2)
    old_logits = torch.zeros(1, 2, 2)  # uniform when it acted
    values = torch.tensor([[1.0, 2.0, 4.0]])
    actions, rewards, ends = torch.tensor([[0, 1]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[False, False]])
    targets = rollout_targets(old_logits, values, actions, rewards, ends, cfg)
    torch.testing.assert_close(targets.advantage, torch.tensor([[1.25, 1.0]]))  # as in the test above
    # Now pi(a_0) = 0.8 (rho = 1.6, clipped: A > 0) and pi(a_1) = 0.55 (rho = 1.1, inside the band).
    logits = torch.log(torch.tensor([[[0.8, 0.2], [0.45, 0.55]]])).requires_grad_(True)
    loss, m = actor_critic_loss(logits, values.clone().requires_grad_(True), actions, rewards, ends, cfg, targets)
    assert m["clip_frac"] == pytest.approx(0.5)
    assert m["loss_policy"] == pytest.approx(-(1.2 * 1.25 + 1.1 * 1.0) / 2, rel=1e-5)
    loss.backward()
    assert logits.grad[0, 0].abs().sum() == 0  # clipped: no push further
    assert logits.grad[0, 1, 1] < 0  # still raised: d/dlogit of -rho A / 2 < 0 for the action taken


def test_first_pass_gradient_is_reinforce() -> None:
    """Targets from the same logits (the first pass) give DIAMOND's gradient, clip or no clip."""
    torch.manual_seed(0)
    cfg = ActorCriticLossConfig(horizon=3, entropy_weight=0.0)
    logits = torch.randn(2, 3, 4, requires_grad=True)
    values = torch.randn(2, 4)
    actions, rewards = torch.randint(0, 4, (2, 3)), torch.randn(2, 3)
    ends = torch.tensor([[False, True, False], [False, False, False]])
    loss, _ = actor_critic_loss(logits, values.clone().requires_grad_(True), actions, rewards, ends, cfg)
    loss.backward()
    adv = rollout_targets(logits, values, actions, rewards, ends, cfg).advantage
    lp = torch.log_softmax(logits, -1).gather(-1, actions[..., None]).squeeze(-1)
    mask = alive_mask(ends)
    ref = torch.autograd.grad(-(lp * adv * mask).sum() / mask.sum(), logits)[0]
    torch.testing.assert_close(logits.grad, ref)


def test_loss_config_validation() -> None:
    with pytest.raises(ValueError):
        ActorCriticLossConfig(horizon=0)
    with pytest.raises(ValueError):
        ActorCriticLossConfig(gamma=1.5)
    with pytest.raises(ValueError, match="clip"):
        ActorCriticLossConfig(clip=0.0)
