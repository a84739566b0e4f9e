"""The agent: DIAMOND's actor-critic that learns inside the dream (docs/agent.md, docs/design.md §2).

The network and its losses only; imagination, the full loop, evaluation and shipping are in
training/agent/. What builds, loads and plays an agent is re-exported here (`from model.agent import
AgentPolicy`); the losses, which only the training loop uses, are imported from `actor_critic`.

- `actor_critic.py` — `ActorCritic` (conv encoder + LSTM), its presets (`agent_preset`),
  lambda-returns and the actor-critic loss, and `AgentPolicy`, the thing to play with; checkpoint
  kind 'agent'.
"""

from model.agent.actor_critic import AGENT_PRESETS, ActorCritic, ActorCriticConfig, AgentPolicy, agent_preset

__all__ = ["AGENT_PRESETS", "ActorCritic", "ActorCriticConfig", "AgentPolicy", "agent_preset"]
