"""Play a trained agent on the real game, beside random play and the scripted expert.

    python -m training.agent.evaluate --agent checkpoints/Breakout-agent --game Breakout --episodes 20

Real test env (DIAMOND): no termination on life loss; episodes are capped at --max-steps agent
steps (paper: 108k frames = 27k steps). Episode i starts from the same seed for every policy (the
playing and the statistics: training/agent/real_game.py).
Prints a table and writes JSON (stdout with --json, or --out FILE). `agent_beats_random` means
the agent's mean is higher at p < 0.05 (one-sided permutation test; `agent_vs_random` holds the
difference, its 95 % bootstrap interval and p).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from games.envs import UnknownGameError, action_meanings, check_game
from games.experts import EXPERTS, random_policy
from model.agent import AgentPolicy
from model.checkpoint import CheckpointError
from training.agent.real_game import (
    Player,
    agent_player,
    compare,
    p_text,
    play,
    scripted_player,
    summary,
    tracking_probe,
)


def format_table(result: dict) -> str:
    lines = [f"{'policy':<10} {'mean':>8} {'± sem':>7} {'min':>6} {'max':>6} {'steps':>7} {'capped':>6}"]
    for name, s in result["policies"].items():
        lines.append(
            f"{name:<10} {s['mean']:8.2f} {s['sem']:7.2f} {s['min']:6.0f} {s['max']:6.0f} "
            f"{s['mean_steps']:7.0f} {s['capped']:6d}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.agent.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--agent", type=Path, required=True, help="agent snapshot (path with or without suffix)")
    p.add_argument("--game", default=None, help="ALE game (default: the agent's game; must match it)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=5000, help="cap per episode, in agent steps (frame skip 4)")
    p.add_argument("--seed", type=int, default=1_000_000, help="episode i starts from seed + i")
    p.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling the policy")
    p.add_argument("--epsilon", type=float, default=0.0, help="random-action probability for the agent")
    p.add_argument("--baselines", default="random,expert", help="comma list of random, expert ('' = none)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    p.add_argument("--json", action="store_true", help="print the JSON result on stdout instead of the table")
    p.add_argument(
        "--tracking",
        type=int,
        default=0,
        metavar="STEPS",
        help="Breakout: also probe whether the agent moves toward the ball, over STEPS steps of random play",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    try:
        if a.episodes < 1 or a.max_steps < 1 or a.tracking < 0:
            raise ValueError(
                f"--episodes and --max-steps must be >= 1 and --tracking >= 0, got {a.episodes}, {a.max_steps}, "
                f"{a.tracking}"
            )
        path = a.agent.with_suffix("") if a.agent.suffix in (".json", ".safetensors") else a.agent
        policy = AgentPolicy.from_snapshot(path, greedy=a.greedy, epsilon=a.epsilon, seed=a.seed)
        game = check_game(a.game or policy.game)
        if game != policy.game:
            raise ValueError(f"the agent was trained on {policy.game}, not {game}")
        if action_meanings(game) != policy.action_meanings:
            raise ValueError(f"action sets differ: agent {policy.action_meanings}, {game} {action_meanings(game)}")
        if a.tracking and game != "Breakout":
            raise ValueError(f"--tracking reads Breakout's ball and paddle from the pixels, not {game}'s")
        baselines = [b for b in a.baselines.split(",") if b]
        for b in baselines:
            if b not in ("random", "expert"):
                raise ValueError(f"unknown baseline {b!r}: expected random or expert")
    except (CheckpointError, UnknownGameError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    players: dict[str, Player] = {"agent": agent_player(policy)}
    if "random" in baselines:
        players["random"] = scripted_player(random_policy)
    if "expert" in baselines:
        if game in EXPERTS:
            players["expert"] = scripted_player(EXPERTS[game])
        else:
            print(f"note: no scripted expert for {game}; skipping it", file=sys.stderr)

    t0 = time.time()
    result = {
        "game": game,
        "agent": str(path),
        "agent_meta": {k: v for k, v in policy.model.meta.items() if k != "config"},
        "episodes": a.episodes,
        "max_steps": a.max_steps,
        "seed": a.seed,
        "greedy": a.greedy,
        "epsilon": a.epsilon,
        "policies": {},
    }
    for name, player in players.items():
        s = result["policies"][name] = summary(play(game, player, a.episodes, a.seed, a.max_steps, name, a.progress))
        print(f"{name}: mean return {s['mean']:.2f} ± {s['sem']:.2f} over {s['episodes']}", file=sys.stderr, flush=True)
    if a.tracking:
        result["tracking"] = tracking_probe(policy, a.tracking, a.seed)
    result["seconds"] = round(time.time() - t0, 1)
    if "random" in result["policies"]:
        vs = compare(result["policies"]["agent"]["returns"], result["policies"]["random"]["returns"])
        result["agent_vs_random"] = vs
        result["agent_beats_random"] = vs["difference"] > 0 and vs["p_value"] < 0.05
    text = json.dumps(result, indent=1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    if a.json:
        print(text)
    else:
        print(format_table(result))
        if "agent_vs_random" in result:
            vs = result["agent_vs_random"]
            print(
                f"agent - random: {vs['difference']:+.2f} (95 % CI {vs['ci95'][0]:+.2f} .. {vs['ci95'][1]:+.2f}), "
                f"one-sided permutation {p_text(vs['p_value'])}: "
                + ("beats random" if result["agent_beats_random"] else "does not beat random at p < 0.05")
            )
        if "tracking" in result:
            tr = result["tracking"]
            print(
                f"tracking ({tr['steps']} steps of random play): corr(ball - paddle, P(RIGHT) - P(LEFT)) "
                f"{tr['corr_gap_pull']:+.3f}, sign agreement where |gap| > 4 {tr['sign_agreement']:.3f}; "
                f"P(FIRE) {tr['p_fire_no_ball']:.3f} without a ball, {tr['p_fire_ball']:.3f} with one"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
