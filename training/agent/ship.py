"""Ship an agent trained in the dream: copy its snapshot next to the world model and write its card.

    python -m training.agent.evaluate --agent runs/Breakout-agent/agent --episodes 20 \\
        --out runs/Breakout-agent/eval.json
    python -m training.agent.ship --run-dir runs/Breakout-agent --eval runs/Breakout-agent/eval.json

Writes `checkpoints/<Game>-agent.{safetensors,json}` (what the server offers as the control
"agent"), `docs/models/<Game>-agent.md` (the card), `<Game>-agent.png` (training curves in the
dream, returns on the real game) and `<Game>-agent-eval.json` (the evaluation). Refuses an
evaluation of another snapshot than the run's, and an agent that does not beat random play on the
real game (`agent_beats_random`: higher mean at p < 0.05, see training/agent/evaluate.py).

A run that went on past the snapshot worth shipping: keep a copy of `agent.{safetensors,json}` when
it validates, evaluate the copy, and ship it with `--agent <copy>` (the card's curves stop at its
update).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model.agent import ActorCritic
from model.checkpoint import CheckpointError
from model.device import cpu_info
from training.agent.real_game import p_text
from training.world_model.shipping import MAX_FILE_BYTES, read_run_args

SAME_SNAPSHOT_KEYS = ("epoch", "agent_steps", "horizon", "dream_steps")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} is missing: not a run of train.py --agent")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_summary(rows: list[dict[str, Any]], args: dict[str, str]) -> dict[str, Any]:
    secs = sum(r.get(f"perf/sec_{part}", 0) for r in rows for part in ("collect", "world_model", "agent"))
    last = rows[-10:]
    return {
        "updates": int(rows[-1]["agent_steps"]),
        "epochs": int(rows[-1]["epoch"]),
        "real_steps": int(rows[-1].get("real_steps", 0)),
        "wall_hours": round(secs / 3600, 2),
        "imagined_return_last10": float(np.mean([r["agent/train/return"] for r in last])),
        "entropy_last10": float(np.mean([r["agent/train/entropy"] for r in last])),
        "settings": {
            k: args.get(k)
            for k in (
                "world_model",
                "agent_preset",
                "agent_batch_size",
                "agent_lr",
                "agent_passes",
                "ppo_clip",
                "horizon",
                "gamma",
                "lam",
                "entropy_weight",
                "dream_steps",
                "collect_steps",
                "denoiser_steps",
                "re_steps",
            )
        },
    }


def smooth(x: np.ndarray, n: int = 10) -> np.ndarray:
    if len(x) < n:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    return np.concatenate([x[: n - 1] * np.nan, (c[n:] - c[:-n]) / n])


def plot(rows: list[dict[str, Any]], result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["agent_steps"] for r in rows], dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, label in (
        ("agent/train/return", "lambda-return (imagined)"),
        ("agent/train/reward_sum", "reward per rollout (imagined)"),
        ("agent/train/end_rate", "rollouts that lose a life"),
        ("agent/train/entropy", "policy entropy (nats)"),
    ):
        y = np.array([r[key] for r in rows], dtype=float)
        (line,) = ax1.plot(steps, smooth(y), label=label)
        ax1.plot(steps, y, color=line.get_color(), alpha=0.2, lw=0.8)
    ax1.set_xlabel("actor-critic updates")
    ax1.set_title("in the dream (10-epoch running mean)")
    ax1.legend(fontsize=8)
    names = list(result["policies"])
    for i, name in enumerate(names):
        r = np.array(result["policies"][name]["returns"], dtype=float)
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(r))
        ax2.scatter(np.full(len(r), i) + jitter, r, s=14, alpha=0.6)
        ax2.errorbar(i + 0.3, r.mean(), yerr=r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else 0, fmt="o", color="k")
    ax2.set_xticks(range(len(names)), names)
    ax2.set_ylabel("return (full game)")
    ax2.set_yscale("symlog", linthresh=10)
    ax2.set_title(f"real game, {result['episodes']} episodes each (mean ± sem in black)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def card(game: str, train: dict[str, Any], result: dict[str, Any], vs: dict[str, Any]) -> str:
    s = train["settings"]
    rows = "\n".join(
        f"| {name} | {p['mean']:.2f} ± {p['sem']:.2f} | {p['min']:.0f} | {p['max']:.0f} | {p['mean_steps']:.0f} |"
        for name, p in result["policies"].items()
    )
    sampling = "argmax" if result.get("greedy") else "sampled from the policy"
    passes = int(s.get("agent_passes") or 1)  # runs from before --agent-passes made one pass
    update = (
        "REINFORCE with a value baseline"
        if passes == 1
        else f"REINFORCE with a value baseline, {passes} optimiser steps per batch of dreams (PPO's clipped "
        f"ratio after the first, eps {s.get('ppo_clip')})"
    )
    frozen = str(s.get("denoiser_steps")) == "0" and str(s.get("re_steps")) == "0"
    if frozen and str(s.get("collect_steps")) == "0":
        loop = "the agent alone in the frozen world model (no real data collected, no world-model training)"
    elif frozen:
        loop = (
            f"the world model frozen; the agent's own real play ({train['real_steps']:,} steps) only added "
            "to the real contexts its dreams start from"
        )
    else:
        loop = f"DIAMOND's full loop ({train['real_steps']:,} real steps collected by the agent)"
    return f"""# {game} agent, trained in the dream

