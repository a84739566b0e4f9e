"""The world model's training side: the data it learns from, how a dream is measured, and shipping
(docs/design.md §6, docs/playability.md). The network is in model/world_model/.

Entry points (the commands), run from the repository root; they stay at training/ top level:

    python training/collect.py       # real play into the episode store (recording.py)
    python training/train.py         # train a world model (the loop: training/loop.py)
    python training/evaluate.py      # dream fidelity against held-out play (fidelity.py)
    python training/playability.py   # the playability suite (playability/)
    python training/ship.py          # the gate, then the snapshot into checkpoints/ and its card

- `recording.py` — play the real game with a policy and record episodes (`collect`, `Recorder`).
- `data.py` — training windows (`WindowSampler`) and their sampling weights (`field_weights`).
- `measures.py` — reading frames and scoring them: ball and paddle, PSNR, motion mask, SSIM, ball recall.
- `fidelity.py` — rollouts against held-out play, stability, reward/end accuracy, the strip and plots.
- `playability/` — the playability suite: one module per game (`breakout.py`, `pong.py`,
  `boxing.py`), what they share (`core.py`), and the suites, the gate and the report (`suites.py`).
- `shipping.py` — what both ship commands share (training/ship.py and training/agent/ship.py).
"""
