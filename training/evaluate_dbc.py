"""Evaluate DBC / BC policies on their task and write JSON (+ a PNG plot).

    python training/evaluate_dbc.py --task maze --policies policies/maze/bc_s*.json policies/maze/dbc_s*.json \\
        --episodes 100 --out policies/maze/eval.json --plot policies/maze/eval.png

Every policy plays the same episodes (reset seeds episode_seed .. episode_seed + N - 1), so BC
and DBC are compared on identical starts and goals. Policies are grouped by their algorithm; a
group's score is the mean ± std over its policies (one per training seed), as in the paper.

Maze: success rate in % (within 0.5 of the goal before 400 steps). Breakout: game return
(unclipped score, real game, no life-loss termination) with a cap of --max-steps agent steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from tqdm import tqdm

from model.checkpoint import CheckpointError, atomic_write_bytes
from model.dbc import act, load_policy
from training.dbc_data import PAPER_TABLE, FrameStack, UnknownTaskError, check_task
from training.maze import MazeTask


def rollout_maze(policy: torch.nn.Module, seeds: list[int], desc: str = "maze") -> list[dict]:
    """Run one episode per seed, all in lock-step (batched policy calls) -> per-episode results."""
    tasks = [MazeTask() for _ in seeds]
    obs = np.stack([t.reset(s) for t, s in zip(tasks, seeds, strict=True)])
    bar = tqdm(total=len(seeds), desc=desc, leave=False)
    while not all(t.done for t in tasks):
        live = [i for i, t in enumerate(tasks) if not t.done]
        actions, _ = act(policy, torch.from_numpy(obs[live]).float())
        for j, i in enumerate(live):
            obs[i], _, done = tasks[i].step(actions[j].numpy())
            if done:
                bar.update()
    bar.close()
    out = [{"seed": s, "success": t.success, "steps": t.t} for s, t in zip(seeds, tasks, strict=True)]
    for t in tasks:
        t.close()
    return out


BASELINES = ("random", "expert")
"""Breakout reference players for --baselines: uniform random actions and the RAM-reading scripted expert."""


def rollout_breakout(
    policy: torch.nn.Module | str, seeds: list[int], max_steps: int, desc: str = "breakout", sample: bool = False
) -> list[dict]:
    """Real Breakout, one episode per seed in lock-step -> per-episode returns. `policy` is a pixel
    policy (batched; argmax actions, or draws from its distribution with `sample`) or the name of a
    baseline in BASELINES."""
    from training.envs import make_env
    from training.experts import make_policy

    envs = [make_env("Breakout") for _ in seeds]
    stacks = [FrameStack() for _ in seeds]
    obs = [st.reset(env.reset(seed=s)[0]) for env, st, s in zip(envs, stacks, seeds, strict=True)]
    ret, steps, done = np.zeros(len(seeds)), np.zeros(len(seeds), int), np.zeros(len(seeds), bool)
    baseline = make_policy("Breakout", policy) if isinstance(policy, str) else None
    rng = np.random.default_rng(seeds[0] if seeds else 0)
    gen = torch.Generator().manual_seed(seeds[0] if seeds else 0)
    for _ in tqdm(range(max_steps), desc=desc, leave=False):
        live = np.flatnonzero(~done)
        if not len(live):
            break
        if baseline is not None:
            actions = [baseline(envs[i], rng) for i in live]
        else:
            actions, _ = act(policy, torch.from_numpy(np.stack([obs[i] for i in live])), not sample, gen)
        for j, i in enumerate(live):
            frame, r, term, trunc, _ = envs[i].step(int(actions[j]))
            obs[i] = stacks[i].push(frame)
            ret[i] += r
            steps[i] += 1
            done[i] = term or trunc
    for env in envs:
        env.close()
    return [
        {"seed": s, "return": float(ret[i]), "steps": int(steps[i]), "finished": bool(done[i])}
        for i, s in enumerate(seeds)
    ]


def summarise(task: str, results: list[dict]) -> dict[str, dict]:
    """Group per-policy scores by algorithm -> {algo: {mean, std, per_seed, n}}."""
    key = "success_rate" if task == "maze" else "mean_return"
    groups: dict[str, list[float]] = {}
    for r in results:
        groups.setdefault(r["algo"], []).append(r[key])
    return {
        algo: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": v, "n": len(v), "metric": key}
        for algo, v in groups.items()
    }


def plot(doc: dict, path: Path) -> None:
    """Bar chart of BC vs DBC (mean ± std over seeds, dots per seed), the paper's bars beside them for Maze."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = doc["summary"]
    algos = [a for a in ("bc", "dbc") if a in summary] + [a for a in summary if a not in ("bc", "dbc")]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    labels, x = [], 0
    colors = {"bc": "#7f8fa6", "dbc": "#e1812c"}
    for a in algos:
        s = summary[a]
        ax.bar(x, s["mean"], yerr=s["std"], color=colors.get(a, "#5b9bd5"), capsize=4)
        ax.scatter([x] * len(s["per_seed"]), s["per_seed"], color="black", s=10, zorder=3)
        labels.append(f"{a.upper()} (ours)" if a in ("bc", "dbc") else a)
        x += 1
    if doc["task"] == "maze":
        for name in ("BC", "DBC"):
            m, sd = PAPER_TABLE[name]
            ax.bar(x, m, yerr=sd, color="none", edgecolor=colors[name.lower()], hatch="//", capsize=4)
            labels.append(f"{name} (paper)")
            x += 1
        ax.set_ylabel("success rate (%)")
        ax.set_ylim(0, 105)
    else:
        ax.set_ylabel(f"return (cap {doc.get('max_steps')} steps)")
    ax.set_xticks(range(len(labels)), labels, rotation=15)
    ax.set_title(f"{doc['task']}: {doc['episodes']} episodes x {max(s['n'] for s in summary.values())} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def evaluate(
    task: str,
    paths: list[Path],
    episodes: int,
    episode_seed: int = 0,
    max_steps: int = 2000,
    baselines: bool = False,
    sample: bool = False,
) -> dict:
    """Load each policy (refusing other tasks' checkpoints), play the same episodes, summarise.
    baselines (Breakout): random play and the scripted expert play the same episodes too.
    sample (Breakout): draw actions from the policies' distributions instead of argmax."""
    check_task(task)
    if baselines and task != "breakout":
        raise ValueError("--baselines is for the breakout task (the Maze table carries the paper's figures)")
    if sample and task != "breakout":
        raise ValueError("--sample is for the breakout task (Maze actions are continuous)")
    policies = [(p, *load_policy(p, task=task)) for p in paths]  # fail fast, before any rollout
    if baselines:
        policies += [(name, name, {"algo": name}) for name in BASELINES]
    seeds = list(range(episode_seed, episode_seed + episodes))
    results = []
    for path, policy, meta in tqdm(policies, desc="policies"):
        t0 = time.time()
        name = Path(path).with_suffix("").name if path not in BASELINES else path
        if task == "maze":
            eps = rollout_maze(policy, seeds, desc=name)
            score = {"success_rate": 100.0 * float(np.mean([e["success"] for e in eps]))}
        else:
            eps = rollout_breakout(policy, seeds, max_steps, desc=name, sample=sample)
            score = {"mean_return": float(np.mean([e["return"] for e in eps]))}
        results.append(
            {
                "policy": str(path),
                "algo": meta.get("algo"),
                "seed": meta.get("seed"),
                "lambda": meta.get("lambda"),
                **score,
                "seconds": round(time.time() - t0, 1),
                "episodes": eps,
            }
        )
        tqdm.write(f"{name}: {score}")
    doc = {
        "task": task,
        "episodes": episodes,
        "episode_seed": episode_seed,
        "results": results,
        "summary": summarise(task, results),
    }
    if task == "maze":
        doc["paper"] = {k: {"mean": m, "std": s} for k, (m, s) in PAPER_TABLE.items()}
    else:
        doc["max_steps"] = max_steps
        doc["actions"] = "sampled" if sample else "argmax"
    return doc


