"""Can an agent learn in this dream? Play fixed policies inside it and on the real game, side by side.

    python -m training.agent.dream_check --checkpoint checkpoints/Breakout --data data/Breakout-heldout \\
        [--agent checkpoints/Breakout-agent] [--real-episodes 10]

An actor-critic trained in imagination can only learn what the dream rewards. This plays the same
policies — random, each action held down, a pixel ball tracker (Breakout) and optionally a trained
agent — from the same real 4-frame contexts with the same diffusion noise, for `--horizon` dreamed
steps, and reports per policy the share of dreams that end (life lost) and the predicted reward
per dream. With `--real-episodes N` the same policies also play N full real games (same seeds for
every policy): return, length, and lives lost per `--horizon` real steps (the real counterpart of
the dream's end rate). A dream fit for training ranks policies as the real game does: the tracker far
above random, holding one action below it.

Every policy meets the same contexts and the same noise, so it is also compared with random play
dream by dream: the paired difference of end rates with its standard error. `--policies` picks a
subset (a dream costs the same for every policy); `--strip PNG` draws the first dreams of each
policy, one row per dream (the last context frame, then the dreamed frames).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from games.episode_store import EpisodeStore
from model.agent import ActorCritic
from model.checkpoint import CheckpointError
from model.world_model import Dreams, WorldModel, frames_to_tensor, tensor_to_frames
from model.world_model.sampler import SamplerConfig
from training.agent.real_game import play, summary
from training.world_model.data import WindowSampler
from training.world_model.measures import ball_position, breakout_paddle_column

# A frame policy: reset(batch), then act(frames uint8 (B, H, W, 3), rng) -> B action indices.
FramePolicy = tuple[Callable[[int], None], Callable[[np.ndarray, np.random.Generator], np.ndarray]]


def breakout_tracker(frames: np.ndarray, meanings: list[str]) -> np.ndarray:
    """Move the paddle under the ball, read from the pixels (FIRE when no ball is in the field)."""
    idx = {m: i for i, m in enumerate(meanings)}
    out = np.full(len(frames), idx["FIRE"])
    for i, f in enumerate(frames):
        ball = ball_position(f, "Breakout")  # (row, col) within the field
        paddle = breakout_paddle_column(f)
        if ball is None or paddle is None:
            continue
        gap = ball[1] - paddle
        out[i] = idx["RIGHT"] if gap > 1 else idx["LEFT"] if gap < -1 else idx["NOOP"]
    return out


def scripted(fn: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> FramePolicy:
    return (lambda b: None), fn


def agent_policy(model: ActorCritic) -> FramePolicy:
    """The agent, batched over dreams: burn-in is done by the caller through `burn_in`."""
    state: dict = {"hidden": None}

    def reset(b: int) -> None:
        state["hidden"] = None

    @torch.no_grad()
    def act(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        logits, _, state["hidden"] = model(frames_to_tensor(torch.from_numpy(frames)), state["hidden"])
        p = logits.float().softmax(-1).numpy().astype(np.float64)
        return np.array([rng.choice(len(q), p=q / q.sum()) for q in p])

    return reset, act


def policies(meanings: list[str], game: str, agent: ActorCritic | None) -> dict[str, FramePolicy]:
    out = {"random": scripted(lambda f, rng: rng.integers(len(meanings), size=len(f)))}
    for i, m in enumerate(meanings):
        out[f"always {m}"] = scripted(lambda f, rng, i=i: np.full(len(f), i))
    if game == "Breakout":
        out["tracker"] = scripted(lambda f, rng: breakout_tracker(f, meanings))
    if agent is not None:
        out["agent"] = agent_policy(agent)
    return out


@torch.no_grad()
def in_dream(
    model: WorldModel,
    ctx,
    policy: FramePolicy,
    horizon: int,
    sampler: SamplerConfig,
    seed: int,
    keep: int = 0,
) -> dict:
    """Dream `horizon` steps from the contexts with the policy -> end rate, reward per dream, which
    dreams ended, and (with `keep`) the frames of the first `keep` dreams, uint8 (keep, 1 + H, h, w, 3)."""
    reset, act = policy
    b = ctx.obs.shape[0]
    reset(b)
    rng, dreams = np.random.default_rng(seed), Dreams(model, sampler, seed=seed)
    dreams.reset_tensors(ctx.obs.clone(), ctx.actions)
    shown = tensor_to_frames(dreams.obs_ctx).cpu().numpy()  # (B, L, h, w, 3)
    for t in range(shown.shape[1] - 1):  # the policy sees the context frames first (the agent burns in)
        act(shown[:, t], rng)
    frame = shown[:, -1]
    alive = torch.ones(b, dtype=torch.bool)
    reward = torch.zeros(b)
    frames = [frame[:keep]] if keep else []
    for _ in range(horizon):
        nxt, r, end = dreams.step(torch.as_tensor(act(frame, rng)))
        frame = nxt.numpy()
        reward += r.float() * alive
        alive &= ~end
        if keep:
            frames.append(frame[:keep])
    out = {"end_rate": float((~alive).float().mean()), "reward": float(reward.mean())}
    out["ended"] = (~alive).cpu().numpy().astype(int).tolist()
    if keep:
        out["_frames"] = np.stack(frames, axis=1)
    return out


def paired_vs(ended: list[int], base: list[int]) -> dict[str, float]:
    """Difference of end rates (this policy - base) over the same dreams, with its standard error."""
    d = np.asarray(ended, np.float64) - np.asarray(base, np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return {"end_rate_diff": float(d.mean()), "se": se}


def strip(rows: dict[str, np.ndarray], scale: int = 2) -> Image.Image:
    """One row per kept dream, grouped by policy (its name above the group), upscaled pixel-sharp."""
    blocks = []
    for name, frames in rows.items():
        k, n, h, w, _ = frames.shape
        label = Image.new("RGB", (n * w, 12), "white")
        ImageDraw.Draw(label).text((2, 0), name, fill="black")
        blocks.append(np.asarray(label))
        for i in range(k):
            blocks.append(np.concatenate(list(frames[i]), axis=1))
            blocks.append(np.full((1, n * w, 3), 255, np.uint8))
    img = Image.fromarray(np.concatenate(blocks, axis=0))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def real_player(policy: FramePolicy):
    reset, act = policy

    def start(seed: int) -> None:
        reset(1)

    return start, lambda env, obs, rng: int(act(obs[None], rng)[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.agent.dream_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="world-model snapshot")
    p.add_argument("--data", type=Path, required=True, help="episode store the contexts come from")
    p.add_argument("--agent", type=Path, default=None, help="also play this agent snapshot")
    p.add_argument("--rollouts", type=int, default=64)
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--steps", type=int, default=3, help="Euler steps per dreamed frame (as train.py --agent)")
    p.add_argument("--real-episodes", type=int, default=0, help="also play N full real games per policy")
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policies", default="", help="comma-separated subset to play (default: all)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--strip", type=Path, default=None, help="PNG of the first dreams of each policy")
    p.add_argument("--strip-dreams", type=int, default=3, help="dreams per policy in --strip")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        if a.rollouts < 1 or a.horizon < 1 or a.real_episodes < 0 or a.strip_dreams < 1:
            raise ValueError("--rollouts, --horizon and --strip-dreams must be >= 1, --real-episodes >= 0")
        model = WorldModel.from_snapshot(a.checkpoint).eval()
        game, meanings = model.cfg.game, list(model.cfg.action_meanings)
        agent = ActorCritic.from_snapshot(a.agent) if a.agent else None
        if agent is not None and (agent.cfg.game, list(agent.cfg.action_meanings)) != (game, meanings):
            raise ValueError(f"the agent plays {agent.cfg.game}, the world model {game}")
        if not a.data.is_dir():
            raise ValueError(f"no episode store at {a.data}")
        episodes, _ = EpisodeStore(a.data).load_all(game)
        if not episodes:
            raise ValueError(f"no {game} episodes in {a.data}")
        available = policies(meanings, game, agent)
        chosen = [n.strip() for n in a.policies.split(",") if n.strip()] or list(available)
        unknown = [n for n in chosen if n not in available]
        if unknown:
            raise ValueError(f"unknown policy {unknown[0]!r}; this game has: {', '.join(available)}")
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chosen = ["random", *(n for n in chosen if n != "random")]  # first: the paired comparisons need it
    L = model.cfg.context_frames
    ctx = WindowSampler(episodes, seed=[a.seed, 1]).sample(a.rollouts, L - 1, model.device)
    sampler = model.sampler_config(num_steps=a.steps)
    result: dict = {"game": game, "rollouts": a.rollouts, "horizon": a.horizon, "steps": a.steps, "policies": {}}
    kept: dict[str, np.ndarray] = {}
    keep = min(a.strip_dreams, a.rollouts) if a.strip else 0
    for name in tqdm(chosen, desc="policies"):
        dream = in_dream(model, ctx, available[name], a.horizon, sampler, a.seed, keep)
        if keep:
            kept[name] = dream.pop("_frames")
        base = result["policies"]["random"]["dream"]["ended"] if name != "random" else None
        dream["vs_random"] = paired_vs(dream["ended"], base) if base is not None else None
        row = result["policies"][name] = {"dream": dream}
        if a.real_episodes:
            player = real_player(available[name])
            games = play(game, player, a.real_episodes, 1_000_000 + a.seed, a.max_steps, name, False)
            s = summary(games)
            row["real"] = {k: s[k] for k in ("mean", "sem", "mean_steps")}
            row["real"]["lives_lost_per_horizon"] = s["lives_lost_per_step"] * a.horizon
    heads = ("dream end rate", 15), ("vs random", 16), ("dream reward", 13), ("real return", 12)
    heads += ("real steps", 11), ("real lost/H", 12)
    print(f"{'policy':<14} " + " ".join(f"{h:>{w}}" for h, w in heads))
    for name, row in result["policies"].items():
        real, vs = row.get("real"), row["dream"]["vs_random"]
        tail = (
            f"{real['mean']:12.2f} {real['mean_steps']:11.0f} {real['lives_lost_per_horizon']:12.3f}"
            if real
            else f"{'-':>12} {'-':>11} {'-':>12}"
        )
        diff = f"{vs['end_rate_diff']:+.3f} ± {vs['se']:.3f}" if vs else "-"
        print(f"{name:<14} {row['dream']['end_rate']:15.3f} {diff:>16} {row['dream']['reward']:13.3f} {tail}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))
    if a.strip:
        a.strip.parent.mkdir(parents=True, exist_ok=True)
        strip(kept).save(a.strip)
        print(f"wrote {a.strip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
