"""The inference worker: one thread per model that batches the dream steps of all sessions.

Sessions submit one dream step each (a 1-dream batch) and await a future. The thread takes every
pending request, groups them by sampler (same sigma schedule), concatenates each group into one
`WorldModel.dream_step` call and hands each session its slice. When the thread is busy, requests
pile up and the next call is bigger: N players cost far less than N times one. On the CPU the call
goes to the model's own process (server/model_process.py), whose main thread runs torch several
times faster than a second thread of this one could; the thread here only batches and waits.

Sessions drift out of step (one returns while three are still computing, and from then on the
batches go 1, 3, 1, 3...), so the thread waits a few milliseconds for the sessions that dreamed
in the last second before it starts a batch without them (`gather_ms`).

Each session brings the randomness of its step (`DreamNoise`, drawn from its own generator), so
a seeded session dreams the same frames, rewards and ends whatever batch it lands in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from model.world_model import DreamNoise, Hidden, WorldModel
from model.world_model.sampler import SamplerConfig
from server.model_process import ModelProcess

log = logging.getLogger(__name__)


@dataclass
class _Job:
    kind: str  # "dream" or "burn_in"
    args: tuple
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    key: tuple = ()
    owner: Any = None


@dataclass
class WorkerStats:
    calls: int = 0
    frames: int = 0
    busy_s: float = 0.0
    batch_sizes: Counter = field(default_factory=Counter)
    recent_ms_per_frame: deque = field(default_factory=lambda: deque(maxlen=64))
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        recent = list(self.recent_ms_per_frame)
        return {
            "calls": self.calls,
            "frames": self.frames,
            "mean_batch": self.frames / self.calls if self.calls else 0.0,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "ms_per_frame": sum(recent) / len(recent) if recent else 0.0,
            "busy_s": self.busy_s,
            "errors": self.errors,
        }


class InferenceWorker:
    QUIET_S = 1.0
    """A session that has not asked for a dream for this long is not waited for."""

    def __init__(
        self,
        model: WorldModel,
        max_batch: int = 16,
        name: str = "worker",
        gather_ms: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        runner: ModelProcess | None = None,
    ) -> None:
        """clock: the time source for "recently active" (seconds); tests pass their own.
        runner: what computes the batches, a `ModelProcess` (server/model_process.py; closed with
        the worker), else `model` itself in this thread."""
        self.model = model
        self.runner = runner if runner is not None else model
        self._process = runner if isinstance(runner, ModelProcess) else None
        self.max_batch = max_batch
        self.gather_s = gather_ms / 1000
        self.clock = clock
        self._recent: dict[Any, float] = {}  # owner -> last time it asked for a dream
        self.stats = WorkerStats()
        self._jobs: list[_Job] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"inference-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._process is not None:
            self._process.close()

    @property
    def pending(self) -> int:
        return len(self._jobs)

    # -- called from the event loop ----------------------------------------------------------
    def _submit(self, kind: str, args: tuple, key: tuple = (), owner: Any = None) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cv:
            if self._stop:
                raise RuntimeError("inference worker is stopped")
            self._jobs.append(_Job(kind, args, fut, loop, key, owner))
            if owner is not None:
                self._recent[owner] = self.clock()
            self._cv.notify()
        return fut

    def _expected(self) -> int:
        """Sessions that dreamed in the last QUIET_S seconds (called with the lock held)."""
        now = self.clock()
        for owner in [o for o, t in self._recent.items() if now - t > self.QUIET_S]:
            del self._recent[owner]
        return len(self._recent)

    def _gather(self) -> None:
        """Wait up to gather_s for every recently active session to submit (lock held)."""
        deadline = time.monotonic() + self.gather_s
        while not self._stop:
            owners = {j.owner for j in self._jobs if j.kind == "dream"}
            left = deadline - time.monotonic()
            # A burn-in alone (a new game, a resync) never waits.
            if not owners or len(owners) >= min(self._expected(), self.max_batch) or left <= 0:
                return
            self._cv.wait(left)

    async def dream(
        self,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        hidden: Hidden,
        sampler: SamplerConfig,
        owner: Any = None,
        noise: DreamNoise | None = None,
    ) -> tuple[torch.Tensor, float, float, Hidden, float]:
        """One dream: obs_ctx (1, L, C, H, W), act_ctx (1, L), hidden ((1, 1, D), (1, 1, D)).
        owner: who asks (a session), so the batcher knows whom to wait for.
        noise: the step's randomness for this one dream (DreamNoise of batch 1), drawn from the
        session's own generator; None draws it from torch's global generator.

        Returns next frame (1, C, H, W), the sampled reward, the end probability, new hidden, and
        the batch's milliseconds.
        """
        if noise is None:
            noise = DreamNoise.draw(1, obs_ctx.shape[2:])
        key = dataclasses.astuple(sampler)
        return await self._submit("dream", (obs_ctx, act_ctx, hidden, sampler, noise), key, owner)

    async def burn_in(self, obs_ctx: torch.Tensor, act_prev: torch.Tensor) -> Hidden:
        return await self._submit("burn_in", (obs_ctx, act_prev))

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._stop:
                    self._cv.wait()
                self._gather()
                if self._stop:
                    jobs, self._jobs = self._jobs, []
                    for job in jobs:
                        _resolve(job, exc=RuntimeError("inference worker stopped"))
                    return
                jobs, self._jobs = self._jobs, []
            for job in [j for j in jobs if j.kind == "burn_in"]:
                try:
                    _resolve(job, self.runner.burn_in(*job.args))
                except Exception as e:  # noqa: BLE001 - reported to the session that asked
                    self.stats.errors += 1
                    _resolve(job, exc=e)
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                if job.kind == "dream":
                    groups.setdefault(job.key, []).append(job)
            for group in groups.values():
                for i in range(0, len(group), self.max_batch):
                    self._dream_batch(group[i : i + self.max_batch])

    def _dream_batch(self, jobs: list[_Job]) -> None:
        jobs = [j for j in jobs if not j.future.cancelled()]
        if not jobs:
            return
        t0 = time.perf_counter()
        try:
            # B sessions of (1, L, C, H, W) -> (B, L, C, H, W); LSTM state (1, 1, D) -> (1, B, D).
            obs = torch.cat([j.args[0] for j in jobs])
            act = torch.cat([j.args[1] for j in jobs])
            h = torch.cat([j.args[2][0] for j in jobs], dim=1)
            c = torch.cat([j.args[2][1] for j in jobs], dim=1)
            noise = DreamNoise.cat([j.args[4] for j in jobs])  # each session's own draws
            out = self.runner.dream_step(obs, act, (h, c), jobs[0].args[3], noise=noise)
            nxt, (h, c) = out.next_obs, out.hidden
            # the sampled reward (as an agent in the dream sees it) and the end probability
            reward, end = out.reward.float().cpu(), out.end_prob.float().cpu()
        except Exception as e:  # noqa: BLE001 - a failed batch fails its sessions, not the server
            log.exception("dream batch of %d failed", len(jobs))
            self.stats.errors += 1
            for job in jobs:
                _resolve(job, exc=e)
            return
        dt = time.perf_counter() - t0
        ms = dt * 1000 / len(jobs)
        self.stats.calls += 1
        self.stats.frames += len(jobs)
        self.stats.busy_s += dt
        self.stats.batch_sizes[len(jobs)] += 1
        self.stats.recent_ms_per_frame.append(ms)
        for i, job in enumerate(jobs):
            hidden = (h[:, i : i + 1].clone(), c[:, i : i + 1].clone())
            _resolve(job, (nxt[i : i + 1], float(reward[i]), float(end[i]), hidden, dt * 1000))


def _resolve(job: _Job, result: Any = None, exc: BaseException | None = None) -> None:
    def done() -> None:
        if job.future.done():
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(done)
    except RuntimeError:  # the loop is closed (shutdown)
        pass
