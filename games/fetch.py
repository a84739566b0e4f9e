"""The FetchPick task of the DBC paper: a 7-DoF Fetch arm picks a cube and carries it to a goal.

gymnasium-robotics' `FetchPickAndPlace-v4` (MuJoCo from PyPI, headless; mujoco==3.2.7, see the
`dbc` extra in pyproject.toml: under mujoco 4.0.0 the env fails in its constructor). Protocol:
observation = the env's 25-d observation + the desired goal (3) = 28 numbers, actions in [-1, 1]^4
(gripper displacement x, y, z of up to 5 cm a step, and the fingers: +1 opens, -1 closes), 50 steps
per episode (the env's own limit), success = the cube within 5 cm of the goal at the last step
(the env's `is_success`). Half of the goals are in the air, so the cube must be lifted.

The paper ran a variant of the env (object and goal drawn from narrower boxes); here the start and
goal come from the stock env for every seed. `reset(seed, noise)` can push the start away from
what the demonstrations saw (the generalisation experiment): the initial gripper position, the
cube's position on the table and the goal each move by `noise` * U(-1, 1) per axis, drawn from a
generator seeded by the episode seed alone, so every noise level perturbs an episode in the same
direction, only further.

Also here: the scripted expert (a function of the observation alone: reach above the cube with the
fingers open, descend, close, carry to the goal) and a Pillow drawing (top and side views).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw

from games.maze import flat_goal_obs

ENV_ID = "FetchPickAndPlace-v4"
OBS_DIM = 28
ACTION_DIM = 4
SUCCESS_RADIUS = 0.05
"""The env's distance_threshold (m)."""
MAX_STEPS = 50

TABLE_XY = np.array([[1.05, 0.40], [1.55, 1.10]])
"""Table top corners (x, y) in the env's XML (body table0, half-size 0.25 x 0.35)."""
CUBE_HALF = 0.025
NOISE_STREAM = 20_230_227
"""Mixed into the noise generator's seed so the noise is independent of the env's own draws."""

# Observation layout (the env's `_get_obs`), then the desired goal.
GRIP, OBJECT, REL, FINGERS = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 11)
GOAL = slice(25, 28)


def _register() -> None:
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)


