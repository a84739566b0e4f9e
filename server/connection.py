"""One player's websocket: its messages, the single latest-frame slot, the session.

Every client message passes the checks every websocket shares (server/guard.py: size, rate,
JSON, type) and then the play protocol's schema (fields) before the session sees it; a bad one
gets an `error` message and the connection goes on, until too many of them close it with a
documented code (server.protocol.CloseCode). Other connections never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from starlette.websockets import WebSocket

from games.envs import FRAME_SIZE
from server import protocol as P
from server.engine import Engine
from server.guard import Guard
from server.session import Session, SessionError

log = logging.getLogger(__name__)


class LatestFrame:
    """A single-slot mailbox: a new frame replaces an unsent one, and that counts as a drop."""

    def __init__(self) -> None:
        self.item: Any = None
        self.drops = 0
        self.event = asyncio.Event()

    def put(self, item: Any) -> None:
        if self.item is not None:
            self.drops += 1
        self.item = item
        self.event.set()

    async def take(self) -> Any:
        while self.item is None:
            self.event.clear()
            await self.event.wait()
        item, self.item = self.item, None
        return item


class Connection(Guard):
    types = P.CLIENT_TYPES

    def __init__(self, ws: WebSocket, engine: Engine) -> None:
        super().__init__(ws, engine)
        self.session: Session | None = None
        self.session_task: asyncio.Task | None = None
        self.slot = LatestFrame()
        self.frames_sent = 0

    # -- sending -----------------------------------------------------------------------------
    def emit_frame(self, header: dict[str, Any], frames: list[np.ndarray]) -> None:
        self.slot.put((header, frames))

    async def _send_frames(self) -> None:
        while not self.closed:
            header, frames = await self.slot.take()
            head = P.FrameHeader(**header, drops=self.slot.drops, server_time=time.time() * 1000)
            data = P.encode_frame(head, frames)
            try:
                async with self.send_lock:
                    await self.ws.send_bytes(data)
                self.frames_sent += 1
            except Exception:  # noqa: BLE001 - the client went away
                self.closed = True
                return

    async def _watchdog(self) -> None:
        while not self.closed:
            await asyncio.sleep(min(1.0, self.s.idle_timeout_s / 4))
            if time.monotonic() - self.last_seen > self.s.idle_timeout_s:
                await self.send(P.Error(code="idle_timeout", message="no message for too long", fatal=True))
                await self.close(P.CloseCode.IDLE, "idle_timeout")

    async def _run_session(self, session: Session) -> None:
        try:
            await session.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one failed session must not take the server down
            log.exception("session %s failed", self.id)
            await self.session_failed()

    # -- receiving ---------------------------------------------------------------------------
    async def run(self) -> None:
        await self.send(
            P.Hello(
                games=sorted(self.engine.games),
                max_message_bytes=self.s.max_message_bytes,
                idle_timeout_s=self.s.idle_timeout_s,
            )
        )
        await super().run()

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._send_frames(), self._watchdog()]

    async def stop(self) -> None:
        await self._stop_session()

    async def _stop_session(self) -> None:
        if self.session_task is not None:
            self.session_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.session_task
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()
        self.session, self.session_task = None, None

    async def handle(self, msg: dict[str, Any]) -> None:
        try:
            m = P.client_message.validate_python(msg)
        except ValidationError as e:
            return await self.reject("invalid", _summary(msg["type"], e))
        try:
            await self._dispatch(m)
        except SessionError as e:
            await self.reject(e.code, str(e))

    async def _dispatch(self, m: Any) -> None:
        if isinstance(m, P.Start):
            return await self._start(m)
        if isinstance(m, P.Ping):
            return await self.send(P.Pong(t=m.t, server_time=time.time() * 1000))
        s = self.session
        if s is None:
            raise SessionError("not_started", "send a 'start' message first")
        if isinstance(m, P.Input):
            s.set_input(m.seq, m.action)
        elif isinstance(m, P.Reset):
            s.command(s.cmd_reset, m.seed)
        elif isinstance(m, P.Pause):
            s.command(s.cmd_pause, m.paused)
        elif isinstance(m, P.Step):
            s.command(s.cmd_step)
        elif isinstance(m, P.Resync):
            s.command(s.cmd_resync)
        elif isinstance(m, P.Configure):
            s.check_control(m.control or s.control, m.mode or s.mode)
            s.command(s.cmd_configure, m.mode, m.steps, m.sampler, m.fps, m.control)
        elif isinstance(m, P.SaveEpisode):
            asyncio.create_task(self._save(s.save_episode()))

    async def _save(self, saving: Awaitable[tuple[str, Path, int, float]]) -> None:
        try:
            name, path, length, ret = await saving
        except SessionError as e:
            return await self.send(P.Error(code=e.code, message=str(e)))
        except Exception as e:  # noqa: BLE001 - a failed save is reported, play goes on
            log.exception("saving an episode failed")
            return await self.send(P.Error(code="save_failed", message=f"could not save the episode: {e}"))
        download = f"/api/episodes/{self.engine.remember_episode(path)}"
        await self.send(P.Saved(file=name, path=str(path), length=length, real_return=ret, download=download))

    async def _start(self, m: P.Start) -> None:
        rt = self.engine.games.get(m.game)
        if rt is None:
            raise SessionError(
                "unknown_game", f"no model for {m.game!r}; games: {', '.join(sorted(self.engine.games))}"
            )
        self.check_start()
        await self._stop_session()
        self.slot.item = None
        session = Session(
            rt,
            self.engine.executor,
            self.emit_frame,
            self.send,
            mode=m.mode,
            steps=m.steps or rt.model.cfg.sampler.num_steps,
            sampler=m.sampler,
            fps=m.fps or self.s.default_fps,
            control=m.control,
            seed=m.seed,
            data_dir=self.s.data_dir,
            max_episode_steps=self.s.max_episode_steps,
        )
        await session.new_episode()
        self.session = session
        info = self.engine.game_info(rt)
        await self.send(
            P.Ready(
                session=self.id,
                game=rt.game,
                action_meanings=rt.meanings,
                keymap=rt.keymap,
                policies=info["policies"],
                control_modes=info["control_modes"],
                context_frames=rt.context_frames,
                width=FRAME_SIZE,
                height=FRAME_SIZE,
                settings=session.settings(),
            )
        )
        self.session_task = asyncio.create_task(self._run_session(session))
        # Starts queued while this one ran are read at once: the limit counts from its end.
        self.start_bucket.refill_from_now()

    def metrics(self) -> dict[str, Any]:
        s = self.session
        return {
            "id": self.id,
            "game": s.rt.game if s else None,
            "mode": s.mode if s else None,
            "steps": s.steps if s else None,
            "sampler": s.sampler_name if s else None,
            "paused": s.paused if s else None,
            "ticks": s.tick if s else 0,
            "fps": s.measured_fps() if s else 0.0,
            "dream_ms": s.last_dream_ms if s else 0.0,
            "frames_sent": self.frames_sent,
            "drops": self.slot.drops,
            "errors": self.errors,
            "rate_dropped": self.rate_dropped,
        }


def _summary(kind: str, e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"] if x != kind)
        parts.append(f"{loc or kind}: {err['msg']}")
    return f"invalid '{kind}' message: " + "; ".join(parts)
