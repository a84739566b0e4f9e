"""The world model in a process of its own, whose main thread runs it.

Why: on a CPU, torch's OpenMP threads serve the main thread of a process far better than any
other thread. Measured on a 2-core Xeon (AMX, bf16), the shipped Breakout model, `dream_step` at 3
Euler steps with 2 torch threads: 42 ms a frame at batch 1 from the main thread, 118 ms from a
second thread of the same process (16 vs 27 ms a frame at batch 8); with 1 thread both are the
same (50 ms). A server runs its event loop in the main thread, so its inference thread got the
slow path, and a second torch thread made serving slower, not faster (docs/serving.md).

`ModelProcess` has the two methods the inference worker calls, `dream_step` and `burn_in`, with
`WorldModel`'s signatures; each call sends the batch's tensors (as numpy arrays) down a pipe to a
child process (`spawn`, never `fork` with torch threads) and waits for its answer. Batching across
sessions stays in `server/worker.py`. The child loads the snapshot itself (safetensors + JSON, no
pickled code) with the same device, precision and backend; only tensors and sampler settings
cross the pipe, between this process and the child it started.

A child that dies (killed, out of memory) fails the call in progress with an error that says so;
the next call starts a new child.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from model.world_model import DreamNoise, Hidden
from model.world_model.sampler import SamplerConfig

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0
"""Longest a child may take to load its model (an ONNX export or int8 calibration included)."""
CALL_TIMEOUT_S = 300.0
"""Longest one call may take before the child is taken for hung, killed, and the call failed (a
batch of 16 takes well under a second on two cores)."""


class InferenceProcessError(RuntimeError):
    """The inference process could not start, or died during a call. The message says which."""


class ProcessStep(NamedTuple):
    """What the worker reads of a `DreamStep`, as the child computed it."""

    next_obs: torch.Tensor  # (B, C, H, W) in [-1, 1]
    reward: torch.Tensor  # (B,) sampled reward
    end_prob: torch.Tensor  # (B,)
    hidden: Hidden


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How the child builds its model: the same arguments as `WorldModel.from_snapshot` plus the
    backend and the child's torch threads."""

    path: str
    device: str = "cpu"
    precision: str = "auto"
    backend: str = "torch"
    threads: int = 0  # 0 = one or every core, whichever the child times faster (pick_threads)
    calibration: tuple[np.ndarray, np.ndarray] | None = None  # int8: real frames (N, L, H, W, C), actions (N, L)


THREAD_MARGIN = 0.9
"""More torch threads only where they take at most this share of one thread's time at batch 1 and 8."""


def more_threads_pay(per_frame_at: dict[int, dict[int, float]], many: int) -> bool:
    """per_frame_at: batch size -> {threads: seconds per U-Net call and frame}. `many` threads only
    where they beat one thread by the margin at every batch size timed."""
    return all(t[many] < THREAD_MARGIN * t[1] for t in per_frame_at.values())


