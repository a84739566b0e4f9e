"""Policy viewer: two DBC/BC policies act live side by side on the same seed (docs/dbc.md).

Tasks: the Maze, FetchPick (both drawn from the state vector with Pillow: games/maze.py, games/fetch.py)
and Breakout (the real game's frames, or the dream's). Policies: the checkpoints under `policy_dir`
(BC, DBC, and the Diffusion Policy baseline), and for the Maze and FetchPick the scripted expert
(`<task>/expert`, always there, so a task with nothing trained yet can still be watched).

Routes (`make_router(settings)` builds the `APIRouter`; server/app.py includes it):

- `GET /viewer`                      the page (web/viewer.html; its JS/CSS under /viewer/static/)
- `GET /api/viewer/tasks`            tasks, their policies and modes, which expected policies are
                                     missing and the commands that train and evaluate them
- `GET /api/viewer/results/{task}`   the evaluation JSON written by training/dbc/evaluate.py
- `GET /api/viewer/plot/{task}.png`  its plot
- `GET /api/viewer/generalisation/{task}`  FetchPick's generalisation JSON (training/dbc/generalise.py)
- `WS  /ws/viewer`                   the live session, behind the checks `/ws` has (server/guard.py:
                                     Origin, the one session cap, message size and rate, start rate)

Websocket protocol. Client -> server, JSON with a `type`:
  {"type": "start", "task": "maze" | "fetch" | "breakout", "left": "maze/bc_s0", "right": "maze/dbc_s0",
   "seed": 0, "mode": "real" | "dream", "fps": 15, "paused": false}
  {"type": "pause"} | {"type": "resume"} | {"type": "stop"} | {"type": "speed", "fps": 30}
  {"type": "step"}   exactly one tick, then paused (refused without a running session). A session
                     started with "paused": true sends nothing but what each step asks for.
Server -> client:
  JSON {"type": "started", ...} | {"type": "tick", ...} | {"type": "stopped", "ticks": n}
     | {"type": "error", "code": ..., "message": ..., "fatal": ...} (codes and close codes: docs/protocol.md)
  followed, for every tick, by ONE binary message holding both sides' PNG frames:
  [uint32 big-endian length][PNG left][uint32 length][PNG right], so the two can never drift.

A tick reports per side: the action (a 2-D force for the Maze; for FetchPick the gripper's x, y, z
displacement and the fingers, with the cube's distance to the goal; probabilities for Breakout), and
the diffusion model's expert-likeness E[L_agent - L_expert] of the chosen action (<= 0: as
expert-like as the expert; in the dream, where no RAM expert exists, relative to phi's most
expert-like action; null without a diffusion model), the running success rate / mean return. Each
episode pair shares a seed. "stopped" counts the ticks the session sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from fastapi import APIRouter, HTTPException, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel, Field, ValidationError

from model.checkpoint import CheckpointError
from model.dbc.core import DIFFUSION_KIND, POLICY_KIND, JointDiffusion, act, load_dbc_policy, load_diffusion
from model.dbc.diffusion_policy import KIND as DIFFUSION_POLICY_KIND
from model.dbc.diffusion_policy import DiffusionPolicy, load_diffusion_policy
from server.guard import Guard, Refused, serve

if TYPE_CHECKING:
    from server.engine import Engine

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
TASKS = ("maze", "fetch", "breakout")
TITLES = {"maze": "Maze", "fetch": "FetchPick", "breakout": "Breakout"}
SCRIPTED = ("maze", "fetch")
"""Tasks whose scripted expert reads the state alone: listed as the policy `<task>/expert`."""
EXPECTED = {"maze": ("bc", "dbc"), "fetch": ("bc", "dbc", "diffusion_policy"), "breakout": ("bc", "dbc")}
"""The algorithms the training commands below make, per task; the page names the missing ones."""
CLIENT_TYPES = ("start", "pause", "resume", "speed", "stop", "step")
STATIC = {"viewer.js": "text/javascript", "viewer.css": "text/css", "style.css": "text/css"}  # the arcade's theme


@dataclass
class ViewerSettings:
    policy_dir: Path = field(default_factory=lambda: Path(os.environ.get("DBC_POLICY_DIR", ROOT / "policies")))
    """Folder of policy / diffusion checkpoints and eval.json per task (policies/<task>/...)."""
    world_model: Path = field(
        default_factory=lambda: Path(os.environ.get("DBC_WORLD_MODEL", ROOT / "checkpoints/Breakout.safetensors"))
    )
    """Breakout world model for dream mode."""
    world_model_factory: Any = None
    """Optional callable -> WorldModel (tests inject a tiny model); overrides `world_model`."""
    max_episode_steps: int = 1000
    """Breakout episodes (real or dream) are cut here in the viewer."""
    likeness_draws: int = 32
    """(n, eps) draws for the Monte-Carlo expert-likeness."""
    max_fps: float = 60.0

    def __post_init__(self) -> None:
        self.policy_dir, self.world_model = Path(self.policy_dir), Path(self.world_model)
        if self.max_episode_steps < 1 or self.likeness_draws < 1 or self.max_fps <= 0:
            raise ValueError("max_episode_steps, likeness_draws and max_fps must be positive")


def commands(task: str, out: str) -> dict[str, list[str]]:
    """The repository's commands (docs/dbc.md, "Reproduce") that write a task's policies and results
    into `out` (the folder this viewer reads): train (phi first), evaluate, and FetchPick's
    generalisation."""
    net = "--hidden 256 --layers 3"
    if task == "breakout":
        common = "--task breakout --demos 30000 --hidden 64 --batch-size 64"
        return {
            "train": [
                f"python -m training.dbc.train {common} --algo diffusion --embed-steps 3000 --steps 3000 "
                f"--diffusion-batch-size 256 --out {out}",
                f"python -m training.dbc.train {common} --algo bc,dbc --seeds 0,1,2 --lam 1 --steps 3000 --out {out}",
            ],
            "evaluate": [
                "python -m training.dbc.evaluate --task breakout --episodes 10 --max-steps 2000 --baselines --sample "
                f"--policies {out}/{{bc,dbc}}_s{{0,1,2}} --out {out}/eval.json"
            ],
        }
    if task == "maze":
        return {
            "train": [
                f"python -m training.dbc.train --task maze --algo diffusion {net} --steps 8000 --out {out}",
                f"python -m training.dbc.train --task maze --algo bc,dbc --seeds 0,1,2 --lam 1 {net} --steps 6000 "
                f"--out {out}",
            ],
            "evaluate": [
                "python -m training.dbc.evaluate --task maze --episodes 100 "
                f"--policies {out}/{{bc,dbc}}_s{{0,1,2}} --out {out}/eval.json --plot {out}/eval.png"
            ],
        }
    seeds, pols = "--seeds 0,1,2,3,4", f"{out}/{{bc,dbc,diffusion_policy}}_s{{0,1,2,3,4}}"
    return {
        "train": [
            f"python -m training.dbc.train --task fetch --algo diffusion {net} --steps 8000 --out {out}",
            f"python -m training.dbc.train --task fetch --algo bc,dbc {seeds} {net} --steps 6000 --out {out}",
            f"python -m training.dbc.train --task fetch --algo diffusion_policy {seeds} {net} --steps 6000 --out {out}",
        ],
        "evaluate": [
            f"python -m training.dbc.evaluate --task fetch --episodes 500 --baselines --policies {pols} "
            f"--out {out}/eval.json"
        ],
        "generalise": [
            "python -m training.dbc.generalise --noise-levels 0,0.02,0.04,0.06,0.08 --episodes 500 --baselines "
            f"--policies {pols} --out {out}/generalisation.json --plot docs/fetch_generalisation.png"
        ],
    }


def shown(path: Path) -> str:
    """A path as the commands above use it: relative to the repository root when inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------
