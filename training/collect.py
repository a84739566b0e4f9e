"""Collect real Atari play into the episode store.

python training/collect.py --game Breakout --policy mixed --steps 50000 --out data/Breakout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm

from training.envs import UnknownGameError, check_game, make_env
from training.episode_store import Episode, EpisodeStore
from training.experts import make_policy


def collect(
    game: str,
    store: EpisodeStore,
    steps: int,
    policy: str = "mixed",
    epsilon: float = 0.25,
    seed: int = 0,
    max_episode_steps: int = 2500,
    progress: bool = True,
) -> int:
    """Play `steps` agent steps (frame skip 4) and store whole episodes; returns episodes written."""
    env = make_env(game)
    rng = np.random.default_rng(seed)
    act = make_policy(game, policy, epsilon)
    written, done_steps, ep_seed = 0, 0, seed
    bar = tqdm(total=steps, desc=f"collect {game}/{policy}", unit="step", disable=not progress)
    while done_steps < steps:
        obs, info = env.reset(seed=ep_seed)
        frames, actions, rewards, terms, lost = [obs], [], [], [], []
        lives = info.get("lives", 0)
        while True:
            a = act(env, rng)
            obs, r, term, trunc, info = env.step(a)
            frames.append(obs)
            actions.append(a)
            rewards.append(r)
            terms.append(term)
            lost.append(info.get("lives", 0) < lives)
            lives = info.get("lives", 0)
            done_steps += 1
            bar.update(1)
            if term or trunc or len(actions) >= max_episode_steps or done_steps >= steps:
                break
        ep = Episode(
            obs=np.stack(frames),
            actions=np.array(actions),
            rewards=np.array(rewards, dtype=np.float32),
            terminated=np.array(terms),
            life_lost=np.array(lost),
            meta={"game": game, "policy": policy, "epsilon": epsilon, "seed": ep_seed, "source": "collect"},
        )
        store.add(ep)
        written += 1
        ep_seed += 1
    bar.close()
    env.close()
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Breakout")
    p.add_argument("--policy", default="mixed", choices=["random", "expert", "mixed"])
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
        store = EpisodeStore(args.out or Path("data") / args.game)
        n = collect(args.game, store, args.steps, args.policy, args.epsilon, args.seed, args.max_episode_steps)
    except (UnknownGameError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} episodes to {store.root} ({store.num_steps()} steps in store)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