def pick_threads(model: Any, cores: int, warmup: int = 2, repeats: int = 5) -> int:
    """Time the U-Net (as the model runs it) at batch 1 and 8 with one thread and with `cores`,
    interleaved, and keep `cores` only where it pays. On a quiet 2-core AMX Xeon two threads took
    42 against 50 ms a frame at batch 1 and 16 against 24 at batch 8; beside a training run that held
    both cores, two threads took 1.6 s a call at batch 1 (OpenMP's barriers wait for a thread the
    scheduler has parked) against one thread's tens of milliseconds."""
    from model.world_model.onnx_backend import TorchUNet, example_inputs

    if cores <= 1:
        return 1
    net = TorchUNet(model.denoiser, model.bf16)
    per_frame_at: dict[int, dict[int, float]] = {}
    with torch.no_grad():
        for b in (1, 8):
            args = example_inputs(model.denoiser, b)
            times: dict[int, list[float]] = {1: [], cores: []}
            for i in range(warmup + repeats):
                for n in times:
                    torch.set_num_threads(n)
                    t = time.perf_counter()
                    net(*args)
                    if i >= warmup:
                        times[n].append(time.perf_counter() - t)
            per_frame_at[b] = {n: sorted(ts)[len(ts) // 2] / b for n, ts in times.items()}
            ms = {n: round(1000 * v, 1) for n, v in per_frame_at[b].items()}
            log.info("threads, batch %d: %s ms per U-Net call and frame (threads: ms)", b, ms)
    threads = cores if more_threads_pay(per_frame_at, cores) else 1
    torch.set_num_threads(threads)
    return threads


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _child(conn: Any, spec: ModelSpec, log_level: int) -> None:
    """The child's main thread: load the model, then answer calls until told to stop."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    torch.set_num_threads(spec.threads or os.cpu_count() or 1)
    try:
        from model.world_model import WorldModel
        from model.world_model.onnx_backend import use_backend

        model = WorldModel.from_snapshot(Path(spec.path), torch.device(spec.device), spec.precision)
        if not spec.threads and model.device.type == "cpu":  # 0 = chosen here: one thread or every core
            pick_threads(model, os.cpu_count() or 1)
        if spec.backend != "torch":
            model.backend = use_backend(model, spec.backend, spec.calibration)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which names the snapshot
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", {"backend": model.backend, "threads": torch.get_num_threads()}))
    device = model.device
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        kind, args = msg
        if kind == "stop":
            return
        try:
            with torch.no_grad():
                if kind == "dream":
                    obs, act, h, c, sampler, frame, uniform = args
                    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
                    out = model.dream_step(
                        t(obs), t(act), (t(h), t(c)), sampler, noise=DreamNoise(t(frame), t(uniform))
                    )
                    h2, c2 = out.hidden
                    reply = (_np(out.next_obs.float()), _np(out.reward.float()), _np(out.end_prob.float()))
                    reply += (_np(h2.float()), _np(c2.float()))
                elif kind == "burn_in":
                    obs, act = args
                    hidden = model.burn_in(torch.from_numpy(obs).to(device), torch.from_numpy(act).to(device))
                    reply = None if hidden is None else (_np(hidden[0].float()), _np(hidden[1].float()))
                else:
                    raise ValueError(f"unknown call {kind!r}")
            conn.send(("ok", reply))
        except Exception as e:  # noqa: BLE001 - one bad call fails that call, not the process
            conn.send(("error", f"{type(e).__name__}: {e}"))


class ModelProcess:
    """A world model served by a child process; `dream_step` and `burn_in` as on `WorldModel`.

    Calls come from one thread at a time (the inference worker's); a lock keeps it so."""

    def __init__(self, spec: ModelSpec, name: str = "model", call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.spec, self.name = spec, name
        self.call_timeout_s = call_timeout_s
        self.backend = "torch"
        self.threads = 0
        self.restarts = 0
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._start()

    # -- lifetime -------------------------------------------------------------------------------
    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        level = logging.getLogger().getEffectiveLevel()
        proc = ctx.Process(target=_child, args=(child, self.spec, level), name=f"inference-{self.name}", daemon=True)
        t0 = time.perf_counter()
        proc.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            proc.kill()
            raise InferenceProcessError(f"{self.name}: the inference process did not load {self.spec.path} in time")
        try:
            status, info = parent.recv()
        except EOFError:
            proc.join(5)
            raise InferenceProcessError(
                f"{self.name}: the inference process exited (code {proc.exitcode}) while loading {self.spec.path}"
            ) from None
        if status != "ready":
            proc.join(5)
            raise InferenceProcessError(f"{self.name}: the inference process could not load {self.spec.path}: {info}")
        self._proc, self._conn = proc, parent
        self.backend, self.threads = info["backend"], info["threads"]
        log.info(
            "%s: inference process %d ready in %.1f s (%s backend, %d torch threads)",
            self.name,
            proc.pid,
            time.perf_counter() - t0,
            self.backend,
            self.threads,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            proc, conn, self._proc, self._conn = self._proc, self._conn, None, None
        if proc is None:
            return
        try:
            conn.send(("stop", None))
        except (OSError, ValueError):
            pass
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout)
        conn.close()

    # -- calls ----------------------------------------------------------------------------------
    def _call(self, kind: str, args: tuple) -> Any:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                if self._proc is not None:  # it died after its last call: start another
                    code = self._proc.exitcode
                    log.warning("%s: the inference process had exited (code %s); starting a new one", self.name, code)
                    self._conn.close()
                    self.restarts += 1
                self._start()
            try:
                self._conn.send((kind, args))
                if not self._conn.poll(self.call_timeout_s):
                    self._proc.kill()
                    self._proc.join(5)
                    raise InferenceProcessError(
                        f"{self.name}: the inference process did not answer a {kind} call in "
                        f"{self.call_timeout_s:g} s and was stopped; the next call starts a new one"
                    )
                status, reply = self._conn.recv()
            except (EOFError, OSError) as e:
                self._proc.join(1)
                raise InferenceProcessError(
                    f"{self.name}: the inference process died during a {kind} call (exit code {self._proc.exitcode}); "
                    "the next call starts a new one"
                ) from e
        if status != "ok":
            raise RuntimeError(f"{self.name}: {kind} failed in the inference process: {reply}")
        return reply

    def dream_step(
        self,
        obs_ctx: torch.Tensor,
        act_ctx: torch.Tensor,
        hidden: Hidden,
        sampler: SamplerConfig,
        noise: DreamNoise,
    ) -> ProcessStep:
        """`WorldModel.dream_step` in the child: obs_ctx (B, L, C, H, W), act_ctx (B, L), hidden
        ((1, B, D), (1, B, D)), noise for B dreams (the caller draws it, so dreams replay)."""
        h, c = hidden
        args = (_np(obs_ctx.float()), _np(act_ctx.long()), _np(h.float()), _np(c.float()), sampler)
        args += (_np(noise.frame.float()), _np(noise.uniform.float()))
        nxt, reward, end_prob, h2, c2 = self._call("dream", args)
        t = torch.from_numpy
        return ProcessStep(t(nxt), t(reward), t(end_prob), (t(h2), t(c2)))

    def burn_in(self, obs_ctx: torch.Tensor, act_prev: torch.Tensor) -> Hidden | None:
        reply = self._call("burn_in", (_np(obs_ctx.float()), _np(act_prev.long())))
        return None if reply is None else (torch.from_numpy(reply[0]), torch.from_numpy(reply[1]))
