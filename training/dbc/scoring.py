"""Playing DBC / BC / Diffusion Policy policies on their task and scoring them: what
`python -m training.dbc.evaluate` and `python -m training.dbc.generalise` both run.

- `load_agent`, `make_task`: a policy by its checkpoint's kind, a fresh low-dim task;
- `rollout_lowdim` (Maze, FetchPick: episodes in lock-step), `rollout_breakout` (real Breakout), the
  scripted `BASELINES`;
- scores: `score_of`, `summarise` (mean ± sample std over training seeds), `paired_bootstrap` and
  `compare` (paired bootstrap CIs between methods), the episode-seed checks;
- `evaluate` (every policy on the same episodes -> one JSON-able doc), `merge` (docs of parallel
  runs), `report` (the lines printed after an evaluation).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from games.envs import FrameStack
from model import checkpoint
from model.checkpoint import CheckpointError
from model.dbc.core import act, load_dbc_policy
from model.dbc.diffusion_policy import KIND as DIFFUSION_POLICY_KIND
from model.dbc.diffusion_policy import DiffusionPolicy, load_diffusion_policy
from training.dbc.demos import (
    DEMO_SEED,
    EPISODE_SPLITS,
    LOWDIM_TASKS,
    PAPER_TABLES,
    check_task,
)

PAPER_NAMES = {"bc": "BC", "dbc": "DBC", "diffusion_policy": "Diffusion Policy"}
COLORS = {"bc": "#7f8fa6", "dbc": "#e1812c", "diffusion_policy": "#3a9e6f", "expert": "#444444", "random": "#bbbbbb"}


def make_task(task: str):
    """A fresh low-dim task env (MazeTask or FetchTask)."""
    if task == "maze":
        from games.maze import MazeTask

        return MazeTask()
    from games.fetch import FetchTask

    return FetchTask()


def load_agent(path: str | Path, task: str | None = None) -> tuple[torch.nn.Module, dict]:
    """A DBC / BC policy or a Diffusion Policy, by the checkpoint's kind (refusing other tasks')."""
    try:
        kind = checkpoint.read_meta(path).get("kind")
    except CheckpointError:
        kind = None  # load_dbc_policy names what is wrong with the file
    if kind == DIFFUSION_POLICY_KIND:
        return load_diffusion_policy(path, task=task)
    return load_dbc_policy(path, task=task)


LOCKSTEP = 100
"""Episodes played in lock-step at once (each env holds ~12 MB of MuJoCo state and takes ~0.1 s to build)."""


def rollout_lowdim(
    policy: torch.nn.Module | str,
    task: str,
    seeds: list[int],
    noise: float = 0.0,
    desc: str = "",
    pool: list | None = None,
) -> list[dict]:
    """Maze / FetchPick: one episode per seed, len(pool) at a time in lock-step (batched policy calls).

    policy: an MLP policy, a DiffusionPolicy (its reverse-chain noise drawn from one generator per
    episode, seeded by the episode seed, so an episode's actions do not depend on its batch) or
    'expert' (the task's scripted expert). noise: FetchPick start/goal perturbation (m).
    pool: task envs to reuse (a reset with a seed is a fresh episode); built here if None.
    -> per-episode results [{'seed', 'success', 'steps'}]."""
    own = pool is None
    pool = pool or [make_task(task) for _ in range(min(LOCKSTEP, len(seeds)))]
    out = []
    for i in range(0, len(seeds), len(pool)):
        out += _rollout_lockstep(policy, pool, seeds[i : i + len(pool)], noise, desc or task)
    if own:
        for t in pool:
            t.close()
    return out


def _rollout_lockstep(policy: torch.nn.Module | str, pool: list, seeds: list[int], noise: float, desc: str) -> list:
    tasks = pool[: len(seeds)]
    obs = np.stack([t.reset(s, noise) if noise else t.reset(s) for t, s in zip(tasks, seeds, strict=True)])
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    bar = tqdm(total=len(seeds), desc=desc, leave=False)
    while not all(t.done for t in tasks):
        live = [i for i, t in enumerate(tasks) if not t.done]
        o = torch.from_numpy(obs[live]).float()
        if policy == "expert":
            actions = [tasks[i].expert_action(obs[i]) for i in live]
        elif isinstance(policy, DiffusionPolicy):
            shape = (policy.cfg.num_steps, policy.cfg.action_dim)
            noise_rows = torch.stack([torch.randn(shape, generator=gens[i]) for i in live])  # (B, N, A)
            actions = policy.sample(o, noise_rows).numpy()
        else:
            actions = act(policy, o)[0].numpy()
        for j, i in enumerate(live):
            obs[i], _, done = tasks[i].step(actions[j])
            if done:
                bar.update()
    bar.close()
    return [{"seed": s, "success": t.success, "steps": t.t} for s, t in zip(seeds, tasks, strict=True)]


BASELINES = {"breakout": ("random", "expert"), "maze": ("expert",), "fetch": ("expert",)}
"""Reference players for --baselines: Breakout's uniform random actions and RAM-reading scripted expert;
the Maze's and FetchPick's scripted experts (the demonstrators)."""


def rollout_breakout(
    policy: torch.nn.Module | str, seeds: list[int], max_steps: int, desc: str = "breakout", sample: bool = False
) -> list[dict]:
    """Real Breakout, one episode per seed in lock-step -> per-episode returns. `policy` is a pixel
    policy (batched; argmax actions, or draws from its distribution with `sample`) or the name of a
    baseline in BASELINES['breakout']."""
    from games.envs import make_env
    from games.experts import make_policy

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


def episode_scores(task: str, episodes: list[dict]) -> np.ndarray:
    """Per-episode score in the metric's units: success in % (0 or 100) or game return."""
    key = "return" if task == "breakout" else "success"
    return np.array([100.0 * float(e[key]) if key == "success" else float(e[key]) for e in episodes])


def score_of(task: str, episodes: list[dict]) -> dict[str, float]:
    key = "mean_return" if task == "breakout" else "success_rate"
    return {key: float(episode_scores(task, episodes).mean())}


def summarise(task: str, results: list[dict]) -> dict[str, dict]:
    """Group per-policy scores by algorithm -> {algo: {mean, std (sample, over seeds), per_seed, seeds, n}}."""
    key = "mean_return" if task == "breakout" else "success_rate"
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["algo"], []).append(r)
    out = {}
    for algo, rs in groups.items():
        v = [r[key] for r in rs]
        out[algo] = {
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "per_seed": v,
            "seeds": [r["seed"] for r in rs],
            "n": len(v),
            "metric": key,
        }
    return out


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 10_000, level: float = 0.95, seed: int = 0, over_seeds: bool = False
) -> dict:
    """CI of mean(a) - mean(b) by a paired bootstrap over episodes.

    a: (Sa, E), b: (Sb, E) per-episode scores of two methods' Sa / Sb training seeds on the same E
    episodes (column e = the same episode seed for both). Every replicate draws E episodes with
    replacement, the same draw for a and b (the pairing), and compares the methods' means over
    their seeds on those episodes. over_seeds: each replicate also redraws each method's training
    seeds with replacement (independently: seeds are not paired across methods).
    -> {'diff', 'lo', 'hi', 'level', 'n_boot', 'resample'}; percentile interval.
    """
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape[1] != b.shape[1] or a.shape[1] < 1:
        raise ValueError(f"need the same episodes for both methods, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    E = a.shape[1]
    w_ep = rng.multinomial(E, np.full(E, 1.0 / E), size=n_boot) / E  # (n_boot, E) episode weights, shared

    def seed_weights(S: int) -> np.ndarray:  # (n_boot, S)
        if not over_seeds:
            return np.full((n_boot, S), 1.0 / S)
        return rng.multinomial(S, np.full(S, 1.0 / S), size=n_boot) / S

    wa, wb = seed_weights(a.shape[0]), seed_weights(b.shape[0])
    diffs = ((wa @ a) * w_ep).sum(1) - ((wb @ b) * w_ep).sum(1)  # (n_boot,)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {
        "diff": float(a.mean() - b.mean()),
        "lo": float(lo),
        "hi": float(hi),
        "level": level,
        "n_boot": n_boot,
        "resample": "seeds+episodes" if over_seeds else "episodes",
    }