`checkpoints/{game}-agent.safetensors`: an actor-critic (`{s.get("agent_preset")}` preset: conv encoder +
LSTM, model/agent/actor_critic.py) that learned only inside the diffusion world model `{s.get("world_model")}`:
{loop}. The page offers it as the control **agent** (docs/agent.md, "In the browser").

## Training

{train["updates"]:,} actor-critic updates ({train["epochs"]} epochs), each on {s.get("agent_batch_size")} imagined
rollouts of {s.get("horizon")} steps from real 4-frame contexts, {s.get("dream_steps")} Euler step(s) per dreamed
frame; rewards and ends from the world model's reward/end model. lambda-returns (gamma
{s.get("gamma")}, lambda {s.get("lam")}), {update}, entropy weight
{s.get("entropy_weight")}, AdamW lr {s.get("agent_lr")}. {train["wall_hours"]} h of wall time on a 2-core
CPU ({cpu_info()[0]}, fp32). Last 10 epochs: imagined lambda-return {train["imagined_return_last10"]:.3f},
policy entropy {train["entropy_last10"]:.3f} nats (uniform over 4 actions: 1.386).

![training curves in the dream, returns on the real game]({game}-agent.png)

## On the real game

{result["episodes"]} full games per policy (no life-loss termination, cap {result["max_steps"]:,} agent steps, frame
skip 4), episode i from seed {result["seed"]} + i for every policy; agent actions {sampling}:

| policy | return (mean ± sem) | min | max | steps |
| --- | --- | --- | --- | --- |
{rows}

Agent minus random: {vs["difference"]:+.2f} (95 % bootstrap interval {vs["ci95"][0]:+.2f} .. {vs["ci95"][1]:+.2f}),
one-sided permutation test {p_text(vs["p_value"])}. Reproduce:

    python -m training.agent.evaluate --agent checkpoints/{game}-agent --game {game} --episodes {result["episodes"]} \\
        --max-steps {result["max_steps"]} --seed {result["seed"]}