def merge(task: str, paths: list[Path]) -> dict:
    """Combine evaluation JSONs of one task: different policies (e.g. one process per seed) and/or
    different episode ranges of the same policy (their episodes are concatenated)."""
    docs = []
    for p in paths:
        try:
            docs.append(json.loads(Path(p).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read evaluation JSON {p}: {e}") from None
        if docs[-1].get("task") != task:
            raise ValueError(f"{p} evaluates task {docs[-1].get('task')!r}, not {task!r}")
    by_policy: dict[str, dict] = {}
    for d in docs:
        for r in d["results"]:
            if r["policy"] not in by_policy:
                by_policy[r["policy"]] = {**r, "episodes": list(r["episodes"])}
                continue
            m = by_policy[r["policy"]]
            if {e["seed"] for e in m["episodes"]} & {e["seed"] for e in r["episodes"]}:
                raise ValueError(f"{r['policy']}: overlapping episode seeds in the merged evaluations")
            m["episodes"] += r["episodes"]
            m["seconds"] = round(m["seconds"] + r["seconds"], 1)
    results = sorted(by_policy.values(), key=lambda r: (str(r["algo"]), str(r["seed"])))
    for r in results:
        r["episodes"].sort(key=lambda e: e["seed"])
        if task == "maze":
            r["success_rate"] = 100.0 * float(np.mean([e["success"] for e in r["episodes"]]))
        else:
            r["mean_return"] = float(np.mean([e["return"] for e in r["episodes"]]))
    counts = {len(r["episodes"]) for r in results}
    if len(counts) != 1:
        raise ValueError(f"policies were evaluated on different numbers of episodes: {sorted(counts)}")
    doc = {k: v for k, v in docs[0].items() if k not in ("results", "summary")}
    doc["episodes"] = counts.pop()
    doc["episode_seed"] = min(e["seed"] for r in results for e in r["episodes"])
    doc["results"] = results
    doc["summary"] = summarise(task, results)
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="maze", help="maze or breakout")
    p.add_argument("--policies", nargs="+", type=Path, default=[], help="policy checkpoints (.json/.safetensors)")
    p.add_argument("--merge", nargs="+", type=Path, default=[], help="merge evaluation JSONs (e.g. parallel runs)")
    p.add_argument("--episodes", type=int, default=100, help="episodes per policy")
    p.add_argument("--episode-seed", type=int, default=0, help="reset seed of the first episode")
    p.add_argument("--max-steps", type=int, default=2000, help="Breakout: agent-step cap per episode")
    p.add_argument("--baselines", action="store_true", help="Breakout: also random play and the scripted expert")
    p.add_argument(
        "--sample",
        action="store_true",
        help="Breakout: draw actions from the policy (FIRE, the serve, is 0.4%% of the demonstrations: "
        "an argmax policy can wait forever for it)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON output (default runs/dbc/<task>/eval.json)")
    p.add_argument("--plot", type=Path, default=None, help="PNG plot (default: beside the JSON)")
    a = p.parse_args(argv)
    try:
        check_task(a.task)
        if a.episodes < 1 or a.max_steps < 1:
            raise ValueError("--episodes and --max-steps must be >= 1")
        if bool(a.policies or a.baselines) == bool(a.merge):
            raise ValueError("give either --policies (to evaluate) or --merge (to combine evaluation JSONs)")
        doc = (
            merge(a.task, a.merge)
            if a.merge
            else evaluate(a.task, a.policies, a.episodes, a.episode_seed, a.max_steps, a.baselines, a.sample)
        )
    except (UnknownTaskError, ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = a.out or Path("runs/dbc") / a.task / "eval.json"
    atomic_write_bytes(out, json.dumps(doc, indent=1).encode())
    plot(doc, a.plot or out.with_suffix(".png"))
    for algo, s in doc["summary"].items():
        print(f"{a.task} {algo}: {s['metric']} {s['mean']:.1f} ± {s['std']:.1f} over {s['n']} policies")
    print(f"wrote {out} and {a.plot or out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