COMPARISONS = (("dbc", "bc"), ("diffusion_policy", "bc"), ("dbc", "diffusion_policy"))


def compare(task: str, results: list[dict], n_boot: int = 10_000) -> list[dict]:
    """Paired bootstrap CIs of A - B for the method pairs in COMPARISONS that were evaluated."""
    by_algo: dict[str, list[dict]] = {}
    for r in results:
        by_algo.setdefault(r["algo"], []).append(r)
    ref = [e["seed"] for e in results[0]["episodes"]] if results else []
    for r in results:
        if [e["seed"] for e in r["episodes"]] != ref:
            raise ValueError(f"{r['policy']} played other episodes than {results[0]['policy']}: cannot pair them")
    out = []
    for x, y in COMPARISONS:
        if x not in by_algo or y not in by_algo:
            continue
        a = np.stack([episode_scores(task, r["episodes"]) for r in by_algo[x]])  # (Sa, E)
        b = np.stack([episode_scores(task, r["episodes"]) for r in by_algo[y]])  # (Sb, E)
        ep = paired_bootstrap(a, b, n_boot)
        both = paired_bootstrap(a, b, n_boot, over_seeds=True)
        out.append(
            {
                "a": x,
                "b": y,
                "diff": ep["diff"],
                "ci95_episodes": [ep["lo"], ep["hi"]],
                "ci95_seeds_episodes": [both["lo"], both["hi"]],
                "n_boot": n_boot,
                "episodes": len(ref),
                "seeds": [len(a), len(b)],
            }
        )
    return out


