"""The playability suite: does the dream obey the player and the game's rules? (docs/playability.md)

It puts the real emulator in a state, clones it, and gives the real game and the dream, started
from the same real frames, the same counterfactual actions; each probe counts one kind of rule
violation. The command is training/playability.py; training/ship.py gates a model on it.

Start states come from scripted play on episode seeds from `--seed` on (default 2,000,000: no
collection, training or selection in this project uses them). The dream is anything with the
`Dreamer` interface: the world model (`ModelDreamer`), or in tests the real emulator itself
(`OracleDreamer`, which must score perfectly) and deliberately broken dreams that each probe
must catch.

- `core.py` — what every suite stands on: the dream (`Dreamer`, `ModelDreamer`, `OracleDreamer`), the
  real game's start states and rollouts (`RealGame`, `Start`, `Rollout`), measuring and matching
  events, `Probe`, and the parts the Pong and Boxing suites share.
- `breakout.py`, `pong.py`, `boxing.py` — each game's start states, probes and their goals; Breakout's
  also the quick modes (`serve_belief`, `long_dream_losses`).
- `suites.py` — `SUITES` (per game), `evaluate_model`, and comparing and reporting results: the ship
  gate (`worse_than`, `TOLERANCE`, `probe_tolerance`), `goals_missed`, `table`, `cases_image`.

What the commands use is re-exported here.
"""

from training.world_model.playability.suites import (
    SUITES,
    TOLERANCE,
    Suite,
    cases_image,
    evaluate_model,
    goals_missed,
    probe_keys,
    probe_tolerance,
    suite_of,
    table,
    worse_than,
)

__all__ = [
    "SUITES",
    "TOLERANCE",
    "Suite",
    "cases_image",
    "evaluate_model",
    "goals_missed",
    "probe_keys",
    "probe_tolerance",
    "suite_of",
    "table",
    "worse_than",
]
