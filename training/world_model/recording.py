"""Play the real game with a policy and record the episodes into the episode store (and, with
branching, the short episodes that leave a recorded game at a random step with another action).
The command is training/collect.py; train.py collects with `collect` too when its store is short.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from games.envs import make_env
from games.episode_store import Episode, EpisodeStore
from games.experts import WAITING, make_policy

CONTEXT = 4
"""Real frames kept before a branch point in a branch episode (the world model's context)."""


class Recorder:
    """An episode being played: frames, actions, rewards, game-over and life-loss flags."""

    def __init__(self, frames: list[np.ndarray], actions: list[int], lives: int) -> None:
        n = len(actions)
        self.frames, self.actions, self.lives = list(frames), list(actions), lives
        self.rewards, self.terms, self.lost = [0.0] * n, [False] * n, [False] * n

    def step(self, env, a: int) -> bool:
        """Play action a; returns whether the episode ended (game over or time limit)."""
        obs, r, term, trunc, info = env.step(a)
        self.frames.append(obs)
        self.actions.append(a)
        self.rewards.append(r)
        self.terms.append(term)
        self.lost.append(info.get("lives", 0) < self.lives)
        self.lives = info.get("lives", 0)
        return term or trunc

    def episode(self, meta: dict) -> Episode:
        return Episode(
            obs=np.stack(self.frames),
            actions=np.array(self.actions),
            rewards=np.array(self.rewards, dtype=np.float32),
            terminated=np.array(self.terms),
            life_lost=np.array(self.lost),
            meta=meta,
        )


def branch_episodes(branch_env, state, played: Recorder, length: int, meta: dict) -> list[Episode]:
    """From an emulator state (ALE cloneState), hold each action of the minimal set for `length`
    steps on a second env: the same state, every action, what really follows. Each branch is an
    episode of the CONTEXT frames before the branch point followed by the branch."""
    out = []
    ctx_frames = played.frames[-CONTEXT:]
    ctx_actions = played.actions[len(played.actions) - len(ctx_frames) + 1 :]
    for a in range(branch_env.action_space.n):
        branch_env.unwrapped.ale.restoreState(state)
        branch = Recorder(ctx_frames, ctx_actions, played.lives)
        for _ in range(length):
            if branch.step(branch_env, a):
                break
        extra = {"source": "branch", "branch_action": a, "branch_context": len(ctx_frames) - 1}
        out.append(branch.episode({**meta, **extra}))
    return out


def collect(
    game: str,
    store: EpisodeStore,
    steps: int,
    policy: str = "mixed",
    epsilon: float = 0.25,
    seed: int = 0,
    max_episode_steps: int = 2500,
    progress: bool = True,
    branch_prob: float = 0.0,
    branch_len: int = 8,
) -> int:
    """Play `steps` agent steps (frame skip 4) and store whole episodes; returns episodes written.

    branch_prob: chance per step (and at every step where the game starts waiting for a serve)
    of branching: every action held for `branch_len` steps from a clone of the emulator state,
    stored as extra short episodes (branch_episodes). Branch steps do not count towards `steps`.

    Raises ValueError, writing nothing, when the store already holds this game's episode played with
    the same policy, epsilon and seed: the same command run twice would store the same play twice.
    """
    for e in store.index():
        if e.get("source") == "collect" and (e.get("game"), e.get("policy"), e.get("seed")) == (game, policy, seed):
            if e.get("epsilon", epsilon) == epsilon:
                raise ValueError(
                    f"{store.root} already holds {game} play collected with policy {policy!r}, epsilon {epsilon} "
                    f"and seed {seed} ({e['file']}); the same episodes would be stored twice: pick another seed "
                    "or another store"
                )
    env = make_env(game)
    branch_env = make_env(game) if branch_prob > 0 else None
    if branch_env is not None:
        branch_env.reset(seed=seed)
    waiting = WAITING.get(game)
    rng = np.random.default_rng(seed)
    act = make_policy(game, policy, epsilon)
    written, done_steps, ep_seed = 0, 0, seed
    bar = tqdm(total=steps, desc=f"collect {game}/{policy}", unit="step", disable=not progress)
    while done_steps < steps:
        obs, info = env.reset(seed=ep_seed)
        played = Recorder([obs], [], info.get("lives", 0))
        meta = {"game": game, "policy": policy, "epsilon": epsilon, "seed": ep_seed}
        was_waiting = False
        while True:
            if branch_env is not None and len(played.frames) >= CONTEXT:
                now_waiting = waiting is not None and waiting(env)
                if rng.random() < branch_prob or (now_waiting and not was_waiting):
                    state = env.unwrapped.ale.cloneState()
                    for br in branch_episodes(branch_env, state, played, branch_len, meta):
                        store.add(br)
                        written += 1
                    env.unwrapped.ale.restoreState(state)
                was_waiting = now_waiting
            ended = played.step(env, act(env, rng))
            done_steps += 1
            bar.update(1)
            if ended or len(played.actions) >= max_episode_steps or done_steps >= steps:
                break
        store.add(played.episode({**meta, "source": "collect"}))
        written += 1
        ep_seed += 1
    bar.close()
    env.close()
    return written
