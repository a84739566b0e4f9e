"""The agent: an actor-critic trained inside the dream, DIAMOND's full loop around it, and its
evaluation and shipping (docs/agent.md). The network and its losses are in model/agent/actor_critic.py.

Entry points, run from the repository root:

    python training/train.py --agent        # the full loop: collect -> denoiser -> reward/end -> agent
    python -m training.agent.evaluate       # play the agent on the real game beside random and the expert
    python -m training.agent.dream_check    # can an agent learn in this dream? fixed policies, dream vs real
    python -m training.agent.ship           # copy an evaluated agent into checkpoints/ and write its card

- `loop.py` — imagination (`imagine`, `replay`), the actor-critic update (`agent_update`), the
  `Collector` that plays the agent on the real game for new episodes, and the loop itself
  (`LoopArgs`, `run_loop`, run by `train.py --agent`; not a command of its own).
- `real_game.py` — play policies on the real game (`play`, `agent_player`, `scripted_player`), the
  Breakout `tracking_probe`, returns' `summary` and the permutation-test `compare`; used by
  `evaluate`, `dream_check` and `ship`.
- `evaluate.py`, `dream_check.py`, `ship.py` — the three commands above.
"""
