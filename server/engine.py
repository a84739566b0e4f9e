"""What the app holds for its lifetime: the loaded games, their inference workers, the emulator
thread pool and the open connections. Built once by the app's lifespan."""

from __future__ import annotations

import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from games.contexts import play_contexts
from games.envs import UnknownGameError, action_meanings
from model.checkpoint import CheckpointError, read_meta
from model.device import pick_device
from model.world_model import WorldModel
from model.world_model.onnx_backend import INT8_CALIBRATION_CONTEXTS, use_backend
from server import controls
from server.config import Settings
from server.keymap import keymap
from server.model_process import InferenceProcessError, ModelProcess, ModelSpec
from server.session import GameRuntime
from server.worker import InferenceWorker

log = logging.getLogger(__name__)

KEEP_SAVED_EPISODES = 1000  # download ids remembered (the oldest are forgotten first)


def discover_snapshots(folder: Path) -> list[Path]:
    """Snapshot stems in a folder: every <name>.json that has a <name>.safetensors beside it."""
    if not folder.is_dir():
        return []
    return [p.with_suffix("") for p in sorted(folder.glob("*.json")) if p.with_suffix(".safetensors").is_file()]


def snapshot_kind(path: Path) -> str | None:
    """'world_model', 'agent', ... from the snapshot's header; None where it cannot be read (the
    full load then reports why)."""
    try:
        return read_meta(path).get("kind")
    except CheckpointError:
        return None


