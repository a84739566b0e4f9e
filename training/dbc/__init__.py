"""DBC: demonstrations, training and evaluation of the behavioural-cloning policies (docs/dbc.md).

The networks and losses are in model/dbc/. Entry points, run from the repository root:

    python -m training.dbc.train       # phi (--algo diffusion), then BC / DBC / Diffusion Policy
    python -m training.dbc.evaluate    # success rates / returns, paired bootstrap CIs, JSON + plot
    python -m training.dbc.generalise  # FetchPick success as the starts move away from the demos

- `demos.py` — the tasks (maze, fetch, breakout), their demonstrations (scripted experts, human
  Breakout play) and the episode-seed splits (demonstrations, selection, test).
- `train.py`, `evaluate.py`, `generalise.py` — the three commands above (`generalise` reuses
  `evaluate`'s `evaluate` and `report` at every noise level).
"""
