"""Collect real Atari play into the episode store (the playing and recording: training/world_model/recording.py).

python training/collect.py --game Breakout --policy mixed --steps 50000 --out data/Breakout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from games.envs import UnknownGameError, check_game
from games.episode_store import EpisodeStore
from games.experts import POLICY_KINDS
from training.world_model.recording import collect


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Breakout")
    p.add_argument(
        "--policy",
        default="mixed",
        choices=POLICY_KINDS,
        help="rules: idles without FIRE before serves and misses on purpose (experts.rule_showing)",
    )
    p.add_argument(
        "--branch-prob",
        type=float,
        default=0.0,
        help="per-step chance of branching the emulator: every action held --branch-len steps "
        "from the same state, stored as extra episodes (also at every wait for a serve)",
    )
    p.add_argument("--branch-len", type=int, default=8)
    p.add_argument("--epsilon", type=float, default=0.25, help="random-run probability for --policy mixed")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-episode-steps", type=int, default=2500)
    p.add_argument("--out", type=Path, default=None, help="store folder (default data/<game>)")
    args = p.parse_args(argv)
    try:
        check_game(args.game)
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        if not 0 <= args.branch_prob <= 1 or args.branch_len < 1:
            raise ValueError(
                f"--branch-prob must be in [0, 1] and --branch-len >= 1, got {args.branch_prob}, {args.branch_len}"
            )
        store = EpisodeStore(args.out or Path("data") / args.game)
        n = collect(
            args.game,
            store,
            args.steps,
            args.policy,
            args.epsilon,
            args.seed,
            args.max_episode_steps,
            branch_prob=args.branch_prob,
            branch_len=args.branch_len,
        )
    except (UnknownGameError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} episodes to {store.root} ({store.num_steps()} steps in store)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