class FetchTask:
    """One FetchPickAndPlace episode at a time: reset(seed, noise) -> obs (28,), step(a) -> (obs, success, done)."""

    def __init__(self, max_steps: int = MAX_STEPS) -> None:
        _register()
        self.env = gym.make(ENV_ID, max_episode_steps=max_steps)
        self.max_steps = max_steps
        self.obs = np.zeros(OBS_DIM)
        self.t, self.success, self.done = 0, False, False
        self.trail: list[np.ndarray] = []

    # -- episode ---------------------------------------------------------------------------
    def reset(self, seed: int, noise: float = 0.0) -> np.ndarray:
        obs, _ = self.env.reset(seed=int(seed))
        if noise > 0:
            obs = self._perturb(int(seed), float(noise))
        self.t, self.success, self.done = 0, False, False
        self.obs = flat_goal_obs(obs)
        self.trail = [self.obs[OBJECT].copy()]
        return self.obs

    def _perturb(self, seed: int, noise: float) -> dict:
        """Move the gripper, the cube and the goal by noise * U(-1, 1) per axis; the arm settles as in the env setup."""
        u = self.env.unwrapped
        d_grip, d_obj, d_goal = noise * np.random.default_rng([NOISE_STREAM, seed]).uniform(-1, 1, (3, 3))
        d_grip[2] = abs(d_grip[2])  # upwards only: a lower gripper would start inside the cube
        q = u._utils.get_joint_qpos(u.model, u.data, "object0:joint").copy()
        q[:2] = np.clip(q[:2] + d_obj[:2], TABLE_XY[0] + 2 * CUBE_HALF, TABLE_XY[1] - 2 * CUBE_HALF)
        u._utils.set_joint_qpos(u.model, u.data, "object0:joint", q)
        u._utils.reset_mocap2body_xpos(u.model, u.data)  # the mocap where the gripper is (as every env step does)
        u._utils.set_mocap_pos(u.model, u.data, "robot0:mocap", u.data.mocap_pos[0] + d_grip)
        for _ in range(10):  # as MujocoFetchEnv._env_setup moves the arm into place
            u._mujoco.mj_step(u.model, u.data, nstep=u.n_substeps)
        u.goal = u.goal + d_goal
        u.goal[2] = max(u.goal[2], u.height_offset)  # not below the table top
        return u._get_obs()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool, bool]:
        if self.done:
            raise RuntimeError("episode is over: call reset()")
        a = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        obs, _, _, _, info = self.env.step(a)
        self.obs = flat_goal_obs(obs)
        self.t += 1
        self.trail.append(self.obs[OBJECT].copy())
        self.success = bool(info["is_success"])  # cube within 5 cm of the goal now; the last step's counts
        self.done = self.t >= self.max_steps
        return self.obs, self.success, self.done

    def close(self) -> None:
        self.env.close()

    # -- scripted expert -------------------------------------------------------------------
    @staticmethod
    def expert_action(obs: np.ndarray, gain: float = 10.0, hover: float = 0.04) -> np.ndarray:
        """A proportional controller whose phase is read off the observation (no memory).

        width = finger opening (about 0.1 open, 0.048 around the cube, 0 closed on nothing).
        held (fingers around the cube)  -> move the cube to the goal, fingers closed;
        gripper at the cube             -> close (or open first if the fingers closed on nothing);
        above the cube                  -> descend onto it, fingers open;
        elsewhere                       -> go to `hover` above the cube, fingers open.
        Displacement a = clip(gain * (target - position), -1, 1) (x 5 cm per step in the env).
        """
        rel, goal, obj = obs[REL], obs[GOAL], obs[OBJECT]
        width = float(obs[FINGERS].sum())
        dist, dist_xy = float(np.linalg.norm(rel)), float(np.linalg.norm(rel[:2]))
        if dist < 0.02 and 0.03 < width < 0.065:
            move, fingers = goal - obj, -1.0
        elif dist < 0.01:
            move, fingers = rel, (1.0 if width <= 0.03 else -1.0)
        elif dist_xy < 0.01:
            move, fingers = rel, 1.0
        else:
            move, fingers = rel + np.array([0.0, 0.0, hover]), 1.0
        return np.append(np.clip(gain * move, -1.0, 1.0), fingers)

    # -- drawing -----------------------------------------------------------------------------
    def draw(self, size: int = 256, arrow: np.ndarray | None = None) -> Image.Image:
        """Top view (table, goal, cube's path, cube, gripper) above a side view (x-z); RGB."""
        img = Image.new("RGB", (size, size), (236, 232, 220))
        d = ImageDraw.Draw(img)
        (x0, y0), (x1, y1) = TABLE_XY
        top_h = int(size * 0.62)
        s = min(size / (x1 - x0), top_h / (y1 - y0)) * 0.95

        def top(p: np.ndarray) -> tuple[float, float]:  # (x, y) -> pixels; +y up
            return (size / 2 + (p[0] - (x0 + x1) / 2) * s, top_h / 2 - (p[1] - (y0 + y1) / 2) * s)

        def side(p: np.ndarray) -> tuple[float, float]:  # (x, z) -> pixels; table top at 0.4 m
            return (size / 2 + (p[0] - (x0 + x1) / 2) * s, size - 8 - (p[2] - 0.4) * s)

        d.rectangle([*top(np.array([x0, y1])), *top(np.array([x1, y0]))], fill=(205, 200, 188))
        d.line([side(np.array([x0, 0, 0.4])), side(np.array([x1, 0, 0.4]))], fill=(120, 116, 104), width=2)
        grip, obj, goal = self.obs[GRIP], self.obs[OBJECT], self.obs[GOAL]
        r = SUCCESS_RADIUS * s
        for view in (top, side):
            gx, gy = view(goal)
            d.ellipse([gx - r, gy - r, gx + r, gy + r], fill=(180, 230, 180), outline=(40, 150, 60), width=2)
            if len(self.trail) > 1:
                d.line([view(p) for p in self.trail], fill=(90, 140, 220), width=2)
            cx, cy = view(obj)
            c = CUBE_HALF * s
            d.rectangle([cx - c, cy - c, cx + c, cy + c], fill=(40, 160, 70) if self.success else (220, 170, 30))
            px, py = view(grip)
            w = max(2.0, float(self.obs[FINGERS].sum()) * s / 2)
            d.line([(px - w, py - 6), (px - w, py + 6)], fill=(60, 64, 84), width=3)
            d.line([(px + w, py - 6), (px + w, py + 6)], fill=(60, 64, 84), width=3)
        if arrow is not None:
            a = np.clip(arrow, -1, 1)
            px, py = top(grip)
            d.line([(px, py), (px + a[0] * 0.05 * s * 3, py - a[1] * 0.05 * s * 3)], fill=(250, 120, 20), width=3)
        return img


def expert_success(seeds: list[int], noise: float = 0.0, progress: bool = True) -> list[dict]:
    """The scripted expert on one episode per seed -> [{'seed', 'success', 'first_success_step'}]."""
    from tqdm import tqdm

    task, out = FetchTask(), []
    for seed in tqdm(seeds, desc="fetch expert", disable=not progress):
        obs, done, first = task.reset(seed, noise), False, None
        while not done:
            obs, success, done = task.step(task.expert_action(obs))
            if success and first is None:
                first = task.t
        out.append({"seed": int(seed), "success": task.success, "first_success_step": first})
    task.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure the scripted expert: python games/fetch.py --episodes 100 --episode-seed 0 [--noise 0.05]."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--episode-seed", type=int, default=0, help="reset seed of the first episode")
    p.add_argument("--noise", type=float, default=0.0, help="start/goal perturbation (m), see FetchTask.reset")
    a = p.parse_args(argv)
    res = expert_success(list(range(a.episode_seed, a.episode_seed + a.episodes)), a.noise)
    wins = sum(r["success"] for r in res)
    failed = [r["seed"] for r in res if not r["success"]]
    rate = 100 * wins / len(res)
    print(f"fetch expert: {wins}/{len(res)} = {rate:.1f} % success (noise {a.noise}); failed seeds {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