All returns: `{game}-agent-eval.json`.
{tracking_text(result.get("tracking"))}"""


def tracking_text(t: dict[str, Any] | None) -> str:
    """The card's paragraph on training.agent.evaluate --tracking (Breakout), if the evaluation has it."""
    if not t:
        return ""
    return f"""
## Does it watch the ball?

While it watches {t["steps"]:,} steps of random play (`--tracking {t["steps"]}`), the correlation of its
P(RIGHT) − P(LEFT) with the column gap between ball and paddle is {t["corr_gap_pull"]:+.3f} (the pixel
ball tracker: +0.78; a policy blind to the ball: 0), its pull points toward the ball in
{t["sign_agreement"]:.0%} of the states with a gap over 4 columns, and it presses FIRE with probability
{t["p_fire_no_ball"]:.2f} when no ball is in play against {t["p_fire_ball"]:.2f} when one is.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.agent.ship", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run-dir", type=Path, required=True, help="a run of train.py --agent")
    p.add_argument("--eval", type=Path, required=True, help="training.agent.evaluate --out JSON of the run's agent")
    p.add_argument(
        "--agent",
        type=Path,
        default=None,
        help="ship this snapshot of the run (a copy of its agent saved at an earlier update) instead of the latest",
    )
    p.add_argument("--out-dir", type=Path, default=Path("checkpoints"))
    p.add_argument("--docs", type=Path, default=Path("docs/models"))
    p.add_argument("--notes", default="", help="free text appended to the card")
    a = p.parse_args(argv)
    try:
        snapshot = a.agent or a.run_dir / "agent"
        agent = ActorCritic.from_snapshot(snapshot)
        rows = [r for r in read_metrics(a.run_dir) if r["agent_steps"] <= agent.meta.get("agent_steps", -1)]
        if not rows or rows[-1]["agent_steps"] != agent.meta.get("agent_steps"):
            raise ValueError(f"{snapshot} is not a snapshot of {a.run_dir}: no epoch of the run ends at its update")
        run_args = read_run_args(a.run_dir)
        try:
            result = json.loads(a.eval.read_text())
            evaluated = result["agent_meta"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{a.eval} is not a training.agent.evaluate result: {e}") from None
        game = agent.cfg.game
        if run_args.get("game", game) != game:
            raise ValueError(f"{snapshot} plays {game}, the run {a.run_dir} {run_args['game']}")
        differs = [k for k in SAME_SNAPSHOT_KEYS if evaluated.get(k) != agent.meta.get(k)]
        if result.get("game") != game or differs:
            raise ValueError(
                f"{a.eval} evaluates another snapshot than {snapshot} "
                f"(differs in {', '.join(differs) or 'game'}): re-run training.agent.evaluate on it"
            )
        if "agent_vs_random" not in result:
            raise ValueError(f"{a.eval} has no comparison with random play: run training.agent.evaluate with random")
        if not result.get("agent_beats_random"):
            vs = result["agent_vs_random"]
            raise ValueError(
                f"the agent does not beat random play on the real game (difference {vs['difference']:+.2f}, "
                f"p = {vs['p_value']:.3f}): not shipped"
            )
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    train = training_summary(rows, run_args)
    vs = result["agent_vs_random"]
    a.out_dir.mkdir(parents=True, exist_ok=True)
    a.docs.mkdir(parents=True, exist_ok=True)
    stem = a.out_dir / f"{game}-agent"
    meta = {k: v for k, v in agent.meta.items() if k not in ("kind", "config")}
    meta.update(
        {
            "training": train,
            "evaluation": {n: {"mean": s["mean"], "sem": s["sem"]} for n, s in result["policies"].items()},
            "agent_vs_random": vs,
            "shipped_from": str(snapshot),
        }
    )
    agent.save_snapshot(stem, meta)
    for ext in (".safetensors", ".json"):
        size = stem.with_suffix(ext).stat().st_size
        if size > MAX_FILE_BYTES:
            print(f"error: {stem.name}{ext} is {size / 2**20:.1f} MB, over the 25 MB limit", file=sys.stderr)
            return 2
    result = {**result, "agent": str(stem)}
    (a.docs / f"{game}-agent-eval.json").write_text(json.dumps(result, indent=1))
    plot(rows, result, a.docs / f"{game}-agent.png")
    text = card(game, train, result, vs)
    if a.notes:
        text += f"\n## Notes\n\n{a.notes}\n"
    (a.docs / f"{game}-agent.md").write_text(text)
    print(f"shipped {stem}.safetensors; card {a.docs / f'{game}-agent.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
