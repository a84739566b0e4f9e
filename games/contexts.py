"""Real dream contexts from the emulator: L consecutive frames, the actions between them and the
next action, as a dream starts from them. Calibration and parity checks of the inference backends
(model/world_model/onnx_backend.py) use them: nothing downloaded, nothing recorded needed."""

from __future__ import annotations

import numpy as np

from games.envs import make_env
from games.experts import EXPERTS, make_policy


def play_contexts(
    game: str, n: int, seed: int = 0, context_frames: int = 4, stride: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """n windows of real play: frames uint8 (n, L, H, W, 3) and actions int64 (n, L), where
    actions[:, :L-1] were taken between the frames and actions[:, -1] is the one taken next.

    Epsilon-mixed expert play where the game has an expert (the ball in play, bricks breaking),
    random play elsewhere; a new window every `stride` steps, a new episode when one ends.
    """
    if n < 1 or context_frames < 1 or stride < 1:
        raise ValueError(f"need n, context_frames and stride >= 1, got {n}, {context_frames}, {stride}")
    policy = make_policy(game, "mixed" if game in EXPERTS else "random")
    rng = np.random.default_rng(seed)
    env = make_env(game)
    frames, actions = [], []
    try:
        obs, _ = env.reset(seed=seed)
        recent, taken = [obs], []
        while len(frames) < n:
            a = int(policy(env, rng))
            if len(recent) == context_frames and len(taken) % stride == 0:
                frames.append(np.stack(recent))
                actions.append(np.array([*taken[-(context_frames - 1) :], a][-context_frames:]))
            obs, _, terminated, truncated, _ = env.step(a)
            recent, taken = [*recent, obs][-context_frames:], [*taken, a]
            if terminated or truncated:
                obs, _ = env.reset()
                recent, taken = [obs], []
    finally:
        env.close()
    return np.stack(frames), np.stack(actions).astype(np.int64)