@lru_cache(maxsize=64)
def emulator_actions(game: str) -> tuple[str, ...]:
    """The emulator's minimal action set (cached: building an env takes a second)."""
    return tuple(action_meanings(game))


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process, this one by default (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.games: dict[str, GameRuntime] = {}
        self.load_errors: list[str] = []
        self.connections: dict[str, Any] = {}
        self.executor = ThreadPoolExecutor(settings.env_threads, thread_name_prefix="emulator")
        self.started = time.time()
        self.rejected_full = 0
        self.closed_sessions = 0
        self.saved_episodes: dict[str, Path] = {}  # opaque download id -> an episode file a session saved

    # -- lifetime ----------------------------------------------------------------------------
    def start(self) -> None:
        for name, spec in self.settings.policies.items():
            controls.register_from_spec(name, spec)
        device = pick_device(self.settings.device)
        controls.forget_agents()
        paths = [Path(p).with_suffix("") for p in self.settings.checkpoints]
        paths += discover_snapshots(Path(self.settings.checkpoint_dir))
        agents = [p for p in paths if snapshot_kind(p) == "agent"]
        for path in paths:
            if path not in agents:
                self._try(self._load, path, device)
        for path in agents:  # after the world models: an agent plays a game that is served
            self._try(self._load_agent, path)
        if not self.games:
            log.warning(
                "no world-model snapshots found in %s; see docs/serving.md to make a development one",
                self.settings.checkpoint_dir,
            )

    def in_process(self, device: Any) -> bool:
        """Whether the dream runs in a child process (settings.inference; auto: on the CPU)."""
        mode = self.settings.inference
        return mode == "process" or (mode == "auto" and getattr(device, "type", str(device)) == "cpu")

    def _load(self, path: Path, device: Any) -> None:
        in_process = self.in_process(device)
        # With an inference process this copy only answers questions (config, actions, sampler).
        model = WorldModel.from_snapshot(path, device, self.settings.precision, freeze=not in_process)
        game = model.cfg.game
        if game in self.games:
            log.info("%s already served from %s; ignoring %s", game, self.games[game].snapshot, path)
            return
        meanings = list(model.cfg.action_meanings)
        env_meanings = list(emulator_actions(game))
        if meanings != env_meanings:
            raise ValueError(f"model actions {meanings} differ from the emulator's {env_meanings}")
        calibration = None
        if self.settings.backend == "onnx-int8":  # int8 ranges from real play of the game
            calibration = play_contexts(game, INT8_CALIBRATION_CONTEXTS, context_frames=model.cfg.context_frames)
        runner = None
        if in_process:  # server/model_process.py: the child loads the snapshot and picks the backend
            spec = ModelSpec(
                str(path),
                str(device),
                self.settings.precision,
                self.settings.backend,
                self.settings.threads,
                None if calibration is None else tuple(np.asarray(a) for a in calibration),
            )
            runner = ModelProcess(spec, name=game)
            model.backend = runner.backend
        elif self.settings.backend != "torch":  # model/world_model/onnx_backend.py; an ONNX graph is cached per weights
            model.backend = use_backend(model, self.settings.backend, calibration)
        worker = InferenceWorker(model, self.settings.max_batch, name=game, runner=runner)
        worker.start()
        self.games[game] = GameRuntime(game, model, worker, meanings, keymap(meanings), path)
        where = f"inference process {runner.pid}, {runner.threads} threads" if runner else "inference thread"
        log.info("serving %s from %s (%s preset, %s backend, %s)", game, path, model.cfg.preset, model.backend, where)

    def _try(self, load: Any, path: Path, *args: Any) -> None:
        try:
            load(path, *args)
        except (CheckpointError, UnknownGameError, ValueError, OSError, InferenceProcessError) as e:
            msg = f"skipping snapshot {path}: {e}"
            log.error(msg)
            self.load_errors.append(msg)

    def _load_agent(self, path: Path) -> None:
        game = read_meta(path).get("config", {}).get("game")
        if game not in self.games:
            raise ValueError(f"an agent for {game!r}, but no world model for it is served")
        controls.register_agent(game, str(path), self.games[game].meanings)
        self.games[game].agent = path
        log.info("agent for %s from %s", game, path)

    def stop(self) -> None:
        for rt in self.games.values():
            rt.worker.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- admission ---------------------------------------------------------------------------
    def admit(self, conn_id: str, conn: Any) -> bool:
        if len(self.connections) >= self.settings.max_sessions:
            self.rejected_full += 1
            return False
        self.connections[conn_id] = conn
        return True

    def release(self, conn_id: str) -> None:
        if self.connections.pop(conn_id, None) is not None:
            self.closed_sessions += 1

    # -- saved episodes ----------------------------------------------------------------------
    def remember_episode(self, path: Path) -> str:
        """The opaque id GET /api/episodes/{id} serves this file by (the same id for the same file).
        Only files a session saved get one: a URL can name no other path."""
        for key, known in self.saved_episodes.items():
            if known == path:
                return key
        key = secrets.token_urlsafe(16)
        self.saved_episodes[key] = path
        while len(self.saved_episodes) > KEEP_SAVED_EPISODES:
            del self.saved_episodes[next(iter(self.saved_episodes))]
        return key

    # -- views -------------------------------------------------------------------------------
    def game_info(self, rt: GameRuntime) -> dict[str, Any]:
        return {
            "game": rt.game,
            "action_meanings": rt.meanings,
            "keymap": rt.keymap,
            "policies": controls.available(rt.game),
            "control_modes": controls.control_modes(rt.game),
            "context_frames": rt.context_frames,
            "preset": rt.model.cfg.preset,
            "snapshot": rt.snapshot.name,
            "agent": rt.agent.name if rt.agent else None,
        }

    def inference_pids(self) -> list[int]:
        return [rt.worker.runner.pid for rt in self.games.values() if isinstance(rt.worker.runner, ModelProcess)]

    def inference_info(self, rt: GameRuntime) -> dict[str, Any]:
        """Where and how a game dreams: backend, process or thread, torch threads, pending dreams."""
        proc = rt.worker.runner if isinstance(rt.worker.runner, ModelProcess) else None
        return {
            "pending": rt.worker.pending,
            "backend": rt.model.backend,
            "inference": "process" if proc else "thread",
            "threads": proc.threads if proc else torch.get_num_threads(),
            "process_restarts": proc.restarts if proc else 0,
        }

    def metrics(self) -> dict[str, Any]:
        sessions = [c.metrics() for c in list(self.connections.values())]
        return {
            "uptime_s": time.time() - self.started,
            "rss_bytes": rss_bytes() + sum(rss_bytes(p) for p in self.inference_pids()),  # with the model processes
            "pid": os.getpid(),
            "sessions": {
                "active": len(sessions),
                "cap": self.settings.max_sessions,
                "closed": self.closed_sessions,
                "rejected_full": self.rejected_full,
                "list": sessions,
            },
            "fps": {"total": sum(s["fps"] for s in sessions)},
            "drops": sum(s["drops"] for s in sessions),
            "workers": {g: {**rt.worker.stats.to_dict(), **self.inference_info(rt)} for g, rt in self.games.items()},
        }