def check_episode_seeds(seeds: list[int], split: str) -> None:
    """Refuse evaluation episodes that the demonstrations or the other split use."""
    if split not in EPISODE_SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(EPISODE_SPLITS)}")
    lo, hi = EPISODE_SPLITS[split]
    bad = [s for s in seeds if not lo <= s < hi]
    if bad:
        demo = " (the demonstrations' seeds)" if max(bad) >= DEMO_SEED else ""
        raise ValueError(f"episode seeds {bad[0]}..{bad[-1]}{demo} are outside the {split} split {lo}..{hi - 1}")


def seed_range(seeds: list[int]) -> str:
    return f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))


def evaluate(
    task: str,
    paths: list[Path],
    episodes: int,
    episode_seed: int = 0,
    max_steps: int = 2000,
    baselines: bool = False,
    sample: bool = False,
    noise: float = 0.0,
    split: str = "test",
    n_boot: int = 10_000,
) -> dict:
    """Load each policy (refusing other tasks' checkpoints), play the same episodes, summarise, compare.
    baselines: the task's reference players (BASELINES) play the same episodes too.
    sample (Breakout): draw actions from the policies' distributions instead of argmax.
    noise (FetchPick): start / goal perturbation in metres (games/fetch.py)."""
    check_task(task)
    if sample and task != "breakout":
        raise ValueError("--sample is for the breakout task (Maze and FetchPick actions are continuous)")
    if noise and task != "fetch":
        raise ValueError("--noise is for the fetch task")
    if noise < 0:
        raise ValueError(f"--noise must be >= 0, got {noise}")
    seeds = list(range(episode_seed, episode_seed + episodes))
    check_episode_seeds(seeds, split)
    policies = [(p, *load_agent(p, task=task)) for p in paths]  # fail fast, before any rollout
    if baselines:
        policies += [(name, name, {"algo": name}) for name in BASELINES[task]]
    tqdm.write(f"{task}: episode seeds {seed_range(seeds)} ({split} split; demonstrations use {DEMO_SEED}+)")
    results = []
    pool = [make_task(task) for _ in range(min(LOCKSTEP, episodes))] if task in LOWDIM_TASKS else []
    for path, policy, meta in tqdm(policies, desc="policies"):
        t0 = time.time()
        name = path if isinstance(policy, str) else Path(path).with_suffix("").name
        if task in LOWDIM_TASKS:
            eps = rollout_lowdim(policy, task, seeds, noise, desc=name, pool=pool)
        else:
            eps = rollout_breakout(policy, seeds, max_steps, desc=name, sample=sample)
        score = score_of(task, eps)
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
    for t in pool:
        t.close()
    doc = {
        "task": task,
        "episodes": episodes,
        "episode_seed": episode_seed,
        "episode_seeds": seed_range(seeds),
        "split": split,
        "results": results,
        "summary": summarise(task, results),
        "comparisons": compare(task, [r for r in results if r["algo"] in PAPER_NAMES], n_boot),
    }
    if task in PAPER_TABLES:
        doc["paper"] = {k: {"mean": m, "std": s} for k, (m, s) in PAPER_TABLES[task].items()}
    if task == "fetch":
        doc["noise"] = noise
    if task == "breakout":
        doc["max_steps"] = max_steps
        doc["actions"] = "sampled" if sample else "argmax"
    return doc


