"""Play a trained agent on the real game, beside random play and the scripted expert.

    python training/evaluate_agent.py --agent checkpoints/Breakout-agent --game Breakout --episodes 20

Real test env (DIAMOND): no termination on life loss; episodes are capped at --max-steps agent
steps (paper: 108k frames = 27k steps). Episode i starts from the same seed for every policy.
Prints a table and writes JSON (stdout with --json, or --out FILE). `agent_beats_random` means
the agent's mean is higher at p < 0.05 (one-sided permutation test; `agent_vs_random` holds the
difference, its 95 % bootstrap interval and p).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm

from games.envs import UnknownGameError, action_meanings, check_game, make_env
from games.experts import EXPERTS, random_policy
from model.agent import AgentPolicy
from model.checkpoint import CheckpointError
from training.evaluate import ball_position, breakout_paddle_column

# A player: reset(episode_seed) at each episode start, then act(env, obs, rng) -> action index.
Player = tuple[Callable[[int], None], Callable[..., int]]


def agent_player(policy: AgentPolicy) -> Player:
    def reset(seed: int) -> None:
        policy.reset()
        policy.generator.manual_seed(seed)  # each episode reproducible on its own

    return reset, lambda env, obs, rng: policy.act(obs)[0]


def scripted_player(fn: Callable) -> Player:
    return (lambda seed: None), lambda env, obs, rng: fn(env, rng)


def play(
    game: str, player: Player, episodes: int, seed: int, max_steps: int, name: str = "", progress: bool = True
) -> list[dict[str, float]]:
    """Play `episodes` full games (no life-loss termination) -> [{return, steps}] per episode.

    Episode i is seeded with seed + i alone (emulator, random choices, the agent's sampling), so
    any episode can be replayed by itself."""
    env = make_env(game, terminal_on_life_loss=False)
    reset, act = player
    out = []
    for i in tqdm(range(episodes), desc=f"play {name}", disable=not progress, leave=False):
        obs, _ = env.reset(seed=seed + i)
        rng = np.random.default_rng(seed + i)
        reset(seed + i)
        total, steps, lost, lives = 0.0, 0, 0, None
        while steps < max_steps:
            obs, r, term, trunc, info = env.step(act(env, obs, rng))
            total += float(r)
            steps += 1
            lost += int(lives is not None and info.get("lives", lives) < lives)
            lives = info.get("lives", lives)
            if term or trunc:
                break
        out.append({"return": total, "steps": steps, "capped": steps >= max_steps, "lives_lost": lost})
    env.close()
    return out


def tracking_probe(policy: AgentPolicy, steps: int, seed: int) -> dict[str, float]:
    """Breakout: does the agent move toward the ball? It watches `steps` steps of random play (the
    same states for every agent: episodes seeded seed, seed + 1, ...) and we correlate its
    P(RIGHT) - P(LEFT) with the ball-paddle gap in columns (the pixel tracker's reading). The pixel
    tracker gives +0.78 over 1,800 steps (sign agreement 1 where |gap| > 4); a policy that ignores
    the ball about 0."""
    idx = {m: i for i, m in enumerate(policy.action_meanings)}
    gaps, pull, fire_with, fire_without = [], [], [], []

    def watch(env, obs: np.ndarray, rng: np.random.Generator) -> int:
        _, probs, _ = policy.act(obs)
        ball, paddle = ball_position(obs, "Breakout"), breakout_paddle_column(obs)
        if ball is None:
            fire_without.append(probs[idx["FIRE"]])
        elif paddle is not None:
            gaps.append(ball[1] - paddle)
            pull.append(probs[idx["RIGHT"]] - probs[idx["LEFT"]])
            fire_with.append(probs[idx["FIRE"]])
        return random_policy(env, rng)

    player = (agent_player(policy)[0], watch)
    t, i = 0, 0
    while t < steps:  # whole games from seeds seed, seed + 1, ..., the last one cut at `steps` in all
        t += play("Breakout", player, 1, seed + i, steps - t, progress=False)[0]["steps"]
        i += 1
    g, d = np.array(gaps), np.array(pull)
    far = np.abs(g) > 4
    ok = len(g) > 2 and g.std() > 0 and d.std() > 0
    return {
        "steps": steps,
        "states_with_ball": len(g),
        "corr_gap_pull": float(np.corrcoef(g, d)[0, 1]) if ok else float("nan"),
        "sign_agreement": float(np.mean(np.sign(d[far]) == np.sign(g[far]))) if far.any() else float("nan"),
        "p_fire_ball": float(np.mean(fire_with)) if fire_with else float("nan"),
        "p_fire_no_ball": float(np.mean(fire_without)) if fire_without else float("nan"),
    }


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    r = np.array([x["return"] for x in rows], dtype=np.float64)
    return {
        "mean": float(r.mean()),
        "std": float(r.std()),
        "sem": float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0,
        "min": float(r.min()),
        "max": float(r.max()),
        "mean_steps": float(np.mean([x["steps"] for x in rows])),
        "lives_lost_per_step": float(sum(x["lives_lost"] for x in rows) / max(1, sum(x["steps"] for x in rows))),
        "capped": int(sum(bool(x["capped"]) for x in rows)),
        "episodes": len(rows),
        "returns": r.tolist(),
    }


def p_text(p: float) -> str:
    """'p = 0.0123', or 'p < 0.0001' when no label shuffle reached the difference (p = 1/20,001)."""
    return f"p = {p:.4f}" if p >= 1e-4 else "p < 0.0001"


def compare(a: list[float], b: list[float], samples: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Is mean(a) > mean(b)? The difference, its 95 % bootstrap interval and a one-sided
    permutation-test p-value (the share of label shuffles with a difference at least as large)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    diff = float(x.mean() - y.mean())
    boot = rng.choice(x, (samples, len(x))).mean(1) - rng.choice(y, (samples, len(y))).mean(1)
    pooled = np.concatenate([x, y])
    perm = np.argsort(rng.random((samples, len(pooled))), axis=1)
    shuffled = pooled[perm]
    null = shuffled[:, : len(x)].mean(1) - shuffled[:, len(x) :].mean(1)
    return {
        "difference": diff,
        "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "p_value": float((1 + (null >= diff - 1e-12).sum()) / (1 + samples)),
    }


def format_table(result: dict) -> str:
    lines = [f"{'policy':<10} {'mean':>8} {'± sem':>7} {'min':>6} {'max':>6} {'steps':>7} {'capped':>6}"]
    for name, s in result["policies"].items():
        lines.append(
            f"{name:<10} {s['mean']:8.2f} {s['sem']:7.2f} {s['min']:6.0f} {s['max']:6.0f} "
            f"{s['mean_steps']:7.0f} {s['capped']:6d}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
