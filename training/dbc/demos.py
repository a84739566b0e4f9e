"""Demonstrations for DBC: scripted-expert trajectories for Maze, FetchPick and Breakout, human Breakout play.

Maze and FetchPick: `maze_demos(n)` / `fetch_demos(n)` run the task's scripted expert
(games/maze.py, games/fetch.py) from reset seeds DEMO_SEED + i, keep successful episodes only,
and return states (N, obs_dim) float32 and actions (N, action_dim) float32. Evaluation and
selection episodes use other seeds (EPISODE_SPLITS; training/dbc/evaluate.py refuses overlaps).

Breakout: `breakout_demos(frames)` plays the RAM-reading scripted expert in the real game
(games/envs.py) and returns stacks of the last 4 frames (N, 4, 64, 64, 3) uint8 with the
expert's actions (N,) int64. `store_demos(folder)` turns episodes of an EpisodeStore (e.g.
data/Breakout, entries whose meta policy is 'human') into the same stacks.

Datasets are cached as .npz (allow_pickle=False) when a cache path is given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from games.envs import FrameStack, stack_frames

DEMO_SEED = 1_000_000
"""Demonstrations use reset seeds DEMO_SEED + i."""

EPISODE_SPLITS = {"test": (0, 1000), "selection": (1000, 2000)}
"""Reset seeds [lo, hi) of each evaluation split: reported figures ('test') are measured on episodes
that neither the demonstrations (DEMO_SEED and up) nor any choice of a setting ('selection', e.g.
the Maze lambda sweep on 1000..1099) has seen."""


def _cached(path: Path | None, make) -> dict[str, np.ndarray]:
    if path is not None and Path(path).is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    data = make()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **data)
        tmp.replace(path)
    return data


def expert_demos(
    make_task: Callable, n_traj: int, desc: str, cache: Path | None = None, progress: bool = True
) -> dict[str, np.ndarray]:
    """n_traj successful scripted-expert episodes of a low-dim task -> {'states', 'actions', 'episode'}.

    make_task() -> an object with reset(seed) -> obs, step(a) -> (obs, success, done), .success,
    expert_action(obs) and close() (MazeTask, FetchTask). Reset seeds DEMO_SEED, DEMO_SEED + 1, ...;
    failed episodes are skipped (their seeds are used up all the same).
    """

    def make() -> dict[str, np.ndarray]:
        task = make_task()
        states, actions, episode = [], [], []
        i, seed = 0, DEMO_SEED
        bar = tqdm(total=n_traj, desc=desc, disable=not progress)
        while i < n_traj:
            obs, done = task.reset(seed), False
            s_ep, a_ep = [], []
            while not done:
                a = task.expert_action(obs)
                s_ep.append(obs.copy())
                a_ep.append(a)
                obs, _, done = task.step(a)
            seed += 1
            if not task.success:  # keep successful demonstrations only
                continue
            states += s_ep
            actions += a_ep
            episode += [i] * len(s_ep)
            i += 1
            bar.update()
        bar.close()
        task.close()
        return {
            "states": np.asarray(states, np.float32),
            "actions": np.asarray(actions, np.float32),
            "episode": np.asarray(episode, np.int64),
        }

    return _cached(cache, make)


def maze_demos(n_traj: int = 100, cache: Path | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """n_traj successful Maze expert trajectories (states (N, 6), actions (N, 2))."""
    from games.maze import MazeTask

    return expert_demos(MazeTask, n_traj, "maze expert demos", cache, progress)


def fetch_demos(n_traj: int = 303, cache: Path | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """n_traj successful FetchPick expert episodes of 50 steps each (states (N, 28), actions (N, 4))."""
    from games.fetch import FetchTask

    return expert_demos(FetchTask, n_traj, "fetch expert demos", cache, progress)


def breakout_demos(
    frames: int = 4000,
    seed: int = DEMO_SEED,
    max_episode_steps: int = 1500,
    cache: Path | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Scripted-expert Breakout play -> {'obs': (N, 4, 64, 64, 3) uint8, 'actions': (N,) int64, 'episode'}."""

    def make() -> dict[str, np.ndarray]:
        from games.envs import make_env
        from games.experts import make_policy

        expert = make_policy("Breakout", "expert")
        rng = np.random.default_rng(seed)
        obs_l, act_l, ep_l = [], [], []
        ep, n = 0, 0
        bar = tqdm(total=frames, desc="breakout expert demos", disable=not progress)
        while n < frames:
            env = make_env("Breakout")
            frame, _ = env.reset(seed=seed + ep)
            stack = FrameStack()
            s = stack.reset(frame)
            for _ in range(max_episode_steps):
                a = expert(env, rng)
                obs_l.append(s)
                act_l.append(a)
                ep_l.append(ep)
                n += 1
                bar.update()
                frame, _, term, trunc, _ = env.step(a)
                s = stack.push(frame)
                if term or trunc or n >= frames:
                    break
            env.close()
            ep += 1
        bar.close()
        return {"obs": np.stack(obs_l), "actions": np.asarray(act_l, np.int64), "episode": np.asarray(ep_l, np.int64)}

    return _cached(cache, make)


def store_demos(folder: str | Path, game: str = "Breakout", policy: str = "human") -> dict[str, np.ndarray] | None:
    """Stacks from an EpisodeStore's episodes whose meta policy is `policy`; None if there are none."""
    from games.episode_store import EpisodeStore

    store = EpisodeStore(folder)
    obs_l, act_l, ep_l = [], [], []
    for i, entry in enumerate(store.index()):
        if entry.get("policy") != policy or entry.get("game") not in (None, game):
            continue
        ep = store.load(entry["file"])
        obs_l.append(stack_frames(ep.obs)[:-1])  # the stack at each step t, before its action
        act_l.append(ep.actions.astype(np.int64))
        ep_l.append(np.full(len(ep), i, np.int64))
    if not obs_l:
        return None
    return {"obs": np.concatenate(obs_l), "actions": np.concatenate(act_l), "episode": np.concatenate(ep_l)}


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------
TASKS = ("maze", "fetch", "breakout")
LOWDIM_TASKS = ("maze", "fetch")
"""Tasks with low-dim states and continuous actions in [-1, 1] (MLP policies, the Diffusion Policy baseline)."""
DEFAULT_LAMBDA = {"maze": 30.0, "fetch": 0.5, "breakout": 1.0}
"""lambda per task: Maze 30 and FetchPick 0.5 (paper); Breakout is ours (discrete L_DM is on another scale)."""
DEFAULT_DEMOS = {"maze": 100, "fetch": 303, "breakout": 3000}
"""Maze: 100 trajectories (paper). FetchPick: 303 trajectories, the paper's dataset size as we recall
its appendix (about 10k transitions there; not re-checked against the paper's text); ours run the env's
full 50 steps, so 303 of them hold 15,150 transitions. Breakout: expert frames (ours)."""

PAPER_TABLES = {
    "maze": {"BC": (92.1, 3.6), "Implicit BC": (78.3, 6.0), "Diffusion Policy": (95.5, 1.9), "DBC": (95.4, 1.7)},
    "fetch": {"BC": (91.6, 5.8), "Implicit BC": (69.4, 7.3), "Diffusion Policy": (83.9, 3.4), "DBC": (97.5, 1.9)},
}
"""DBC paper, success % (mean ± std over 3 seeds), docs/design.md §5.3."""
PAPER_TABLE = PAPER_TABLES["maze"]


class UnknownTaskError(ValueError):
    pass


def check_task(task: str) -> str:
    if task not in TASKS:
        raise UnknownTaskError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    return task
