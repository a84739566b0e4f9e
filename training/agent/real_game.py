"""Play policies on the real game and compare their returns (DIAMOND's test env: no termination on
life loss, episodes capped at `max_steps` agent steps; episode i starts from seed + i for every
policy). Used by `python -m training.agent.evaluate`, the dream check (`in_dream`'s real
counterpart) and the agent's card (training/agent/ship.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from games.envs import make_env
from games.experts import random_policy
from model.agent import AgentPolicy
from training.world_model.measures import ball_position, breakout_paddle_column

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
