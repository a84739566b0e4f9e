"""The Maze task of the DBC paper: a 2-D point mass in the medium maze (docs/design.md §5.3).

gymnasium-robotics' `PointMaze_Medium-v3` (MuJoCo from PyPI, no rendering library needed)
with the paper's protocol: observation = [position (2), velocity (2), goal (2)], actions in
[-1, 1]^2, success when within 0.5 of the goal, 400-step cap. Start and goal are drawn by the
environment from its free cells for every seed.

Also here: the scripted expert (shortest path on the maze grid + a PD controller) and a
top-down drawing with Pillow (the viewer's frames), so nothing needs an OpenGL context.
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw

ENV_ID = "PointMaze_Medium-v3"
OBS_DIM = 6
ACTION_DIM = 2
SUCCESS_RADIUS = 0.5
MAX_STEPS = 400


def _register() -> None:
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)


def flat_goal_obs(obs: dict) -> np.ndarray:
    """A gymnasium goal-env observation as one vector: observation, then the desired goal."""
    return np.concatenate([obs["observation"], obs["desired_goal"]]).astype(np.float64)


class MazeTask:
    """One PointMaze episode at a time: reset(seed) -> obs (6,), step(a) -> (obs, success, done)."""

    def __init__(self, max_steps: int = MAX_STEPS, success_radius: float = SUCCESS_RADIUS) -> None:
        _register()
        # continuing_task=True: the env never ends an episode itself; success uses the paper's 0.5.
        self.env = gym.make(ENV_ID, continuing_task=True, reset_target=False, max_episode_steps=None)
        maze = self.env.unwrapped.maze
        self.grid = np.array(maze.maze_map, dtype=np.int64)  # 1 = wall, 0 = free; row 0 is the top (+y)
        self.scale = float(maze.maze_size_scaling)
        self.x_center, self.y_center = float(maze.x_map_center), float(maze.y_map_center)
        self.max_steps, self.success_radius = max_steps, success_radius
        self.obs = np.zeros(OBS_DIM)
        self.t, self.success, self.done = 0, False, False
        self._dist: np.ndarray | None = None

    # -- geometry --------------------------------------------------------------------------
    def cell_of(self, xy: np.ndarray) -> tuple[int, int]:
        col = int(np.floor((xy[0] + self.x_center) / self.scale))
        row = int(np.floor((self.y_center - xy[1]) / self.scale))
        return min(max(row, 0), self.grid.shape[0] - 1), min(max(col, 0), self.grid.shape[1] - 1)

    def cell_center(self, rc: tuple[int, int]) -> np.ndarray:
        return np.array([(rc[1] + 0.5) * self.scale - self.x_center, self.y_center - (rc[0] + 0.5) * self.scale])

    def cells_of(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised cell_of: points (P, 2) -> rows (P,), cols (P,)."""
        col = np.floor((xy[:, 0] + self.x_center) / self.scale).astype(np.int64)
        row = np.floor((self.y_center - xy[:, 1]) / self.scale).astype(np.int64)
        return np.clip(row, 0, self.grid.shape[0] - 1), np.clip(col, 0, self.grid.shape[1] - 1)

    def visible(self, a: np.ndarray, b: np.ndarray, margin: float = 0.2) -> bool:
        """True if a square of half-width `margin` swept from a to b touches no wall cell."""
        k = max(2, int(np.linalg.norm(b - a) / 0.1))
        pts = a + (b - a) * np.linspace(0, 1, k + 1)[:, None]  # (k+1, 2)
        corners = np.array([[-margin, -margin], [-margin, margin], [margin, -margin], [margin, margin]])
        rows, cols = self.cells_of((pts[:, None] + corners[None]).reshape(-1, 2))  # (k+1, 4, 2) -> (4(k+1), 2)
        return not self.grid[rows, cols].any()

    # -- episode ---------------------------------------------------------------------------
    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=int(seed))
        self.t, self.success, self.done = 0, False, False
        self._dist = None
        self.obs = flat_goal_obs(obs)
        return self.obs

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool, bool]:
        if self.done:
            raise RuntimeError("episode is over: call reset()")
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        obs, *_ = self.env.step(a)
        self.obs = flat_goal_obs(obs)
        self.t += 1
        self.success = bool(np.linalg.norm(self.obs[:2] - self.obs[4:6]) <= self.success_radius)
        self.done = self.success or self.t >= self.max_steps
        return self.obs, self.success, self.done

    def close(self) -> None:
        self.env.close()

    # -- scripted expert -------------------------------------------------------------------
    def _distance_map(self, goal_cell: tuple[int, int]) -> np.ndarray:
        """BFS steps from every free cell to the goal cell (inf for walls)."""
        dist = np.full(self.grid.shape, np.inf)
        dist[goal_cell] = 0
        queue = deque([goal_cell])
        while queue:
            r, c = queue.popleft()
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                rr, cc = r + dr, c + dc
                if self.grid[rr, cc] == 0 and dist[rr, cc] == np.inf:
                    dist[rr, cc] = dist[r, c] + 1
                    queue.append((rr, cc))
        return dist

    def path(self, pos: np.ndarray, goal: np.ndarray) -> list[np.ndarray]:
        """Cell centres of a shortest grid path from pos's cell to the goal, ending at the goal itself."""
        if self._dist is None:
            self._dist = self._distance_map(self.cell_of(goal))
        rc = self.cell_of(pos)
        points: list[np.ndarray] = []
        while self._dist[rc] > 0 and np.isfinite(self._dist[rc]):
            r, c = rc
            rc = min(((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)), key=lambda q: self._dist[q])
            points.append(self.cell_center(rc))
        return [*points[:-1], goal.copy()] if points else [goal.copy()]

    def expert_action(self, obs: np.ndarray, kp: float = 10.0, kd: float = 1.0, lookahead: int = 4) -> np.ndarray:
        """PD control towards the farthest point of the shortest path still in straight sight.

        a = clip(kp * (target - pos) - kd * vel, -1, 1).
        """
        pos, vel, goal = obs[:2], obs[2:4], obs[4:6]
        target = None
        for p in self.path(pos, goal)[:lookahead]:
            if target is not None and not self.visible(pos, p):
                break
            target = p
        return np.clip(kp * (target - pos) - kd * vel, -1.0, 1.0)

    # -- drawing -----------------------------------------------------------------------------
    def draw(
        self, size: int = 256, trail: list[np.ndarray] | None = None, arrow: np.ndarray | None = None
    ) -> Image.Image:
        """Top-down RGB image: walls, goal, trail, the ball and (optionally) the action as an arrow."""
        rows, cols = self.grid.shape
        px = size / max(rows, cols)
        img = Image.new("RGB", (size, size), (236, 232, 220))
        d = ImageDraw.Draw(img)
        for r in range(rows):
            for c in range(cols):
                if self.grid[r, c]:
                    d.rectangle([c * px, r * px, (c + 1) * px - 1, (r + 1) * px - 1], fill=(60, 64, 84))

        def to_px(xy: np.ndarray) -> tuple[float, float]:
            return ((xy[0] + self.x_center) / self.scale * px, (self.y_center - xy[1]) / self.scale * px)

        gx, gy = to_px(self.obs[4:6])
        rad = self.success_radius / self.scale * px
        d.ellipse([gx - rad, gy - rad, gx + rad, gy + rad], fill=(180, 230, 180), outline=(40, 150, 60), width=2)
        if trail and len(trail) > 1:
            d.line([to_px(p) for p in trail], fill=(90, 140, 220), width=2)
        bx, by = to_px(self.obs[:2])
        br = 0.1 / self.scale * px + 2
        color = (40, 160, 70) if self.success else (220, 70, 50)
        d.ellipse([bx - br, by - br, bx + br, by + br], fill=color)
        if arrow is not None:
            a = np.clip(arrow, -1, 1)
            ex, ey = bx + a[0] * px * 0.8, by - a[1] * px * 0.8
            d.line([(bx, by), (ex, ey)], fill=(250, 170, 20), width=3)
        return img