def merge(task: str, paths: list[Path], n_boot: int = 10_000) -> dict:
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
        if docs[-1].get("noise", 0.0) != docs[0].get("noise", 0.0):
            raise ValueError(f"{p} was evaluated at another noise level than {paths[0]}")
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
        r.update(score_of(task, r["episodes"]))
    counts = {len(r["episodes"]) for r in results}
    if len(counts) != 1:
        raise ValueError(f"policies were evaluated on different numbers of episodes: {sorted(counts)}")
    seeds = [e["seed"] for e in results[0]["episodes"]]
    doc = {k: v for k, v in docs[0].items() if k not in ("results", "summary", "comparisons")}
    doc["episodes"] = counts.pop()
    doc["episode_seed"] = min(seeds)
    doc["episode_seeds"] = seed_range(seeds)
    doc["results"] = results
    doc["summary"] = summarise(task, results)
    doc["comparisons"] = compare(task, [r for r in results if r["algo"] in PAPER_NAMES], n_boot)
    return doc


def report(doc: dict) -> list[str]:
    """The summary lines printed after an evaluation."""
    task = doc["task"]
    lines = [f"{task}: episode seeds {doc['episode_seeds']} ({doc.get('split', 'test')} split)"]
    for algo, s in doc["summary"].items():
        if algo not in PAPER_NAMES:  # a scripted reference player
            lines.append(f"{task} {algo}: {s['metric']} {s['mean']:.1f}")
            continue
        lines.append(
            f"{task} {algo}: {s['metric']} {s['mean']:.1f} ± {s['std']:.1f} (sample std over {s['n']} training "
            f"seeds {s['seeds']}; per seed {', '.join(f'{v:.1f}' for v in s['per_seed'])})"
        )
    for c in doc.get("comparisons", []):
        lo, hi = c["ci95_episodes"]
        lo2, hi2 = c["ci95_seeds_episodes"]
        lines.append(
            f"{task} {c['a']} - {c['b']}: {c['diff']:+.1f}, 95% CI [{lo:+.1f}, {hi:+.1f}] (paired bootstrap over "
            f"{c['episodes']} episode seeds, {c['n_boot']} resamples); resampling training seeds too: "
            f"[{lo2:+.1f}, {hi2:+.1f}]"
        )
    return lines
