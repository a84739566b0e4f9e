"""One websocket: message parsing and limits, the single latest-frame slot, the session.

Every client message is checked here (size, rate, JSON, type, fields) before the session sees
it; a bad one gets an `error` message and the connection goes on, until too many of them close
it with a documented code (server.protocol.CloseCode). Other connections never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket

from games.envs import FRAME_SIZE
from server import protocol as P
from server.engine import Engine
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


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.t = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def refill_from_now(self) -> None:
        """No refill for the time until now (e.g. the time a start took)."""
        self.t = time.monotonic()


class _Closed(Exception):
    pass


class _NotJsonNumber(ValueError):
    pass


def _refuse_constant(token: str) -> None:
    """json.loads takes NaN, Infinity and -Infinity by default; they are not JSON."""
    raise _NotJsonNumber(token)


class Connection:
    def __init__(self, ws: WebSocket, engine: Engine) -> None:
        self.ws = ws
        self.engine = engine
        self.s = engine.settings
        self.id = secrets.token_hex(4)
        self.session: Session | None = None
        self.session_task: asyncio.Task | None = None
        self.slot = LatestFrame()
        self.send_lock = asyncio.Lock()
        self.bucket = TokenBucket(self.s.rate_limit_per_s, self.s.rate_burst)
        # Each start resets an emulator (thread pool) and seeds a dream (the shared inference
        # worker): one client's flood of starts must not crowd out the other players.
        self.start_bucket = TokenBucket(self.s.start_rate_per_s, max(1, round(self.s.start_rate_per_s)))
        self.errors = 0
        self.rate_dropped = 0
        self.frames_sent = 0
        self.last_seen = time.monotonic()
        self.closed = False
        self._last_rate_error = 0.0

    # -- sending -----------------------------------------------------------------------------
    async def send(self, msg: BaseModel) -> None:
        if self.closed:
            return
        try:
            async with self.send_lock:
                await self.ws.send_text(msg.model_dump_json())
        except Exception:  # noqa: BLE001 - the client went away
            self.closed = True

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            async with self.send_lock:
                await self.ws.close(code, reason[:120])

    async def fail(self, code: str, message: str, close_code: int) -> None:
        await self.send(P.Error(code=code, message=message, fatal=True))
        await self.close(close_code, code)
        raise _Closed

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
            await self.send(P.Error(code="internal", message="the session failed; please reconnect", fatal=True))
            await self.close(P.CloseCode.INTERNAL, "internal")

    # -- receiving ---------------------------------------------------------------------------
    async def run(self) -> None:
        await self.send(
            P.Hello(
                games=sorted(self.engine.games),
                max_message_bytes=self.s.max_message_bytes,
                idle_timeout_s=self.s.idle_timeout_s,
            )
        )
        tasks = [asyncio.create_task(self._send_frames()), asyncio.create_task(self._watchdog())]
        try:
            await self._receive_loop()
        except _Closed:
            pass
        finally:
            self.closed = True
            await self._stop_session()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _stop_session(self) -> None:
        if self.session_task is not None:
            self.session_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.session_task
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()
        self.session, self.session_task = None, None

    async def reject(self, code: str, message: str) -> None:
        self.errors += 1
        if self.errors >= self.s.max_errors:
            await self.fail("too_many_errors", f"{self.errors} rejected messages; closing", P.CloseCode.ABUSE)
        await self.send(P.Error(code=code, message=message))

    async def _receive_loop(self) -> None:
        limit = self.s.max_message_bytes
        while not self.closed:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            self.last_seen = time.monotonic()
            text, data = msg.get("text"), msg.get("bytes")
            size = len(data) if text is None and data is not None else len(text or "")
            if size > limit or (text is not None and len(text.encode("utf-8", "surrogatepass")) > limit):
                await self.fail("too_big", f"messages are limited to {limit} bytes", P.CloseCode.TOO_BIG)
            if not self.bucket.take():
                self.rate_dropped += 1
                if self.rate_dropped >= self.s.flood_close_after:
                    await self.fail("flood", "too many messages; closing", P.CloseCode.ABUSE)
                if time.monotonic() - self._last_rate_error > 1.0:
                    self._last_rate_error = time.monotonic()
                    await self.send(
                        P.Error(code="rate_limited", message=f"over {self.s.rate_limit_per_s:g} messages/s; dropped")
                    )
                continue
            if text is None:
                await self.reject("binary_not_expected", "the server accepts only JSON text messages")
                continue
            try:
                obj = json.loads(text, parse_constant=_refuse_constant)
            except _NotJsonNumber as e:
                await self.reject("bad_json", f"message is not valid JSON: {e} is not a JSON number")
                continue
            except (ValueError, RecursionError):
                await self.reject("bad_json", "message is not valid JSON")
                continue
            if not isinstance(obj, dict):
                await self.reject("bad_message", "message must be a JSON object with a 'type'")
                continue
            kind = obj.get("type")
            if not isinstance(kind, str) or kind not in P.CLIENT_TYPES:
                await self.reject("unknown_type", f"unknown message type; expected one of {', '.join(P.CLIENT_TYPES)}")
                continue
            try:
                m = P.client_message.validate_python(obj)
            except ValidationError as e:
                await self.reject("invalid", _summary(kind, e))
                continue
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
        if not self.start_bucket.take():
            raise SessionError(
                "too_many_starts",
                f"at most {self.s.start_rate_per_s:g} starts per second; this one was refused (the session goes on)",
            )
        await self._stop_session()
        self.slot.item = None
        session = Session(
            rt,
            self.engine.executor,
            self.emit_frame,
            self.send,
            mode=m.mode,
            steps=m.steps,
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
