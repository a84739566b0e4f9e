"""What every websocket passes before its handler sees a message, the player's (`/ws`) and the
policy viewer's (`/ws/viewer`) alike.

`serve` checks the browser's Origin, completes the handshake and admits the connection under the
server's one session cap (players and viewers count together), then runs it and frees its place
however it ends. `Guard.messages` checks each client message (size, rate, text, JSON, an object
with a known `type`) and answers a bad one with an `error`, until too many of them close the
connection with a documented code (server.protocol.CloseCode; docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel
from starlette.websockets import WebSocket

from server import protocol as P

if TYPE_CHECKING:
    from server.engine import Engine


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """No Origin (not a browser), the page's own origin, or one on the allow list ('*' = any)."""
    if origin is None or "*" in allowed or origin in allowed:
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()


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


class Refused(ValueError):
    """A request the server refuses; `code` goes to the client in an error message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Closed(Exception):
    """The connection was closed on purpose (a fatal error was sent first)."""


class _NotJsonNumber(ValueError):
    pass


def _refuse_constant(token: str) -> None:
    """json.loads takes NaN, Infinity and -Infinity by default; they are not JSON."""
    raise _NotJsonNumber(token)


class Guard:
    """One accepted websocket and its limits. Subclasses name the message `types` they take and
    `handle` each checked message; `background` and `stop` start and end what runs beside."""

    types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ws: WebSocket, engine: Engine) -> None:
        self.ws = ws
        self.engine = engine
        self.s = engine.settings
        self.id = secrets.token_hex(4)
        self.send_lock = asyncio.Lock()
        self.bucket = TokenBucket(self.s.rate_limit_per_s, self.s.rate_burst)
        # Each start builds emulators, policies or dreams on threads and workers every client
        # shares: one client's flood of starts must not crowd out the others.
        self.start_bucket = TokenBucket(self.s.start_rate_per_s, max(1, round(self.s.start_rate_per_s)))
        self.errors = 0
        self.rate_dropped = 0
        self.last_seen = time.monotonic()
        self.closed = False
        self._last_rate_error = 0.0

    # -- what subclasses fill in -------------------------------------------------------------
    async def handle(self, msg: dict[str, Any]) -> None:
        """One checked message: a JSON object whose `type` is in `types`."""
        raise NotImplementedError

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """Tasks that run beside the receive loop and are cancelled when it ends."""
        return []

    async def stop(self) -> None:
        """Called once when the connection ends, however it ends."""

    def metrics(self) -> dict[str, Any]:
        return {"id": self.id, "fps": 0.0, "drops": 0, "errors": self.errors, "rate_dropped": self.rate_dropped}

    # -- sending -----------------------------------------------------------------------------
    async def send_raw(self, *items: str | bytes) -> bool:
        """Send text and binary messages back to back (nothing else comes between); False once the
        client has gone."""
        if self.closed:
            return False
        try:
            async with self.send_lock:
                for item in items:
                    await (self.ws.send_text(item) if isinstance(item, str) else self.ws.send_bytes(item))
            return True
        except Exception:  # noqa: BLE001 - the client went away
            self.closed = True
            return False

    async def send(self, msg: BaseModel) -> None:
        await self.send_raw(msg.model_dump_json())

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
        raise Closed

    async def session_failed(self) -> None:
        """A session's loop raised (the caller logs it): tell the client and close this connection
        only; other sessions go on."""
        await self.send(P.Error(code="internal", message="the session failed; please reconnect", fatal=True))
        await self.close(P.CloseCode.INTERNAL, "internal")

    async def reject(self, code: str, message: str) -> None:
        self.errors += 1
        if self.errors >= self.s.max_errors:
            await self.fail("too_many_errors", f"{self.errors} rejected messages; closing", P.CloseCode.ABUSE)
        await self.send(P.Error(code=code, message=message))

    def check_start(self) -> None:
        if not self.start_bucket.take():
            raise Refused(
                "too_many_starts",
                f"at most {self.s.start_rate_per_s:g} starts per second; this one was refused (the session goes on)",
            )

    # -- receiving ---------------------------------------------------------------------------
    async def run(self) -> None:
        tasks = [asyncio.create_task(c) for c in self.background()]
        try:
            async with contextlib.aclosing(self.messages()) as messages:
                async for msg in messages:
                    try:
                        await self.handle(msg)
                    except Refused as e:
                        await self.reject(e.code, str(e))
        except Closed:
            pass
        finally:
            self.closed = True
            await self.stop()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Client messages that pass every check, as JSON objects with a known `type`."""
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
            if not isinstance(kind, str) or kind not in self.types:
                await self.reject("unknown_type", f"unknown message type; expected one of {', '.join(self.types)}")
                continue
            yield obj


async def serve(ws: WebSocket, engine: Engine, connect: Callable[[WebSocket, Engine], Guard]) -> None:
    """Origin check, handshake, the session cap, then the connection's own loop."""
    s = engine.settings
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), s.allowed_origins):
        await ws.close(P.CloseCode.ORIGIN_REJECTED, "origin not allowed")
        return
    await ws.accept()
    conn = connect(ws, engine)
    if not engine.admit(conn.id, conn):
        cap = s.max_sessions
        await conn.send(P.Error(code="server_full", message=f"server full ({cap} players); try later", fatal=True))
        await conn.close(P.CloseCode.SERVER_FULL, "server_full")
        return
    try:
        await conn.run()
    finally:
        engine.release(conn.id)
