"""DBC: demonstrations, training and evaluation of the behavioural-cloning policies (docs/dbc.md).

The networks and losses are in model/dbc/. Entry points, run from the repository root:

    python -m training.dbc.train       # phi (--algo diffusion), then BC / DBC / Diffusion Policy
    python -m training.dbc.evaluate    # success rates / returns, paired bootstrap CIs, JSON + plot
    python -m training.dbc.generalise  # FetchPick success as the starts move away from the demos

- `demos.py` — the tasks (maze, fetch, breakout), their demonstrations (scripted experts, human
  Breakout play) and the episode-seed splits (demonstrations, selection, test).
- `scoring.py` — playing the policies on their task and scoring them: rollouts, the scripted
  baselines, summaries, the paired bootstrap CIs, `evaluate` / `merge` / `report` (what `evaluate`
  and `generalise` both run; `generalise` runs `evaluate` at every noise level).
- `train.py`, `evaluate.py`, `generalise.py` — the three commands above (argument parsing, the
  plots, main).
"""