class StartMsg(BaseModel):
    type: Literal["start"]
    task: str
    left: str
    right: str
    seed: int = 0
    mode: Literal["real", "dream"] = "real"
    fps: float = Field(15.0, gt=0)
    paused: bool = False


class SpeedMsg(BaseModel):
    type: Literal["speed"]
    fps: float = Field(gt=0)


# ---------------------------------------------------------------------------------------------
# Catalogue of shipped checkpoints
# ---------------------------------------------------------------------------------------------
class Catalogue:
    """Policies and diffusion models found under policy_dir, by task. Cached, loaded lazily."""

    def __init__(self, settings: ViewerSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._policies: dict[str, tuple[torch.nn.Module, dict]] = {}
        self._diffusion: dict[str, tuple[JointDiffusion, torch.nn.Module | None] | None] = {}
        self._world_model = None

    def scan(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {t: {"policies": [], "diffusion": None} for t in TASKS}
        root = self.settings.policy_dir
        for p in sorted(root.rglob("*.json")) if root.is_dir() else []:
            try:
                meta = json.loads(p.read_text()).get("meta", {})
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                continue
            task = meta.get("task")
            if task not in out or not p.with_suffix(".safetensors").is_file():
                continue
            name = p.relative_to(root).with_suffix("").as_posix()
            if meta.get("kind") in (POLICY_KIND, DIFFUSION_POLICY_KIND):
                entry = {"name": name, "algo": meta.get("algo"), "seed": meta.get("seed"), "kind": meta["kind"]}
                out[task]["policies"].append({**entry, "lambda": meta.get("lambda")})
            elif meta.get("kind") == DIFFUSION_KIND:
                out[task]["diffusion"] = name
        for task, info in out.items():
            if task in SCRIPTED:
                info["policies"].append(self.expert_entry(task))
            algos = {p["algo"] for p in info["policies"]}
            info["title"] = TITLES[task]
            info["modes"] = ["real", "dream"] if task == "breakout" else ["real"]
            info["has_results"] = (root / task / "eval.json").is_file()
            info["has_generalisation"] = (root / task / "generalisation.json").is_file()
            info["missing"] = [a for a in EXPECTED[task] if a not in algos]
            info["folder"] = shown(root / task)
            info["commands"] = commands(task, info["folder"])
        out["breakout"]["dream_available"] = (
            self.settings.world_model_factory is not None or self.settings.world_model.is_file()
        )
        return out

    @staticmethod
    def expert_entry(task: str) -> dict[str, Any]:
        return {"name": f"{task}/expert", "algo": "expert", "seed": None, "kind": "scripted", "lambda": None}

    def policy(self, task: str, name: str) -> tuple[torch.nn.Module | None, dict]:
        """-> (policy, meta); the scripted expert is (None, its meta)."""
        known = {p["name"]: p for p in self.scan()[task]["policies"]}
        if name not in known:
            raise ValueError(f"unknown policy {name!r} for task {task!r}: expected one of {', '.join(sorted(known))}")
        if known[name]["kind"] == "scripted":
            return None, {"task": task, **known[name]}
        with self._lock:
            if name not in self._policies:
                path = self.settings.policy_dir / name
                if known[name]["kind"] == DIFFUSION_POLICY_KIND:
                    self._policies[name] = load_diffusion_policy(path, task=task)
                else:
                    self._policies[name] = load_dbc_policy(path, task=task)
            return self._policies[name]

    def diffusion(self, task: str) -> tuple[JointDiffusion, torch.nn.Module | None] | None:
        with self._lock:
            if task not in self._diffusion:
                name = self.scan()[task]["diffusion"]
                self._diffusion[task] = None
                if name is not None:
                    phi, emb, _ = load_diffusion(self.settings.policy_dir / name, task=task)
                    self._diffusion[task] = (phi, emb)
            return self._diffusion[task]

    def world_model(self):
        with self._lock:
            if self._world_model is None:
                from model.world_model import WorldModel

                if self.settings.world_model_factory is not None:
                    self._world_model = self.settings.world_model_factory()
                elif self.settings.world_model.is_file():
                    self._world_model = WorldModel.from_snapshot(self.settings.world_model)
                else:
                    raise ValueError(f"dream mode needs a world model at {self.settings.world_model} (none found)")
            return self._world_model


# ---------------------------------------------------------------------------------------------
# One side of the split screen
# ---------------------------------------------------------------------------------------------
def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class Side:
    """A policy acting in its own copy of the task; reset(seed) / step() -> (info, PNG)."""

    def __init__(
        self, name: str, policy: torch.nn.Module | None, meta: dict, diffusion, settings: ViewerSettings
    ) -> None:
        self.name, self.policy, self.meta, self.settings = name, policy, meta, settings
        self.phi, self.embedder = diffusion if diffusion is not None else (None, None)
        self.episodes = 0
        self.successes = 0
        self.returns: list[float] = []
        self.done = False
        self.t = 0

    def stats(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "successes": self.successes,
            "success_rate": 100.0 * self.successes / self.episodes if self.episodes else None,
            "mean_return": float(np.mean(self.returns)) if self.returns else None,
        }

    def finish(self, success: bool, ret: float) -> None:
        self.done = True
        self.episodes += 1
        self.successes += int(success)
        self.returns.append(ret)


class StateSide(Side):
    """The Maze or FetchPick: the policy (an MLP, a Diffusion Policy, or the scripted expert when
    `policy` is None) acts on the state vector; the frame is drawn from that state with Pillow (the
    Maze from above with the ball's trail; FetchPick's top view above its side view, games/fetch.py)."""

    def __init__(self, *args: Any, task: str) -> None:
        super().__init__(*args)
        if task == "maze":
            from games.maze import MazeTask

            self.task = MazeTask()
        else:
            from games.fetch import FetchTask

            self.task = FetchTask()
        self.kind = task
        self.trail: list[np.ndarray] = []

    def reset(self, seed: int) -> bytes:
        obs = self.task.reset(seed)
        # A Diffusion Policy's reverse-chain noise: one generator per episode, seeded by its seed and
        # drawn as training/dbc/evaluate.py draws it for that episode.
        self.gen = torch.Generator().manual_seed(seed)
        self.trail, self.done, self.t = [obs[:2].copy()], False, 0
        return png(self.draw())

    def draw(self, arrow: np.ndarray | None = None) -> Image.Image:
        if self.kind == "maze":
            return self.task.draw(trail=self.trail, arrow=arrow)
        return self.task.draw(arrow=arrow)  # the cube's path is kept by FetchTask

    def act(self, obs: torch.Tensor, expert: np.ndarray | None) -> torch.Tensor:
        """obs (1, S) -> action (1, A) in [-1, 1]; `expert` is the scripted expert's (None if not needed)."""
        if self.policy is None:
            return torch.from_numpy(expert).float()[None]
        if isinstance(self.policy, DiffusionPolicy):
            cfg = self.policy.cfg
            return self.policy.sample(obs, torch.randn((1, cfg.num_steps, cfg.action_dim), generator=self.gen))
        return act(self.policy, obs)[0]

    def step(self) -> tuple[dict, bytes]:
        obs = torch.from_numpy(self.task.obs).float()[None]
        need_expert = self.policy is None or self.phi is not None
        expert = self.task.expert_action(self.task.obs) if need_expert else None
        a = self.act(obs, expert)
        likeness = None
        if self.phi is not None:
            e = torch.from_numpy(expert).float()[None]
            likeness = float(self.phi.expert_likeness(obs, a, e, draws=self.settings.likeness_draws)[0])
        self.task.step(a[0].numpy())
        self.t += 1
        self.trail.append(self.task.obs[:2].copy())
        if self.task.done:
            self.finish(self.task.success, float(self.task.success))
        info = {"action": [round(float(v), 3) for v in a[0]], "expert_likeness": likeness, "success": self.task.success}
        if self.kind == "fetch":
            from games.fetch import GOAL, OBJECT

            info["cube_to_goal"] = round(float(np.linalg.norm(self.task.obs[OBJECT] - self.task.obs[GOAL])), 4)
        return info, png(self.draw(arrow=a[0].numpy()))


class BreakoutSide(Side):
    """Real game (RAM expert available) or the dream (world model), the policy seeing 4 stacked frames."""

    def __init__(self, *args: Any, dream=None) -> None:
        super().__init__(*args)
        from games.envs import action_meanings, make_env
        from games.experts import make_policy

        self.env = make_env("Breakout")
        self.meanings = action_meanings(self.env)
        self.expert = make_policy("Breakout", "expert")
        self.rng = np.random.default_rng(0)
        self.world_model = dream
        self.dreams = None
        self.ret = 0.0

    def reset(self, seed: int) -> bytes:
        from games.envs import FrameStack

        frame, _ = self.env.reset(seed=seed)
        self.gen = torch.Generator().manual_seed(seed)  # actions are drawn, as in `training.dbc.evaluate --sample`
        self.stack = FrameStack()
        self.stack.reset(frame)
        self.done, self.t, self.ret = False, 0, 0.0
        if self.world_model is not None:
            from model.world_model import Dreams

            # Real context: serve, then 2 NOOPs -> 4 frames and the 3 actions between them.
            frames, actions = [frame], []
            for a in (1, 0, 0):
                frame, *_ = self.env.step(a)
                frames.append(frame)
                actions.append(a)
                self.stack.push(frame)
            self.dreams = Dreams(self.world_model, seed=seed)
            self.dreams.reset(torch.from_numpy(np.stack(frames))[None], torch.tensor([actions]))
        return png(Image.fromarray(self.stack.get()[-1]))

    def step(self) -> tuple[dict, bytes]:
        obs = torch.from_numpy(self.stack.get())[None]
        a, probs = act(self.policy, obs, greedy=False, generator=self.gen)
        action = int(a[0])
        likeness, ref = None, None
        if self.phi is not None:
            losses = self.phi.discrete_losses(self.embedder.embed(obs), draws=self.settings.likeness_draws)[0]
            ref = int(losses.argmin()) if self.dreams is not None else int(self.expert(self.env, self.rng))
            likeness = float(losses[action] - losses[ref])
        if self.dreams is None:
            frame, r, term, trunc, _ = self.env.step(action)
            end = term or trunc
        else:
            frames, rew, ends = self.dreams.step(torch.tensor([action]))  # reward and end sampled
            frame, r, end = frames[0].numpy(), float(rew[0]), bool(ends[0])
        self.stack.push(frame)
        self.ret += float(r)
        self.t += 1
        if end or self.t >= self.settings.max_episode_steps:
            self.finish(False, self.ret)
        info = {
            "action": action,
            "action_name": self.meanings[action],
            "probs": [round(float(p), 3) for p in probs[0]],
            "expert_likeness": likeness,
            "reference_action": None if ref is None else self.meanings[ref],
            "return": self.ret,
        }
        return info, png(Image.fromarray(frame))


def make_side(cat: Catalogue, task: str, name: str, mode: str) -> Side:
    if task != "breakout" and mode != "real":
        raise ValueError(f"the {task} task has no dream mode: use mode 'real'")
    policy, meta = cat.policy(task, name)
    diffusion = cat.diffusion(task)
    if task != "breakout":
        return StateSide(name, policy, meta, diffusion, cat.settings, task=task)
    dream = cat.world_model() if mode == "dream" else None
    return BreakoutSide(name, policy, meta, diffusion, cat.settings, dream=dream)


def pack_frames(frames: list[bytes]) -> bytes:
    """[uint32 BE length][PNG] per side, in one binary message."""
    return b"".join(struct.pack(">I", len(f)) + f for f in frames)


# ---------------------------------------------------------------------------------------------
# Session
# ---------------------------------------------------------------------------------------------
class Session:
    """Both sides step in lock-step; a new episode pair (seed + 1) starts when both are done."""

    def __init__(self, cat: Catalogue, msg: StartMsg) -> None:
        if msg.task not in TASKS:
            raise ValueError(f"unknown task {msg.task!r}: expected one of {', '.join(TASKS)}")
        self.msg = msg
        self.sides = [make_side(cat, msg.task, msg.left, msg.mode), make_side(cat, msg.task, msg.right, msg.mode)]
        self.seed = msg.seed
        self.episode = 0
        self.step_count = 0
        self.frames = [s.reset(self.seed) for s in self.sides]

    def tick(self) -> tuple[dict, bytes]:
        if all(s.done for s in self.sides):
            self.seed += 1
            self.episode += 1
            self.frames = [s.reset(self.seed) for s in self.sides]
        infos = []
        for i, side in enumerate(self.sides):
            if side.done:  # wait for the other side, showing the last frame
                infos.append({"done": True})
                continue
            info, self.frames[i] = side.step()
            infos.append({**info, "done": side.done})
        self.step_count += 1
        sides = [
            {"name": s.name, "algo": s.meta.get("algo"), "t": s.t, **info, "stats": s.stats()}
            for s, info in zip(self.sides, infos, strict=True)
        ]
        tick = {"type": "tick", "episode": self.episode, "seed": self.seed, "step": self.step_count, "sides": sides}
        return tick, pack_frames(self.frames)


# ---------------------------------------------------------------------------------------------
# Router
# ---------------------------------------------------------------------------------------------
def make_router(settings: ViewerSettings | None = None) -> APIRouter:
    settings = settings or ViewerSettings()
    cat = Catalogue(settings)
    r = APIRouter()
    r.catalogue = cat  # type: ignore[attr-defined]

    def check(task: str) -> str:
        if task not in TASKS:
            raise HTTPException(404, f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
        return task

    @r.get("/viewer", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "viewer.html", media_type="text/html")

    @r.get("/viewer/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(WEB / name, media_type=STATIC[name])

    @r.get("/api/viewer/tasks")
    def tasks() -> dict:
        return {"tasks": cat.scan()}

    def task_file(task: str, name: str, what: str) -> Path:
        """A task's file in the policy folder, or 404 naming what is missing."""
        path = settings.policy_dir / check(task) / name
        if not path.is_file():
            raise HTTPException(404, f"no {what} for {task} ({path} missing)")
        return path

    @r.get("/api/viewer/results/{task}")
    def results(task: str) -> JSONResponse:
        return JSONResponse(json.loads(task_file(task, "eval.json", "evaluation results").read_text()))

    @r.get("/api/viewer/plot/{task}.png")
    def plot(task: str) -> FileResponse:
        return FileResponse(task_file(task, "eval.png", "plot"), media_type="image/png")

    @r.get("/api/viewer/generalisation/{task}")
    def generalisation(task: str) -> JSONResponse:
        return JSONResponse(json.loads(task_file(task, "generalisation.json", "generalisation results").read_text()))

    @r.websocket("/ws/viewer")
    async def ws(websocket: WebSocket) -> None:
        await serve(websocket, websocket.app.state.engine, lambda w, e: ViewerConnection(w, e, cat, settings))

    return r


class ViewerConnection(Guard):
    """One viewer websocket: a Session ticking at the chosen fps, a tick's JSON and its frames sent
    back to back."""

    types = CLIENT_TYPES

    def __init__(self, ws: WebSocket, engine: Engine, cat: Catalogue, settings: ViewerSettings) -> None:
        super().__init__(ws, engine)
        self.cat, self.settings = cat, settings
        self.session: Session | None = None
        self.runner: asyncio.Task | None = None
        self.ticking = asyncio.Lock()  # one tick at a time: the runner's, or a step's
        self.sent = 0  # ticks of the current session sent
        self.paused = False
        self.fps = 15.0

    def metrics(self) -> dict[str, Any]:
        s = self.session
        task, ticks = (s.msg.task, s.step_count) if s else (None, 0)
        return {**super().metrics(), "endpoint": "viewer", "task": task, "ticks": ticks}

    async def handle(self, msg: dict[str, Any]) -> None:
        try:
            kind = msg["type"]
            if kind == "start":
                await self.start(StartMsg(**msg))
            elif kind == "pause":
                self.paused = True
            elif kind == "resume":
                self.paused = False
            elif kind == "speed":
                self.fps = SpeedMsg(**msg).fps
            elif kind == "step":
                await self.step()
            elif kind == "stop":
                await self.stop()
                await self.send_raw(json.dumps({"type": "stopped", "ticks": self.sent}))
        except ValidationError as e:
            await self.reject("invalid", _first_error(e))
        except Refused:
            raise
        except (ValueError, CheckpointError) as e:
            await self.reject("refused", str(e).splitlines()[0])

    async def start(self, start: StartMsg) -> None:
        self.check_start()
        await self.stop()
        session = await asyncio.to_thread(Session, self.cat, start)
        self.session, self.paused, self.fps, self.sent = session, start.paused, start.fps, 0
        started = {
            "type": "started",
            "task": start.task,
            "mode": start.mode,
            "seed": start.seed,
            "paused": start.paused,
            "sides": [
                {"name": s.name, "algo": s.meta.get("algo"), "lambda": s.meta.get("lambda"), "seed": s.meta.get("seed")}
                for s in session.sides
            ],
            "likeness": session.sides[0].phi is not None,
        }
        await self.send_raw(json.dumps(started), pack_frames(session.frames))
        self.runner = asyncio.create_task(self.run_session(session))
        self.start_bucket.refill_from_now()  # the limit counts from the end of this start

    async def tick(self, session: Session) -> None:
        """One tick computed and sent (its JSON, then its frames); the caller holds `ticking`."""
        tick, frames = await asyncio.to_thread(session.tick)
        await self.send_raw(json.dumps(tick), frames)
        self.sent += 1

    async def step(self) -> None:
        """Pause, then exactly one tick (after the one in flight, if any)."""
        if self.runner is None or self.session is None:
            raise ValueError("no running session to step: send start first")
        self.paused = True
        async with self.ticking:
            try:
                await self.tick(self.session)
            except Exception:  # noqa: BLE001 - as in run_session
                log.exception("viewer session %s failed", self.id)
                await self.session_failed()

    async def run_session(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.closed:
                if self.paused:
                    await asyncio.sleep(0.05)
                    continue
                t0 = loop.time()
                async with self.ticking:
                    if self.paused:  # paused (or stepped) while this tick waited for the lock
                        continue
                    await self.tick(session)
                await asyncio.sleep(max(0.0, 1.0 / min(self.fps, self.settings.max_fps) - (loop.time() - t0)))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one failed session must not take the server down
            log.exception("viewer session %s failed", self.id)
            await self.session_failed()

    async def stop(self) -> None:
        """End the session after the tick in flight, if any, has been sent whole (its JSON and its
        frames), so "stopped" counts every tick sent and nothing follows it."""
        if self.runner is not None:
            async with self.ticking:
                self.runner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.runner
            self.runner = None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"bad message: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
